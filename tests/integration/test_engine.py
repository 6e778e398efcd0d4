"""The engine on each store: fires per slot, policies, retries, the log followed live."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from application.jobs import Fire
from domain.instants import iso_ms, parse_instant
from interfaces.composition import Core
from tests.engine_support import FakeClock, ScriptedRunner, running_engine, wait_for


def every_second(name: str = "tick", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "pattern": "* * * * * *",
        "taskConfig": {"url": "https://example.com/hook", "body": {"slot": "${T:HH:mm:ss}"}},
        **extra,
    }


def executions_of(core: Core, job_id: Any, **filters: Any) -> list[dict[str, Any]]:
    core.projections.catch_up()
    return core.queries.list_executions("acme", job_id=str(job_id), limit=500, **filters).items


def test_an_every_second_job_fires_once_per_slot_with_its_scheduled_time(core: Core) -> None:
    job_id = core.jobs.create_job("acme", every_second(), by="ana").id
    runner = ScriptedRunner()

    with running_engine(core, runner):
        wait_for(lambda: len(executions_of(core, job_id, status="succeeded")) >= 3, what="3 fires")

    rows = executions_of(core, job_id)
    slots = sorted(r["scheduledFor"] for r in rows)
    assert len(slots) == len(set(slots))
    assert all(r["trigger"] == "cron" for r in rows)
    requests = runner.for_job(job_id)
    assert len({r.scheduled_for for r in requests}) == len(requests)
    for request in requests:
        assert request.config["body"] == {"slot": request.scheduled_for.strftime("%H:%M:%S")}


def test_a_failed_attempt_is_retried_inside_the_same_execution(core: Core) -> None:
    doc = every_second(
        "retrying", pattern="0 0 1 1 *", retry={"maxRetries": 2, "retryDelaySeconds": 0}
    )
    job_id = core.jobs.create_job("acme", doc, by="ana").id
    runner = ScriptedRunner(failures={job_id: 2})

    with running_engine(core, runner):
        execution_id = core.jobs.trigger_job("acme", job_id, by="ana").id
        row = wait_for(
            lambda: next(
                (r for r in executions_of(core, job_id) if r["status"] == "succeeded"), None
            ),
            what="the retried execution to succeed",
        )

    assert row["id"] == str(execution_id)
    assert row["attempt"] == 3
    types = [type(e).__name__ for e in core.jobs.events.get(execution_id)]
    assert types == [
        "Scheduled",
        "Started",
        "AttemptFailed",
        "Started",
        "AttemptFailed",
        "Started",
        "Succeeded",
    ]


def test_an_execution_fails_when_its_retries_run_out(core: Core) -> None:
    doc = every_second(
        "doomed", pattern="0 0 1 1 *", retry={"maxRetries": 1, "retryDelaySeconds": 0}
    )
    job_id = core.jobs.create_job("acme", doc, by="ana").id
    runner = ScriptedRunner(failures={job_id: 5})

    with running_engine(core, runner):
        core.jobs.trigger_job("acme", job_id, by="ana")
        row = wait_for(lambda: executions_of(core, job_id, status="failed"), what="failure")[0]

    assert row["attempt"] == 2
    assert row["error"]["code"] == "HTTP_STATUS"


@pytest.mark.parametrize("command", ["disable_job", "delete_job"])
def test_a_disabled_or_deleted_job_stops_firing(core: Core, command: str) -> None:
    job_id = core.jobs.create_job("acme", every_second(), by="ana").id
    runner = ScriptedRunner()

    with running_engine(core, runner) as engine:
        wait_for(lambda: runner.for_job(job_id), what="a first fire")
        getattr(core.jobs, command)("acme", job_id, by="ana")
        wait_for(lambda: engine.scheduled_jobs == 0, what="the engine to drop the job")
        count = len(runner.for_job(job_id))
        stopped_at = engine.clock.now()
        wait_for(lambda: engine.clock.now() > stopped_at + timedelta(seconds=2.5), what="time")
        assert len(runner.for_job(job_id)) <= count + 1  # at most a fire already in flight


def test_a_job_created_by_another_process_reaches_this_engine(core: Core, make_core) -> None:  # type: ignore[no-untyped-def]
    other = make_core()
    runner = ScriptedRunner()

    with running_engine(core, runner) as engine:
        job_id = other.jobs.create_job("acme", every_second(), by="ana").id
        wait_for(lambda: engine.scheduled_jobs == 1, what="the engine to see the job")
        wait_for(lambda: runner.for_job(job_id), what="a fire")


def test_a_slow_job_with_skip_policy_leaves_overlap_records(core: Core) -> None:
    job_id = core.jobs.create_job(
        "acme", every_second("slow", concurrencyPolicy="skip"), by="ana"
    ).id
    gate = threading.Event()
    runner = ScriptedRunner(gate={job_id: gate})

    with running_engine(core, runner) as engine:
        wait_for(lambda: runner.for_job(job_id), what="the first run")
        wait_for(lambda: engine.stats.skipped >= 3, what="three overlapping slots")
        gate.set()
        wait_for(lambda: executions_of(core, job_id, status="succeeded"), what="the run to end")

    core.projections.catch_up()
    skips = core.skips_view.dump()[1].values()
    overlaps = [s for s in skips if s["reason"] == "OVERLAP"]
    assert overlaps and overlaps[0]["count"] >= 3
    assert len(overlaps) == 1  # one record for the run of consecutive skipped slots


def test_a_backfill_runs_each_past_slot_once_however_often_it_is_asked(core: Core) -> None:
    job_id = core.jobs.create_job("acme", every_second("daily", pattern="0 2 * * *"), by="ana").id
    runner = ScriptedRunner()
    now = core.jobs.get_job("acme", job_id).schedule.next_after(datetime.now(UTC))
    start, end = now - timedelta(days=5), now - timedelta(days=1)

    with running_engine(core, runner):
        first = core.jobs.backfill("acme", job_id, start, end, by="ana")
        second = core.jobs.backfill("acme", job_id, start, end, by="ana")
        wait_for(lambda: len(executions_of(core, job_id, status="succeeded")) == 4, what="4 runs")

    assert (len(first), len(second)) == (4, 0)
    assert sorted(r.scheduled_for for r in runner.for_job(job_id)) == [
        start + timedelta(days=d) for d in range(4)
    ]
    assert {r["trigger"] for r in executions_of(core, job_id)} == {"backfill"}


def test_pause_after_failures_disables_the_job_with_the_reason(core: Core) -> None:
    job_id = core.jobs.create_job("acme", every_second("flaky", pauseAfterFailures=3), by="ana").id
    runner = ScriptedRunner(failures={job_id: 1000})

    with running_engine(core, runner):
        wait_for(lambda: not core.jobs.get_job("acme", job_id).enabled, what="the pause")

    disabled = list(core.jobs.events.get(job_id))[-1]
    assert type(disabled).__name__ == "Disabled"
    assert disabled.by == "system"
    assert "3 consecutive failed executions" in disabled.reason
    assert len(executions_of(core, job_id, status="failed")) >= 3


def test_a_fire_recorded_by_another_engine_is_not_run_here(core: Core, make_core) -> None:  # type: ignore[no-untyped-def]
    job_id = core.jobs.create_job("acme", every_second("raced", pattern="0 0 1 1 *"), by="ana").id
    runner = ScriptedRunner()
    job = core.jobs.get_job("acme", job_id)

    with running_engine(core, runner) as engine:
        slot = engine.clock.now().replace(microsecond=0) - timedelta(seconds=30)
        make_core().jobs.record_fire("acme", Fire(job_id, slot))
        won = core.jobs.record_fires([job], [Fire(job_id, slot)])

    assert won == []
    assert runner.for_job(job_id) == []


def _down_for_ten_minutes(
    core: Core, policy: str, **extra: Any
) -> tuple[Any, FakeClock, ScriptedRunner]:
    job_id = core.jobs.create_job("acme", every_second(misfirePolicy=policy, **extra), by="ana").id
    created = next(iter(core.jobs.events.get(job_id))).timestamp
    clock = FakeClock(created + timedelta(minutes=10))
    return job_id, clock, ScriptedRunner()


def skips_of(core: Core, job_id: Any) -> list[dict[str, Any]]:
    core.projections.catch_up()
    return sorted(
        (s for s in core.skips_view.dump()[1].values() if s["jobId"] == str(job_id)),
        key=lambda s: s["from"],
    )


def test_ten_minutes_without_an_engine_leave_one_missed_record(core: Core) -> None:
    job_id, clock, runner = _down_for_ten_minutes(core, "skip")

    with running_engine(core, runner, clock, misfire_grace_seconds=0):
        pass

    (run,) = skips_of(core, job_id)
    assert run["reason"] == "MISSED"
    assert 599 <= run["count"] <= 600
    assert runner.requests == []


def test_run_once_catches_up_the_latest_missed_slot(core: Core) -> None:
    job_id, clock, runner = _down_for_ten_minutes(core, "runOnce")

    with running_engine(core, runner, clock, misfire_grace_seconds=0):
        wait_for(lambda: executions_of(core, job_id, status="succeeded"), what="the catch-up")

    (row,) = executions_of(core, job_id)
    assert row["trigger"] == "catch-up"
    last_skipped = parse_instant(skips_of(core, job_id)[-1]["to"], "to")
    assert parse_instant(row["scheduledFor"], "at") == last_skipped + timedelta(seconds=1)
    assert [s["reason"] for s in skips_of(core, job_id)] == ["MISSED"]


def test_run_all_catches_up_each_slot_inside_the_window(core: Core) -> None:
    job_id, clock, runner = _down_for_ten_minutes(core, "runAll", catchUpWindowSeconds=30)

    with running_engine(core, runner, clock, misfire_grace_seconds=0, max_concurrency=50):
        wait_for(
            lambda: len(executions_of(core, job_id, status="succeeded")) >= 30, what="catch-ups"
        )

    rows = executions_of(core, job_id)
    assert {r["trigger"] for r in rows} == {"catch-up"}
    assert 30 <= len(rows) <= 31
    (outside,) = skips_of(core, job_id)
    assert outside["reason"] == "OUTSIDE_CATCH_UP_WINDOW"
    assert len(rows) + outside["count"] in (600, 601)


def test_a_restarted_engine_resumes_after_the_last_decided_slot(core: Core) -> None:
    job_id, clock, runner = _down_for_ten_minutes(core, "skip")
    with running_engine(core, runner, clock, misfire_grace_seconds=0):
        pass
    clock.advance(120)

    with running_engine(core, runner, clock, misfire_grace_seconds=0):
        pass

    runs = skips_of(core, job_id)
    assert [r["reason"] for r in runs] == ["MISSED", "MISSED"]
    assert 719 <= sum(r["count"] for r in runs) <= 720  # no slot counted twice


def _a_minute_late(
    core: Core, single_node: bool, until: Callable[[Any, ScriptedRunner, FakeClock], None]
) -> tuple[Any, ScriptedRunner]:
    """An every-second job's engine whose clock jumps a minute between two ticks (as an
    overloaded node's loop comes round late); `until` waits inside for what should follow."""
    job_id = core.jobs.create_job("acme", every_second(misfirePolicy="skip"), by="ana").id
    created = next(iter(core.jobs.events.get(job_id))).timestamp
    clock = FakeClock(created.replace(microsecond=0) + timedelta(seconds=2))
    runner = ScriptedRunner()
    with running_engine(core, runner, clock, misfire_grace_seconds=10, single_node=single_node):
        clock.advance(1)
        wait_for(lambda: runner.for_job(job_id), what="the first fire")
        clock.advance(60)
        until(job_id, runner, clock)
    return job_id, runner


