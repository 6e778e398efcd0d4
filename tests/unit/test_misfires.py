"""Missed slots by misfire policy: a pure decision over the slots an engine did not see."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from application.engine import jitter_for
from application.misfires import decide_misfires
from domain.ledger import SkipReason
from domain.policies import MisfirePolicy
from domain.schedule import Schedule

EVERY_SECOND = Schedule("* * * * * *")
EVERY_MINUTE = Schedule("* * * * *")
NOW = datetime(2026, 2, 4, 12, 0, 0, tzinfo=UTC)


def test_ten_minutes_down_with_skip_is_one_missed_run_of_600_slots() -> None:
    decision = decide_misfires(
        EVERY_SECOND, NOW - timedelta(minutes=10), NOW, MisfirePolicy.SKIP, 60, 0
    )

    (run,) = decision.skips
    assert (run.reason, run.count) == (SkipReason.MISSED, 600)
    assert (run.first, run.last) == (NOW - timedelta(seconds=599), NOW)
    assert decision.catch_up == [] and decision.due == []


def test_run_once_runs_the_latest_missed_slot_and_records_the_rest() -> None:
    decision = decide_misfires(
        EVERY_MINUTE, NOW - timedelta(minutes=5), NOW, MisfirePolicy.RUN_ONCE, 3600, 0
    )

    assert decision.catch_up == [NOW]
    (run,) = decision.skips
    assert (run.reason, run.count, run.last) == (SkipReason.MISSED, 4, NOW - timedelta(minutes=1))


def test_run_all_runs_every_slot_inside_the_window_and_records_older_ones() -> None:
    decision = decide_misfires(
        EVERY_MINUTE, NOW - timedelta(minutes=10), NOW, MisfirePolicy.RUN_ALL, 180, 0
    )

    assert decision.catch_up == [NOW - timedelta(minutes=m) for m in (3, 2, 1, 0)]
    (run,) = decision.skips
    assert (run.reason, run.count) == (SkipReason.OUTSIDE_CATCH_UP_WINDOW, 6)


def test_slots_within_the_grace_are_simply_due() -> None:
    decision = decide_misfires(
        EVERY_SECOND, NOW - timedelta(seconds=30), NOW, MisfirePolicy.SKIP, 60, 5
    )

    assert decision.due == [NOW - timedelta(seconds=s) for s in (4, 3, 2, 1, 0)]
    assert decision.skips[0].count == 25


def test_every_slot_is_decided_exactly_once() -> None:
    for policy in MisfirePolicy:
        decision = decide_misfires(EVERY_SECOND, NOW - timedelta(minutes=3), NOW, policy, 60, 7)
        decided = len(decision.catch_up) + len(decision.due) + sum(s.count for s in decision.skips)
        assert decided == 180, policy


def test_nothing_is_missed_when_nothing_was_due() -> None:
    decision = decide_misfires(
        Schedule("0 2 * * *"), NOW - timedelta(minutes=3), NOW, MisfirePolicy.RUN_ALL, 60, 0
    )

    assert (decision.catch_up, decision.skips, decision.due) == ([], [], [])


def test_jitter_is_the_same_on_every_node_and_inside_the_bound() -> None:
    job_id = uuid4()
    delays = [jitter_for(job_id, NOW + timedelta(seconds=s), 30) for s in range(200)]

    assert delays == [jitter_for(job_id, NOW + timedelta(seconds=s), 30) for s in range(200)]
    assert all(0 <= d < 30 for d in delays)
    assert len(set(delays)) > 150
    assert jitter_for(job_id, NOW, 0) == 0
