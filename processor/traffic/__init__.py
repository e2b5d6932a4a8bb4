"""Traffic for the pipeline, kept apart from it: nothing in the gateway or worker imports this.

- `scenario`: the pure scenario generator (seeded, reproducible canonical events).
- `transport`: encoders, the sender with retries and the wall-clock scheduler.
- `native`: each platform's own signed webhooks for simulated events (`--transport native`).
- `samples`: builders of platform-native, signed webhook payloads (tests and `native`).
- `simulate`: `msgkpi simulate`, the command line over the three above.
- `replay`: `msgkpi replay`, a recorded event log written to the events topic.
"""