def test_slots_a_running_engine_reaches_later_than_the_grace_follow_the_misfire_policy(
    core: Core,
) -> None:
    """On a single-node store, the slots older than the grace are one MISSED run and only
    the recent ones fire, late."""

    def until(job_id: Any, runner: ScriptedRunner, clock: FakeClock) -> None:
        wait_for(lambda: skips_of(core, job_id), what="the missed run")
        after = clock.now() - timedelta(seconds=10)
        wait_for(
            lambda: len([r for r in runner.for_job(job_id) if r.scheduled_for > after]) >= 10,
            what="the slots within the grace",
        )

    job_id, runner = _a_minute_late(core, True, until)

    (missed,) = skips_of(core, job_id)
    assert missed["reason"] == "MISSED"
    assert 49 <= missed["count"] <= 51
    first, last = parse_instant(missed["from"], "from"), parse_instant(missed["to"], "to")
    fired = sorted(r.scheduled_for for r in runner.for_job(job_id))
    assert len(fired) == len(set(fired))  # none twice
    assert not [slot for slot in fired if first <= slot <= last]  # none both run and missed
    assert len([slot for slot in fired if slot > last]) in (10, 11)  # those within the grace
    # from the first fire to the last, every slot has exactly one record
    assert len(fired) + missed["count"] == (fired[-1] - fired[0]).total_seconds() + 1


