"""Operating a node: `/metrics` after a known sequence of fires, `/readyz` while the store goes
away and comes back (a TCP proxy in front of PostgreSQL; the server itself stays up)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from interfaces.bootstrap import run_bootstrap
from interfaces.composition import Core, Settings
from tests.e2e.conftest import PREFIX, Server, start_server, stop_server
from tests.engine_support import wait_for
from tests.target_server import Target, serving
from tests.tcp_proxy import proxy_to
from tests.webhook_receiver import Receiver, receiving

# a failed delivery is retried an hour later: within the test, each event is sent once
NO_RETRY_SOON = {"CRONSOURCE_WEBHOOK_RETRY_SCHEDULE": "3600"}


@pytest.fixture
def target() -> Iterator[Target]:
    with serving() as t:
        yield t


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as r:
        yield r


@pytest.fixture
def node(database_url: str, tmp_path: Path) -> Iterator[Server]:
    """A server of this test's own: its counters start at 0 and count only this test's work."""
    server = start_server(database_url, tmp_path, **NO_RETRY_SOON)
    yield server
    stop_server(server)


def scrape(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of `/metrics`, by name and labels."""
    text = httpx.get(server.base + PREFIX + "/metrics", timeout=30).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[name, tuple(sorted(labels.items()))]


def buckets(samples: dict[Any, float], name: str, **labels: str) -> list[float]:
    """A histogram's cumulative bucket counts, smallest bound first, +Inf last."""
    found = [
        (float(dict(key)["le"]), value)
        for (n, key), value in samples.items()
        if n == f"{name}_bucket" and {k: v for k, v in key if k != "le"} == labels
    ]
    return [value for _, value in sorted(found)]


def create(client: httpx.Client, name: str, url: str, **fields: Any) -> str:
    doc = {"name": name, "pattern": "0 0 1 1 *", "taskConfig": {"url": url}, **fields}
    response = client.post("/jobs", json=doc)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def executions(client: httpx.Client, job_id: str, **params: str) -> list[dict[str, Any]]:
    return client.get(f"/jobs/{job_id}/executions", params=params).json()


