"""PostgreSQL restarted under a running node, simulated by a TCP proxy between the node and the
server (every connection cut, new ones refused, then accepted again): the node recovers by
itself and every slot of the window ends in exactly one record."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from application.slot_ledger import slot_ledger
from domain.instants import iso_ms
from interfaces.composition import Core, Settings
from tests.engine_support import running_engine, wait_for
from tests.target_server import Target, serving
from tests.tcp_proxy import TcpProxy, proxy_to

OUTAGE_SECONDS = 5

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def database_url(postgres_database: str) -> str:
    return f"{postgres_database}?schema=t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def proxy(database_url: str) -> Iterator[TcpProxy]:
    with proxy_to(database_url) as p:
        yield p


@pytest.fixture
def node(proxy: TcpProxy, database_url: str, tmp_path: Path) -> Iterator[Core]:
    """A node whose every connection to the store goes through the proxy, following the log as
    `serve` does."""
    core = Core(
        Settings(
            data_dir=tmp_path, database_url=proxy.url(database_url), node="node-1",
            allow_targets="127.0.0.0/8", poll_seconds=0.1,
        )
    )  # fmt: skip
    core.start()
    yield core
    core.close()


@pytest.fixture
def target() -> Iterator[Target]:
    with serving() as t:
        yield t


def rows(witness: Core, job_id: Any) -> list[dict[str, Any]]:
    witness.projections.catch_up()
    return witness.queries.list_executions("acme", job_id=str(job_id), limit=500).items


def test_a_node_rides_out_a_store_restart_and_every_slot_ends_in_one_record(
    node: Core, proxy: TcpProxy, target: Target, make_core: Any
) -> None:
    witness = make_core()  # the test's own view of the store, not through the proxy
    ticking = node.jobs.create_job("acme", {
        "name": "tick", "pattern": "* * * * * *", "taskType": "FunctionTask",
        "taskConfig": {"function": "noop"},
    }, by="ana").id  # fmt: skip
    held = node.jobs.create_job("acme", {
        "name": "held", "pattern": "0 0 1 1 *", "taskConfig": {"url": target.url("/held")},
    }, by="ana").id  # fmt: skip
    target.hold["/held"] = threading.Event()

    with running_engine(node, node.task_runner()):
        began = datetime.now(UTC)
        wait_for(lambda: [r for r in rows(witness, ticking) if r["status"] == "succeeded"])
        in_flight = node.jobs.trigger_job("acme", held, by="ana").id
        wait_for(lambda: target.at("/held"), what="the held call to arrive")
        # when: the store goes away under the node, while a call is in flight; the call ends
        # during the outage, so its outcome has to wait for the store
        cut = datetime.now(UTC)
        proxy.down()
        target.hold["/held"].set()
        wait_for(
            lambda: datetime.now(UTC) > cut + timedelta(seconds=OUTAGE_SECONDS),
            what="the outage", timeout=OUTAGE_SECONDS + 10,
        )  # fmt: skip
        reconnected = proxy.accepted
        proxy.up()
        after_back = iso_ms(datetime.now(UTC) + timedelta(seconds=2))
        wait_for(
            lambda: [r for r in rows(witness, ticking) if r["scheduledFor"] > after_back],
            what="fires after the store came back", timeout=120,
        )  # fmt: skip
        wait_for(lambda: [r for r in rows(witness, held) if r["status"] == "succeeded"])
        ended = datetime.now(UTC)

    # then: the node reconnected by itself, and the ledger owes nothing
    assert proxy.accepted > reconnected
    witness.projections.catch_up()
    start = began.replace(microsecond=0) + timedelta(seconds=1)
    ledger = slot_ledger(
        witness.jobs, witness.executions_view, witness.skips_view, "acme", ticking,
        start, ended.replace(microsecond=0), datetime.now(UTC),
    )  # fmt: skip
    assert len(ledger) >= OUTAGE_SECONDS
    outcomes = Counter(entry["outcome"] for entry in ledger)
    assert set(outcomes) <= {"succeeded", "skipped"}, outcomes  # none lost, none left running
    slots = Counter(r["scheduledFor"] for r in rows(witness, ticking))
    assert max(slots.values()) == 1  # no slot run twice
    for row in rows(witness, ticking):  # every execution whole in the log (no missing event)
        assert witness.jobs.get_execution("acme", row["id"]).status.value == row["status"]
    events = [type(e).__name__ for e in witness.jobs.events.get(in_flight)]
    assert events == ["Scheduled", "Started", "Succeeded"]