def test_where_other_nodes_may_run_a_late_slot_it_is_fired_not_recorded_missed(
    core: Core,
) -> None:
    """On a store several nodes share, a node whose heartbeat looked late to the others may
    have had its slots run by them: a skip record could not conflict with their fire."""

    def until(job_id: Any, runner: ScriptedRunner, clock: FakeClock) -> None:
        end = clock.now()
        wait_for(
            lambda: any(r.scheduled_for == end for r in runner.for_job(job_id)),
            what="the last of the late slots",
        )

    job_id, runner = _a_minute_late(core, False, until)

    assert skips_of(core, job_id) == []
    fired = sorted(r.scheduled_for for r in runner.for_job(job_id))
    assert len(fired) == len(set(fired)) == (fired[-1] - fired[0]).total_seconds() + 1


def test_every_slot_of_a_window_has_exactly_one_record_in_the_ledger(core: Core) -> None:
    from application.slot_ledger import slot_ledger

    job_id = core.jobs.create_job(
        "acme", every_second("slow", concurrencyPolicy="skip"), by="ana"
    ).id
    gate = threading.Event()
    runner = ScriptedRunner(gate={job_id: gate})

    with running_engine(core, runner) as engine:
        wait_for(lambda: engine.stats.skipped >= 3, what="overlapping slots")
        gate.set()
        wait_for(
            lambda: len(executions_of(core, job_id, status="succeeded")) >= 3, what="more runs"
        )
        now = engine.clock.now()
    core.projections.catch_up()
    created = next(iter(core.jobs.events.get(job_id))).timestamp

    ledger = slot_ledger(core.jobs, core.executions_view, core.skips_view, "acme", job_id,
                         created, now - timedelta(seconds=1), now)  # fmt: skip

    schedule = core.jobs.get_job("acme", job_id).schedule
    assert [e["slot"] for e in ledger] == [
        s.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        for s in schedule.slots(created, now - timedelta(seconds=1))
    ]
    outcomes = {e["outcome"] for e in ledger}
    assert "undecided" not in outcomes and "skipped" in outcomes and "succeeded" in outcomes
    assert {e["reason"] for e in ledger if e["outcome"] == "skipped"} == {"OVERLAP"}


