"""An independent reference implementation of the KPI definitions in docs/kpis.md.

`batch.report(events)` folds a whole event log in one pass per conversation, with plain code and
nothing shared with `processor/kpi`, so the streaming engine can be checked against it.
"""

from tests.oracle.batch import (
    AgentReport,
    ChannelReport,
    Report,
    ReportBuilder,
    event_rank,
    report,
    report_diff,
    total_order_key,
)

__all__ = [
    "AgentReport",
    "ChannelReport",
    "Report",
    "ReportBuilder",
    "event_rank",
    "report",
    "report_diff",
    "total_order_key",
]
