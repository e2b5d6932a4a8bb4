"""SLA attainment facts for the windows: exact when a reordering changes what a reply was."""

from __future__ import annotations

from processor.kpi.facts import Fact, FactKind
from processor.kpi.policy import PolicyMatch, PolicySet, SlaPolicy
from processor.kpi.sla_record import SlaRecord, attainment_facts, new_facts
from processor.kpi.timeline import Ingested

WA = SlaPolicy("wa", PolicyMatch.of("whatsapp"), first_response_s=60, next_reply_s=120)
POLICIES = PolicySet((WA,), {})


def frt(event_id: str, at_ms: int, seconds: float) -> Fact:
    return Fact(FactKind.FIRST_RESPONSE, "whatsapp", at_ms, event_id, "agent", "ana", seconds, 1)


def reply(event_id: str, at_ms: int, seconds: float) -> Fact:
    return Fact(FactKind.REPLY, "whatsapp", at_ms, event_id, "agent", "ana", seconds, 1)


def sla(event_id: str, at_ms: int, metric: str, within: bool) -> Fact:
    return Fact(FactKind.SLA, "whatsapp", at_ms, event_id, metric, "wa", float(within), 1)


def test_a_reply_that_loses_the_frt_to_a_reordered_earlier_reply_is_measured_again() -> None:
    record = SlaRecord(policy="wa")
    # r2 arrives first: it is the first response (90 s, breached) and its own reply.
    first = attainment_facts(record, 0, WA, POLICIES, Ingested(
        [frt("r2", 100_000, 90.0), reply("r2", 100_000, 90.0)], []))
    assert first == [(1, sla("r2", 100_000, "first_response", False))]
    # r1, sent earlier, arrives late: it takes the FRT (30 s, met); r2 becomes a next reply
    # (70 s after the customer's second message, met).
    second = attainment_facts(record, 0, WA, POLICIES, Ingested(
        [frt("r1", 40_000, 30.0), reply("r1", 40_000, 30.0), reply("r2", 100_000, 70.0)],
        [frt("r2", 100_000, 90.0), reply("r2", 100_000, 90.0)]))
    assert sorted(second) == sorted([
        (-1, sla("r2", 100_000, "first_response", False)),
        (1, sla("r2", 100_000, "next_reply", True)),
        (1, sla("r1", 40_000, "first_response", True)),
    ])


def test_settled_facts_leave_the_record_and_without_a_policy_nothing_is_measured() -> None:
    record = SlaRecord(policy="wa")
    attainment_facts(record, 0, WA, POLICIES, Ingested([frt("r1", 40_000, 30.0)], []))
    assert record.live and record.produced
    attainment_facts(record, 50_000, WA, POLICIES, Ingested([], []))
    assert record.live == [] and record.produced == []
    assert attainment_facts(SlaRecord(), 0, None, POLICIES,
                            Ingested([frt("r1", 40_000, 30.0)], [])) == []


def test_a_fact_only_re_emitted_by_a_reordering_is_not_new() -> None:
    same = reply("r2", 100_000, 70.0)
    assert new_facts(Ingested([same, frt("r1", 40_000, 30.0)], [same])) == [
        frt("r1", 40_000, 30.0)]