def test_allow_lets_fires_overlap(core: Core) -> None:
    job_id = core.jobs.create_job(
        "acme", every_second("overlapping", concurrencyPolicy="allow"), by="ana"
    ).id
    gate = threading.Event()
    runner = ScriptedRunner(gate={job_id: gate})

    with running_engine(core, runner, max_concurrency=10) as engine:
        wait_for(lambda: len(runner.for_job(job_id)) >= 3, what="three runs at once")
        gate.set()
        assert engine.stats.skipped == 0


def test_queue_buffers_one_fire_and_skips_the_rest(core: Core) -> None:
    job_id = core.jobs.create_job(
        "acme", every_second("queued", concurrencyPolicy="queue"), by="ana"
    ).id
    gate = threading.Event()
    runner = ScriptedRunner(gate={job_id: gate})

    with running_engine(core, runner) as engine:
        wait_for(lambda: runner.for_job(job_id), what="the first run")
        wait_for(lambda: engine.stats.skipped >= 2, what="slots beyond the queued one")
        assert len(runner.for_job(job_id)) == 1  # the queued one waits
        gate.set()
        wait_for(lambda: len(runner.for_job(job_id)) >= 2, what="the queued run")

    rows = executions_of(core, job_id)
    queued = sorted(rows, key=lambda r: r["scheduledFor"])[1]
    first_finished = sorted(rows, key=lambda r: r["scheduledFor"])[0]["finishedAt"]
    assert queued["startedAt"] >= first_finished


