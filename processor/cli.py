"""`msgkpi`: the command line. Each subcommand builds the settings once and hands them down."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from processor.config import Settings
from processor.errors import ConfigError

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="msgkpi",
        description="Real-time customer-care KPIs for messaging channels, computed on Kafka.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("gateway", help="run the webhook gateway (HTTP -> msgkpi.events)")
    commands.add_parser("worker", help="run a KPI worker (msgkpi.events -> metrics and topics)")
    commands.add_parser("ui", help="serve the live KPI page and send per-conversation SLA "
                                   "alerts (msgkpi.kpi, msgkpi.sla -> HTTP, Alertmanager)")
    simulate = commands.add_parser("simulate", help="send realistic traffic to the gateway")
    from processor.traffic.simulate import add_arguments as add_simulate_arguments

    add_simulate_arguments(simulate)
    replay = commands.add_parser("replay", help="write a recorded event log (JSONL) to Kafka")
    from processor.traffic.replay import add_arguments as add_replay_arguments

    add_replay_arguments(replay)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"msgkpi: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "gateway":
        from processor.gateway.server import run_gateway

        return run_gateway(settings)
    if args.command == "worker":
        from processor.worker.app import run_worker

        return run_worker(settings)
    if args.command == "ui":
        from processor.ui.server import run_ui

        return run_ui(settings)
    if args.command == "replay":
        from processor.traffic.replay import run_replay

        return run_replay(settings, args)
    from processor.traffic.simulate import run_simulation

    return run_simulation(settings, args)


if __name__ == "__main__":
    sys.exit(main())
