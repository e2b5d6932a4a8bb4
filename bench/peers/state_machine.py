"""The peers' stateful job: first response, reply and resolution times per conversation.

A deliberately small state machine (no bots, business hours, dedupe or windows): a customer
message opens a cycle and starts a wait, an agent reply ends the wait (the first one is the
cycle's first response), `resolved` closes the cycle. It is what every peer keys by
conversation and keeps in its framework's state store, so the rates compare the frameworks'
state paths, not msgkpi's KPI definitions.
"""

from __future__ import annotations

from typing import Any

State = dict[str, Any]


def step(state: State | None, event: dict[str, Any], totals: dict[str, float]) -> State:
    """Apply one canonical event; add what it measured to `totals`; return the new state."""
    state = dict(state) if state else {"opened": None, "waiting": None, "answered": False}
    at = event["occurred_at"]
    kind = event["type"]
    if kind == "message" and event.get("author") == "customer":
        if state["opened"] is None:
            state["opened"], state["answered"] = at, False
        if state["waiting"] is None:
            state["waiting"] = at
    elif kind == "message" and event.get("author") == "agent" and state["waiting"] is not None:
        waited = (at - state["waiting"]) / 1000
        totals["replies"] = totals.get("replies", 0) + 1
        totals["reply_s"] = totals.get("reply_s", 0) + waited
        if not state["answered"]:
            totals["first_responses"] = totals.get("first_responses", 0) + 1
            totals["first_response_s"] = totals.get("first_response_s", 0) + waited
            state["answered"] = True
        state["waiting"] = None
    elif kind == "resolved" and state["opened"] is not None:
        totals["resolutions"] = totals.get("resolutions", 0) + 1
        totals["resolution_s"] = totals.get("resolution_s", 0) + (at - state["opened"]) / 1000
        state = {"opened": None, "waiting": None, "answered": False}
    return state