def test_replace_cancels_the_running_execution(core: Core) -> None:
    job_id = core.jobs.create_job(
        "acme", every_second("replaced", concurrencyPolicy="replace"), by="ana"
    ).id
    gate = threading.Event()
    runner = ScriptedRunner(gate={job_id: gate})

    with running_engine(core, runner):
        wait_for(lambda: executions_of(core, job_id, status="failed"), what="a replaced run")
        gate.set()

    replaced = executions_of(core, job_id, status="failed")[0]
    assert replaced["error"]["code"] == "REPLACED"


def test_retries_wait_as_the_backoff_says(core: Core) -> None:
    retry = {"maxRetries": 2, "retryDelaySeconds": 1, "backoff": "exponential"}
    job_id = core.jobs.create_job(
        "acme", every_second("backoff", pattern="0 0 1 1 *", retry=retry), by="ana"
    ).id
    runner = ScriptedRunner(failures={job_id: 2})

    with running_engine(core, runner):
        execution_id = core.jobs.trigger_job("acme", job_id, by="ana").id
        wait_for(
            lambda: executions_of(core, job_id, status="succeeded"), what="success", timeout=30
        )

    failed = [e for e in core.jobs.events.get(execution_id) if type(e).__name__ == "AttemptFailed"]
    assert [round((e.next_attempt_at - e.at).total_seconds()) for e in failed] == [1, 2]
    starts = [e.at for e in core.jobs.events.get(execution_id) if type(e).__name__ == "Started"]
    assert starts[1] >= failed[0].next_attempt_at and starts[2] >= failed[1].next_attempt_at


def test_fires_the_store_refused_are_recorded_when_it_is_back(core: Core) -> None:
    from eventsourcing.persistence import OperationalError

    job_id = core.jobs.create_job("acme", every_second("outage"), by="ana").id
    runner = ScriptedRunner()
    real = core.jobs.record_fires
    refused: list[Any] = []

    def flaky(jobs: Any, fires: Any, *args: Any, **kwargs: Any) -> Any:
        if len(refused) < 3:  # the store is away for three ticks
            refused.append([f.scheduled_for for f in fires])
            raise OperationalError("the store is away")
        return real(jobs, fires, *args, **kwargs)

    core.jobs.record_fires = flaky  # type: ignore[method-assign]
    with running_engine(core, runner):
        wait_for(
            lambda: len(executions_of(core, job_id, status="succeeded")) >= 4, what="fires after"
        )

    slots = sorted(r["scheduledFor"] for r in executions_of(core, job_id))
    seconds = [int(s[17:19]) + 60 * int(s[14:16]) for s in slots]
    assert len(refused) == 3
    first_refused = refused[0][0].isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert slots[0] == first_refused  # the slot refused first was recorded once the store was back
    assert seconds == list(range(seconds[0], seconds[0] + len(seconds)))  # and none after it lost


def _half_a_second_before_a_slot(core: Core, **extra: Any) -> tuple[Any, FakeClock]:
    """A job whose slots before the clock were missed (skipped, not run), 0.3 s before one."""
    doc = every_second(misfirePolicy="skip", **extra)
    job_id = core.jobs.create_job("acme", doc, by="ana").id
    created = next(iter(core.jobs.events.get(job_id))).timestamp
    slot = created.replace(microsecond=0) + timedelta(seconds=5)
    return job_id, FakeClock(slot - timedelta(seconds=0.3))


def test_an_allow_jobs_fire_is_recorded_ahead_and_started_at_its_slot(core: Core) -> None:
    job_id, clock = _half_a_second_before_a_slot(core)
    slot = clock.now() + timedelta(seconds=0.3)
    runner = ScriptedRunner()

    with running_engine(core, runner, clock, decide_ahead_seconds=0.5, misfire_grace_seconds=0):
        wait_for(lambda: executions_of(core, job_id), what="the fire recorded before its slot")
        (row,) = executions_of(core, job_id)
        assert row["status"] == "pending"
        assert row["scheduledFor"].startswith(slot.strftime("%Y-%m-%dT%H:%M:%S"))
        assert runner.for_job(job_id) == []  # recorded, not started: its slot has not come

        clock.advance(0.3)
        wait_for(lambda: runner.for_job(job_id), what="the start at the slot")
        wait_for(lambda: executions_of(core, job_id, status="succeeded"), what="the outcome")

    (request,) = runner.for_job(job_id)
    assert request.scheduled_for == slot
    (row,) = executions_of(core, job_id)
    assert row["startedAt"] >= row["scheduledFor"]