def subscribe(client: httpx.Client, receiver: Receiver, path: str) -> str:
    body = {"url": receiver.url(path), "eventTypes": ["scheduler.job.execution.failed"]}
    response = client.post("/webhooks", json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_metrics_count_a_known_sequence_of_fires(
    node: Server, target: Target, receiver: Receiver
) -> None:
    target.status["/fail"] = 500
    target.hold["/held"] = threading.Event()
    receiver.always["/hook-fails"] = 500
    with node.client("acme") as client:
        hooks = [subscribe(client, receiver, p) for p in ("/hook", "/hook-fails")]
        succeeds = create(client, "succeeds", target.url("/ok"))
        fails = create(client, "fails", target.url("/fail"), retry={"maxRetries": 1, "retryDelaySeconds": 0})  # fmt: skip
        # a parameter in the URL defers the guard's check to the call
        blocked = create(client, "blocked", "http://169.254.169.254/${T:YYYY}")
        began = datetime.now(UTC)
        overlaps = create(
            client, "overlaps", target.url("/held"), pattern="* * * * * *",
            concurrencyPolicy="skip",
        )  # fmt: skip

        # when: three runs that succeed, one that fails after a retry, one the guard stops,
        # and an every-second job held by its target while its next slots come
        for _ in range(3):
            assert client.post(f"/jobs/{succeeds}/trigger").status_code == 202
        for job_id in (fails, blocked):
            assert client.post(f"/jobs/{job_id}/trigger").status_code == 202
        wait_for(lambda: len(executions(client, succeeds, status="succeeded")) == 3, what="3 runs")
        wait_for(lambda: executions(client, fails, status="failed"), what="the failure")
        wait_for(lambda: executions(client, blocked, status="failed"), what="the block")

        def overlapped() -> list[dict[str, Any]]:
            until = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
            slots = client.get(f"/jobs/{overlaps}/slots", params={"from": began.isoformat(), "to": until}).json()  # fmt: skip
            return [s for s in slots if s.get("reason") == "OVERLAP"]

        wait_for(overlapped, what="a slot skipped by OVERLAP")
        assert client.post(f"/jobs/{overlaps}/disable").status_code == 200
        wait_for(lambda: sample(scrape(node), "cronsource_engine_jobs") == 3, what="the disable")
        target.hold["/held"].set()
        wait_for(lambda: executions(client, overlaps, status="succeeded"), what="the held run")
        for hook in hooks:  # a delivery's record is committed after its attempt is counted
            wait_for(lambda h=hook: len(client.get(f"/webhooks/{h}/deliveries").json()) >= 1)
        wait_for(lambda: len(client.get(f"/webhooks/{hooks[0]}/deliveries").json()) == 2)
        # a skip is counted when decided, and recorded just after: wait for the record
        decided = ("cronsource_fires_total", (("outcome", "skipped"), ("reason", "OVERLAP")))
        wait_for(lambda: len(overlapped()) == scrape(node)[decided], what="the skip records")
        skipped = len(overlapped())
        held_runs = len(executions(client, overlaps))

    # then
    m = scrape(node)
    fires = "cronsource_fires_total"
    assert sample(m, fires, outcome="succeeded", reason="") == 3 + held_runs
    assert sample(m, fires, outcome="failed", reason="HTTP_STATUS") == 1
    assert sample(m, fires, outcome="failed", reason="URL_BLOCKED") == 1
    assert sample(m, fires, outcome="skipped", reason="OVERLAP") == skipped >= 1
    assert sample(m, fires, outcome="failed", reason="TIMEOUT") == 0
    assert sample(m, "cronsource_retries_total") == 1  # the failing job's; a block is final
    assert sample(m, "cronsource_url_blocks_total", caller="job") == 1
    assert sample(m, "cronsource_webhook_deliveries_total", result="succeeded") == 2
    assert sample(m, "cronsource_webhook_deliveries_total", result="failed") == 1
    # first attempts only: 5 triggered by hand, the held run on its schedule
    lateness = "cronsource_fire_lateness_seconds"
    assert sample(m, f"{lateness}_count", trigger="manual") == 5
    assert sample(m, f"{lateness}_count", trigger="cron") == held_runs == 1
    assert buckets(m, lateness, trigger="manual")[-1] == 5
    duration = "cronsource_execution_duration_seconds"
    assert sample(m, f"{duration}_count", outcome="succeeded") == 4
    assert sample(m, f"{duration}_count", outcome="failed") == 2
    for name, labels in [
        (lateness, {"trigger": "manual"}),
        (duration, {"outcome": "succeeded"}),
        ("cronsource_engine_tick_seconds", {}),
        ("cronsource_store_write_seconds", {}),
    ]:
        counts = buckets(m, name, **labels)
        assert counts == sorted(counts), f"{name}: buckets are cumulative"
        assert counts[-1] == sample(m, f"{name}_count", **labels)
    assert sample(m, "cronsource_engine_tick_seconds_count") >= 1  # the held job's slots
    assert sample(m, "cronsource_store_write_seconds_count") >= 1
    assert sample(m, "cronsource_store_up") == 1
    assert sample(m, "cronsource_projection_lag", projection="executions") >= 0
    assert not [k for k in m if "job" in dict(k[1]) or "job_id" in dict(k[1])]  # no per-job label


@pytest.mark.postgres
def test_readyz_is_503_with_the_reason_while_the_store_is_unreachable_and_200_after(
    postgres_database: str, tmp_path: Path
) -> None:
    database_url = f"{postgres_database}?schema=t_{uuid.uuid4().hex[:12]}"
    with proxy_to(database_url) as proxy:
        server = start_server(proxy.url(database_url), tmp_path)
        try:
            ready = server.base + PREFIX + "/readyz"
            wait_for(lambda: _answer(ready, 200), what="ready (the engine has started)")

            proxy.down()
            down = wait_for(lambda: _answer(ready, 503), what="not ready", timeout=60)
            alive = httpx.get(server.base + PREFIX + "/healthz", timeout=30)
            proxy.up()
            back = wait_for(lambda: _answer(ready, 200), what="ready again", timeout=120)
        finally:
            stop_server(server)

    assert down["ready"] is False
    assert down["checks"]["store"]["ok"] is False
    assert down["checks"]["store"]["reason"].startswith("unreachable")
    assert down["checks"]["projections"] == {
        "ok": False, "reason": "unknown: the store did not answer",
    }  # fmt: skip
    assert down["checks"]["engine"]["ok"] is True  # it waits for the store; it did not stop
    assert alive.status_code == 200  # liveness: the process is alive all along
    assert back["ready"] is True
    assert all(check["ok"] for check in back["checks"].values())
    assert back["checks"]["projections"]["maxLag"] == 10_000


def _answer(url: str, status: int) -> dict[str, Any] | None:
    response = httpx.get(url, timeout=30)
    return response.json() if response.status_code == status else None


def test_serve_logs_one_json_object_per_line_and_the_bootstrap_warning_is_one(
    database_url: str, tmp_path: Path
) -> None:
    root = tmp_path / "boot"
    (root / "crm").mkdir(parents=True)
    doc = {"name": "crm-health", "pattern": "*/5 * * * *",
           "taskConfig": {"url": "http://crm-service/health?token=s3cret"}}  # fmt: skip
    (root / "crm" / "jobs.json").write_bytes(orjson.dumps([doc]))
    core = Core(Settings(data_dir=tmp_path, database_url=database_url))
    try:
        run_bootstrap(core, root)  # the bootstrap owns the job…
        job_id = core.queries.list_jobs("default", application_id="crm").items[0]["id"]
        core.jobs.update_job("default", job_id, {"pattern": "0 * * * *"}, by="ana")  # …not now
    finally:
        core.close()

    server = start_server(
        database_url, tmp_path, CRONSOURCE_BOOTSTRAP_DIR=str(root), CRONSOURCE_LOG_LEVEL="INFO"
    )
    httpx.get(server.base + PREFIX + "/healthz", params={"token": "s3cret"}, timeout=30)
    stop_server(server)

    banner = ("cronsource:", "app crm:")  # what `serve` prints for its user, not log lines
    output = [x for x in server.log.read_text().splitlines() if not x.startswith(banner)]
    lines = [orjson.loads(x) for x in output]  # every other line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(x) for x in lines)
    [warning] = [x for x in lines if x["level"] == "WARNING"]
    assert warning["logger"] == "cronsource.bootstrap"
    assert "manually modified by ana" in warning["message"]
    assert warning["job_id"] == job_id
    access = [x for x in lines if x["logger"] == "uvicorn.access" and "?token" in x["message"]]
    assert access and "healthz?token=*** " in access[0]["message"]  # uvicorn's too, masked
    assert "s3cret" not in server.log.read_text()
