"""`msgkpi ui`: a live page for support leads and per-conversation SLA alerts.

Data flow: Kafka (`feed.py`) -> view state, pure (`view.py`: KPI snapshots; `alerts.py`:
conversation alerts) -> HTTP (`web.py`, page in `static/`) and Alertmanager
(`processor.export.alertmanager`), wired together in `server.py`.
"""