def test_a_skip_jobs_fire_is_decided_at_its_slot_not_ahead(core: Core) -> None:
    job_id, clock = _half_a_second_before_a_slot(core, concurrencyPolicy="skip")
    runner = ScriptedRunner()

    with running_engine(core, runner, clock, decide_ahead_seconds=0.5, misfire_grace_seconds=0):
        other = core.jobs.create_job("acme", every_second("marker"), by="ana").id
        wait_for(lambda: executions_of(core, other), what="the allow job's fire, ahead")
        assert executions_of(core, job_id) == []  # whether it overlaps is known only at its slot

        clock.advance(0.3)
        wait_for(lambda: executions_of(core, job_id, status="succeeded"), what="the fire")


def test_a_fire_recorded_but_never_started_by_a_dead_engine_runs_at_restart(core: Core) -> None:
    doc = {**every_second("nightly"), "pattern": "0 3 * * *"}  # no slot of its own meanwhile
    job_id = core.jobs.create_job("acme", doc, by="ana").id
    job = core.jobs.get_job("acme", job_id)
    slot = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=2)
    (execution,) = core.jobs.record_fires([job], [Fire(job_id, slot)])  # then the engine died
    runner = ScriptedRunner()

    with running_engine(core, runner, node=core.jobs.node):
        wait_for(lambda: executions_of(core, job_id, status="succeeded"), what="the run")

    (row,) = executions_of(core, job_id)
    assert row["id"] == str(execution.id)
    assert (row["trigger"], row["attempt"], row["error"]) == ("cron", 1, None)
    assert [r.scheduled_for for r in runner.for_job(job_id)] == [slot]


