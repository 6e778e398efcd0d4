"""What to do with slots that passed while no engine ran: a pure decision, per misfire policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from domain.ledger import SkipReason
from domain.policies import MisfirePolicy
from domain.schedule import Schedule


@dataclass(frozen=True, slots=True)
class SkipRun:
    """Consecutive slots skipped for one reason: one record."""

    first: datetime
    last: datetime
    count: int
    reason: SkipReason


@dataclass(frozen=True, slots=True)
class MisfireDecision:
    """The catch-up fires to run, the skip runs to record, and the slots still due now."""

    catch_up: list[datetime] = field(default_factory=list)
    skips: list[SkipRun] = field(default_factory=list)
    due: list[datetime] = field(default_factory=list)


def decide_misfires(
    schedule: Schedule,
    resume_after: datetime,
    now: datetime,
    policy: MisfirePolicy,
    window_seconds: int,
    grace_seconds: float,
) -> MisfireDecision:
    """Decide every slot in (resume_after, now].

    A slot late by at most `grace_seconds` is simply due (an engine restarting or taking over
    fires it late, not as a misfire). Older slots are misfires: `skip` records them as one
    MISSED run; `runOnce` runs the latest one inside the catch-up window and records the rest;
    `runAll` runs every one inside the window. Slots older than the window are recorded as
    one OUTSIDE_CATCH_UP_WINDOW run whatever the policy.
    """
    grace_edge = now - timedelta(seconds=grace_seconds)
    # under `skip` nothing is caught up, so the window does not matter: every slot is MISSED
    window_edge = (
        now - timedelta(seconds=window_seconds) if policy is not MisfirePolicy.SKIP else None
    )
    outside_first: datetime | None = None
    outside_last: datetime | None = None
    outside_count = 0
    inside: list[datetime] = []
    due: list[datetime] = []
    after = resume_after + timedelta(microseconds=1)
    for slot in schedule.slots(after, now + timedelta(microseconds=1)):
        if slot > grace_edge:
            due.append(slot)
        elif window_edge is not None and slot < window_edge:
            outside_first = outside_first or slot
            outside_last = slot
            outside_count += 1
        else:
            inside.append(slot)
    skips: list[SkipRun] = []
    catch_up: list[datetime] = []
    if outside_first is not None and outside_last is not None:
        skips.append(
            SkipRun(outside_first, outside_last, outside_count, SkipReason.OUTSIDE_CATCH_UP_WINDOW)
        )
    if policy is MisfirePolicy.RUN_ALL:
        catch_up = inside
    elif policy is MisfirePolicy.RUN_ONCE and inside:
        catch_up = inside[-1:]
        inside = inside[:-1]
    if policy is not MisfirePolicy.RUN_ALL and inside:
        skips.append(SkipRun(inside[0], inside[-1], len(inside), SkipReason.MISSED))
    return MisfireDecision(catch_up=catch_up, skips=skips, due=due)