def test_an_overloaded_engine_decides_slots_later_instead_of_piling_up_work(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("application.engine.BACKLOG", 5)
    ids = [core.jobs.create_job("acme", every_second(f"j{i}"), by="ana").id for i in range(10)]
    created = next(iter(core.jobs.events.get(ids[-1]))).timestamp
    clock = FakeClock(created.replace(microsecond=0) + timedelta(seconds=1.5))
    gate = threading.Event()
    runner = ScriptedRunner(gate={i: gate for i in ids})
    recorded = lambda: sum(len(executions_of(core, i)) for i in ids)  # noqa: E731

    with running_engine(
        core, runner, clock, max_concurrency=1, misfire_grace_seconds=60
    ) as engine:
        wait_for(lambda: recorded() >= 10, what="the first slot's fires")
        # one runs, the others (nine, or more if a second slot was already due) wait
        wait_for(lambda: engine.stats.queued >= 9, what="fires waiting for the pool")
        first = recorded()
        clock.advance(3)  # three more slots come
        wait_for(lambda: engine.stats.deferred, what="the engine declining to decide them")
        assert recorded() == first  # no new slots decided while the backlog is over its bound

        gate.set()  # the work drains; the slots are decided late, none dropped
        wait_for(lambda: recorded() >= first + 30, what="the late slots")


def _running_on(core: Core, node: str, job_id: Any, slot: Any) -> Any:
    """An execution another engine node recorded and started (and then went quiet)."""
    job = core.jobs.get_job("acme", job_id)
    (execution,) = core.jobs.record_fires([job], [Fire(job_id, slot)])
    execution.start(node, slot)
    core.jobs.record(execution)
    return execution


@pytest.mark.parametrize("ghost_alive", [False, True])
def test_a_node_that_stops_beating_has_its_executions_taken_over(
    core: Core, ghost_alive: bool
) -> None:
    doc = {**every_second("nightly"), "pattern": "0 3 * * *"}
    job_id = core.jobs.create_job("acme", doc, by="ana").id
    now = datetime.now(UTC).replace(microsecond=0)
    clock = FakeClock(now)
    execution = _running_on(core, "ghost", job_id, now - timedelta(seconds=1))
    core.nodes.beat("ghost", iso_ms(now))  # alive when we start: its run is its own
    runner = ScriptedRunner()

    with running_engine(core, runner, clock, takeover_seconds=4) as engine:
        for second in range(1, 7):  # the engine beats and looks every takeover_seconds / 4
            if ghost_alive:
                core.nodes.beat("ghost", iso_ms(now + timedelta(seconds=second)))
            looked = engine.stats.watches
            clock.advance(1)
            wait_for(lambda: engine.stats.watches > looked, what="the engine's look")  # noqa: B023

    (row,) = executions_of(core, job_id)
    assert row["id"] == str(execution.id)
    if ghost_alive:
        assert row["status"] == "running"  # a live node's run is never interrupted
    else:
        assert (row["status"], row["error"]["code"]) == ("failed", "INTERRUPTED")
    assert core.nodes.last_seen()["test-node"] == iso_ms(now + timedelta(seconds=6))
    assert runner.for_job(job_id) == []


def _left_running(core: Core, job_id: Any, slots: list[datetime], node: str) -> list[Any]:
    """Executions `node` recorded and started, then died (two transactions for them all)."""
    job = core.jobs.get_job("acme", job_id)
    executions = core.jobs.record_fires([job], [Fire(job_id, slot) for slot in slots])
    for execution, slot in zip(executions, slots, strict=True):
        execution.start(node, slot)
    core.jobs.record(*executions)
    return executions


def test_a_start_recovers_thousands_of_interrupted_executions_in_a_few_transactions(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One read and one write per interrupted execution made a restarted node take 46-88 s
    to start; they are read together and written in group commits."""
    once = core.jobs.create_job("acme", every_second("once", pattern="0 0 1 1 *"), by="ana").id
    doc = every_second(
        "again", pattern="0 0 1 1 *", retry={"maxRetries": 1, "retryDelaySeconds": 0}
    )
    again = core.jobs.create_job("acme", doc, by="ana").id
    now = datetime.now(UTC).replace(microsecond=0)
    before = [now - timedelta(hours=1) + timedelta(seconds=i) for i in range(2_000)]
    node = core.jobs.node  # this node's previous process left them
    failing = {e.id for e in _left_running(core, once, before, node)}
    retrying = {e.id for e in _left_running(core, again, before[:300], node)}
    job = core.jobs.get_job("acme", again)  # recorded, never started, inside the grace: runs
    (fresh,) = core.jobs.record_fires([job], [Fire(again, now - timedelta(seconds=2))])
    interrupted: list[tuple[str, Any]] = []  # (event, execution) per INTERRUPTED event
    transactions: list[int] = []  # INTERRUPTED events per write that carried any
    put = core.jobs.events.put

    def counted_put(events: Any, *args: Any, **kwargs: Any) -> Any:
        mine = [
            (type(e).__name__, e.originator_id)
            for e in events
            if (getattr(e, "error", None) or {}).get("code") == "INTERRUPTED"
        ]
        recordings = put(events, *args, **kwargs)
        if mine:
            interrupted.extend(mine)
            transactions.append(len(mine))
        return recordings

    monkeypatch.setattr(core.jobs.events, "put", counted_put)
    get = core.jobs.repository.get
    reads: list[Any] = []
    monkeypatch.setattr(
        core.jobs.repository, "get", lambda i, *a, **k: reads.append(i) or get(i, *a, **k)
    )
    runner = ScriptedRunner()

    def total(job_id: Any, status: str) -> int:
        core.projections.catch_up()
        return core.queries.list_executions("acme", job_id=str(job_id), status=status).total

    with running_engine(core, runner, node=node, max_concurrency=50):
        wait_for(lambda: total(again, "succeeded") == 301, what="the retries to succeed")

    assert sorted(interrupted) == sorted(
        [("Failed", i) for i in failing] + [("AttemptFailed", i) for i in retrying]
    )
    assert {(r.execution_id, r.attempt) for r in runner.requests} == {
        *((i, 2) for i in retrying),
        (fresh.id, 1),
    }
    assert len(runner.requests) == 301  # none ran twice
    assert total(once, "failed") == 2_000
    # the cost: 2,300 executions read together, written in a transaction per 1,000 (each
    # may be split in two by other writes joining the group), not one of each per execution
    assert [i for i in reads if i in failing | retrying] == []
    assert len(transactions) <= 6, transactions


def test_executions_another_node_took_over_first_are_left_to_it_and_the_rest_recovered(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The group's write is refused for the few another node recorded first: the batcher
    writes the group again one by one, and only those are left out."""
    doc = every_second(
        "again", pattern="0 0 1 1 *", retry={"maxRetries": 1, "retryDelaySeconds": 0}
    )
    job_id = core.jobs.create_job("acme", doc, by="ana").id
    now = datetime.now(UTC).replace(microsecond=0)
    slots = [now - timedelta(hours=1) + timedelta(seconds=i) for i in range(20)]
    node = core.jobs.node
    left = [e.id for e in _left_running(core, job_id, slots, node)]
    theirs = set(left[:5])
    load = core.jobs.load_executions

    def load_then_lose(ids: Any) -> Any:
        loaded = load(ids)
        for execution_id in theirs:  # another node fails them, after this one read them
            execution = core.jobs.repository.get(execution_id)
            execution.fail({"message": "taken over", "code": "INTERRUPTED"}, now)
            core.jobs.record(execution)
        return loaded

    monkeypatch.setattr(core.jobs, "load_executions", load_then_lose)
    runner = ScriptedRunner()

    with running_engine(core, runner, node=node):
        wait_for(
            lambda: len(executions_of(core, job_id, status="succeeded")) == 15,
            what="the others' retries",
        )

    assert sorted((r.execution_id, r.attempt) for r in runner.requests) == sorted(
        (i, 2) for i in left if i not in theirs
    )
    for execution_id in theirs:
        events = list(core.jobs.events.get(execution_id))
        assert [type(e).__name__ for e in events] == ["Scheduled", "Started", "Failed"]
        assert events[-1].error["message"] == "taken over"


def test_a_fire_recorded_ahead_still_starts_at_its_slot_when_the_engine_is_stopping(
    core: Core,
) -> None:
    job_id, clock = _half_a_second_before_a_slot(core)
    runner = ScriptedRunner()

    with running_engine(
        core, runner, clock, decide_ahead_seconds=0.5, misfire_grace_seconds=0
    ) as engine:
        wait_for(lambda: executions_of(core, job_id), what="the fire recorded before its slot")
        engine.stop()  # SIGTERM, 0.3 s before the slot
        clock.advance(0.3)

    (row,) = executions_of(core, job_id)
    assert row["status"] == "succeeded"
    assert [r.scheduled_for for r in runner.for_job(job_id)] == [clock.now()]


def test_two_live_nodes_take_turns_per_job_instead_of_racing_for_every_fire(
    make_core: Any,
) -> None:
    """Each job's first node in turn decides its slots; the other learns from the log that
    it did and tries nothing. When a node goes, the other steps in for its jobs."""
    core_a, core_b = make_core(), make_core()
    job_ids = [
        core_a.jobs.create_job("acme", every_second(f"j{i}"), by="ana").id for i in range(8)
    ]
    now = iso_ms(datetime.now(UTC))
    core_a.nodes.beat("node-a", now)  # each sees the other alive from its first beat
    core_a.nodes.beat("node-b", now)
    turns = {"stagger_seconds": 2.0, "decide_ahead_seconds": 0.5}
    runner_a, runner_b = ScriptedRunner(), ScriptedRunner()

    with running_engine(core_a, runner_a, node="node-a", **turns) as a:
        with running_engine(core_b, runner_b, node="node-b", **turns) as b:
            wait_for(lambda: a.stats.won + b.stats.won >= 40, what="40 fires", timeout=40)
        b_stopped = datetime.now(UTC)
        # node-b is gone (it still counts as alive: it beat within takeover_seconds)
        wait_for(
            lambda: all(
                any(
                    parse_instant(r["scheduledFor"], "s") > b_stopped + timedelta(seconds=2)
                    for r in executions_of(core_a, j)
                )
                for j in job_ids
            ),
            what="every job firing after node-b stopped",
            timeout=30,
        )

    lost = (a.stats.fired - a.stats.won) + (b.stats.fired - b.stats.won)
    assert lost <= len(job_ids)  # at most a stray race, not one per fire
    for job_id in job_ids:
        rows = executions_of(core_a, job_id)
        slots = [r["scheduledFor"] for r in rows]
        assert len(slots) == len(set(slots))
        started = sorted(
            r.scheduled_for for r in runner_a.for_job(job_id) + runner_b.for_job(job_id)
        )
        assert len(started) == len(set(started))  # no slot ran twice
