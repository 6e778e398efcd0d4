"""Event subscribers against a real `cronsource serve` and real receivers on 127.0.0.1: the
event log API, the live stream that resumes, signed webhooks that survive a SIGKILL."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.conftest import Server, start_server, stop_server
from tests.webhook_receiver import Receiver, receiving

# fast retries, and few of them, so failures and auto-disable happen within a test
WEBHOOK_ENV = {"CRONSOURCE_WEBHOOK_RETRY_SCHEDULE": "0.05,0.1,0.2",
               "CRONSOURCE_WEBHOOK_DISABLE_AFTER": "4"}  # fmt: skip
SSE = {"Accept": "text/event-stream"}


def job(name: str) -> dict[str, Any]:
    return {"name": name, "pattern": "0 2 * * *", "taskType": "FunctionTask",
            "taskConfig": {"function": "noop", "payload": {}}}  # fmt: skip


@pytest.fixture(scope="module")
def hooks(store_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(store_url, tmp_path_factory.mktemp("hooks"), **WEBHOOK_ENV)
    yield server
    stop_server(server)


@pytest.fixture
def api(hooks: Server, tenant: str) -> Iterator[httpx.Client]:
    with hooks.client(tenant) as c:
        yield c


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as r:
        yield r


def subscribe(api: httpx.Client, receiver: Receiver, path: str, **fields: Any) -> dict[str, Any]:
    body = {"url": receiver.url(path), "eventTypes": ["scheduler.job.*"], **fields}
    created = api.post("/webhooks", json=body)
    assert created.status_code == 201, created.text
    hook = created.json()
    receiver.secrets[path] = hook["secret"]
    return hook


def changes(api: httpx.Client, count: int, prefix: str = "j") -> list[str]:
    """Create `count` jobs; their ids."""
    ids = []
    for i in range(count):
        response = api.post("/jobs", json=job(f"{prefix}-{i}"))
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def all_events(api: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    return api.get("/events", params={"limit": 1000, **params}).json()


# -- the log ---------------------------------------------------------------------------------


def test_paging_with_after_yields_every_event_once_in_order_while_writes_continue(
    api: httpx.Client,
) -> None:
    done = threading.Event()

    def write() -> None:
        try:
            for job_id in changes(api, 15):
                api.post(f"/jobs/{job_id}/disable")
        finally:
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    seen: list[int] = []
    after = 0
    while True:
        finished = done.is_set()  # read before the page: a page after the last write is final
        page = api.get("/events", params={"after": after, "limit": 4})
        assert page.status_code == 200
        seen += [e["position"] for e in page.json()]
        after = int(page.headers["X-Next-After"])
        if finished and "Link" not in page.headers:
            break
    writer.join()

    assert seen == sorted(set(seen))  # in order, none twice
    assert seen == [e["position"] for e in all_events(api)]  # none missed
    assert len(seen) == 30


def test_the_next_link_leads_to_the_rest(hooks: Server, api: httpx.Client) -> None:
    changes(api, 3)
    first = api.get("/events", params={"limit": 2})

    rest = api.get(hooks.base + first.links["next"]["url"])

    assert [e["type"] for e in first.json() + rest.json()] == ["scheduler.job.created"] * 3
    assert "next" not in rest.links


def test_a_type_glob_selects_execution_events_only(api: httpx.Client) -> None:
    (job_id,) = changes(api, 1)
    execution = api.post(f"/jobs/{job_id}/trigger").json()["executionId"]
    api.delete(f"/jobs/{job_id}")

    def finished() -> list[dict[str, Any]]:
        return all_events(api, types="scheduler.job.execution.*")

    _wait(lambda: any(e["type"].endswith("succeeded") for e in finished()))
    events = finished()

    assert [e["type"] for e in events] == [
        "scheduler.job.execution.started",
        "scheduler.job.execution.succeeded",
    ]
    assert {e["subject"] for e in events} == {job_id}
    assert {e["data"]["executionId"] for e in events} == {execution}
    both = all_events(api, types="scheduler.job.created,*.deleted")
    assert [e["type"] for e in both] == ["scheduler.job.created", "scheduler.job.deleted"]


def test_a_glob_matching_no_type_is_refused_naming_the_parameter(api: httpx.Client) -> None:
    refused = api.get("/events", params={"types": "scheduler.jobz.*"})

    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "types[0]"


def test_another_tenants_events_are_never_listed(hooks: Server, api: httpx.Client) -> None:
    (job_id,) = changes(api, 1)
    with hooks.client(f"other-{uuid.uuid4().hex[:6]}") as other:
        assert other.get("/events").json() == []
        assert other.get("/events", params={"jobId": job_id}).json() == []
        streamed = other.get("/events/stream", params={"after": 0})  # up to now, then ends
    assert b"data:" not in streamed.content


# -- the stream -------------------------------------------------------------------------------


def _read_events(lines: Iterator[str], count: int) -> list[tuple[int, str, dict[str, Any]]]:
    """The next `count` events of a stream (comments and heartbeats skipped)."""
    events: list[tuple[int, str, dict[str, Any]]] = []
    fields: dict[str, str] = {}
    for line in lines:
        if line == "":
            if "data" in fields:
                events.append((int(fields["id"]), fields["event"], orjson.loads(fields["data"])))
                if len(events) == count:
                    return events
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value
    raise AssertionError(f"the stream ended after {len(events)} event(s)")


def test_the_stream_resumes_with_last_event_id_exactly_where_it_was_cut(
    hooks: Server, api: httpx.Client
) -> None:
    with api.stream("GET", "/events/stream", headers=SSE, timeout=30) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        changes(api, 3, "live")
        live = _read_events(stream.iter_lines(), 3)
    last_id = live[-1][0]
    missed = changes(api, 3, "missed")  # written while no client is connected

    with api.stream("GET", "/events/stream", headers={**SSE, "Last-Event-ID": str(last_id)},
                    timeout=30) as stream:  # fmt: skip
        lines = stream.iter_lines()
        resumed = _read_events(lines, 3)
        (after_resume,) = changes(api, 1, "after")
        (latest,) = _read_events(lines, 1)

    assert [e[1] for e in live] == ["scheduler.job.created"] * 3
    assert [e[2]["subject"] for e in resumed] == missed
    assert all(e[0] > last_id for e in resumed)
    assert latest[2]["subject"] == after_resume
    ids = [e[0] for e in live + resumed] + [latest[0]]
    assert ids == sorted(set(ids))
    assert all(e[0] == e[2]["position"] for e in live + resumed)


def test_the_stream_takes_the_same_filters(api: httpx.Client) -> None:
    (job_id,) = changes(api, 1)
    api.post(f"/jobs/{job_id}/disable")

    streamed = api.get("/events/stream", params={"after": 0, "types": "*.disabled"})

    assert streamed.text.count("event: ") == 1
    assert "event: scheduler.job.disabled" in streamed.text


# "²" and "¹²" pass `str.isdigit` but not `int`: as Latin-1 bytes, the way servers decode them
@pytest.mark.parametrize("value", [b"soon", "²".encode("latin-1"), "¹²".encode("latin-1"),
                                   b"-1", b"1" * 20])  # fmt: skip
def test_a_bad_last_event_id_is_refused_naming_the_header(api: httpx.Client, value: bytes) -> None:
    refused = api.get("/events/stream", headers={"Last-Event-ID": value})  # type: ignore[dict-item]

    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "Last-Event-ID"


# -- webhooks ---------------------------------------------------------------------------------


def test_deliveries_are_signed_and_in_log_order(api: httpx.Client, receiver: Receiver) -> None:
    hook = subscribe(api, receiver, "/ordered")
    ids = changes(api, 12)

    receiver.wait_for(lambda: len(receiver.at("/ordered")) >= 12)
    got = receiver.at("/ordered")

    assert all(m.verified for m in got)
    assert [m.body["subject"] for m in got] == ids
    positions = [m.body["position"] for m in got]
    assert positions == sorted(positions)
    assert all(m.message_id == m.body["id"] for m in got)
    listed = api.get(f"/webhooks/{hook['id']}").json()
    assert listed["secret"] == "whsec_***" and "secret" not in str(listed["url"])


def test_a_receiver_failing_three_times_gets_the_event_with_each_attempt_recorded(
    api: httpx.Client, receiver: Receiver
) -> None:
    hook = subscribe(api, receiver, "/flaky")
    receiver.script["/flaky"] = [500, 503, 500]
    (job_id,) = changes(api, 1)

    receiver.wait_for(lambda: len(receiver.at("/flaky")) == 1)
    listing = f"/webhooks/{hook['id']}/deliveries"
    _wait(lambda: api.get(listing, params={"status": "succeeded"}).json() != [])  # committed
    deliveries = api.get(listing).json()

    assert [m.status for m in receiver.at("/flaky", None)] == [500, 503, 500, 200]
    assert receiver.at("/flaky")[0].body["subject"] == job_id
    (delivery,) = deliveries
    assert delivery["status"] == "succeeded"
    assert [a["status"] for a in delivery["attempts"]] == [500, 503, 500, 200]
    assert all(isinstance(a["latencyMs"], int) for a in delivery["attempts"])
    assert delivery["attempts"][0]["response"] == '{"error": "scripted"}'


def test_a_receiver_that_always_fails_gets_its_subscription_disabled(
    api: httpx.Client, receiver: Receiver
) -> None:
    hook = subscribe(api, receiver, "/down")
    receiver.always["/down"] = 502
    changes(api, 1)

    _wait(lambda: not api.get(f"/webhooks/{hook['id']}").json()["enabled"])
    shown = api.get(f"/webhooks/{hook['id']}").json()
    disabled = all_events(api, types="scheduler.webhook.disabled")

    assert len(receiver.at("/down", 502)) == 4
    assert "4 delivery attempts failed in a row" in shown["disabledReason"]
    assert [e["subject"] for e in disabled] == [hook["id"]]
    assert disabled[0]["data"]["by"] == "system"
    listing = f"/webhooks/{hook['id']}/deliveries"
    _wait(lambda: api.get(listing, params={"status": "failed"}).json() != [])  # committed
    (delivery,) = api.get(listing).json()
    assert delivery["status"] == "failed" and delivery["attemptCount"] == 4


def test_redeliver_one_position_and_a_range(api: httpx.Client, receiver: Receiver) -> None:
    hook = subscribe(api, receiver, "/again")
    changes(api, 3)
    receiver.wait_for(lambda: len(receiver.at("/again")) == 3)
    first, _, third = receiver.at("/again")
    url = f"/webhooks/{hook['id']}/redeliver"

    one = api.post(url, json={"position": first.body["position"]})
    span = api.post(url, json={"after": first.body["position"], "until": third.body["position"]})

    assert one.status_code == 202 and one.json()["count"] == 1
    assert span.json()["count"] == 2
    receiver.wait_for(lambda: len(receiver.at("/again")) == 6)
    again = receiver.at("/again")[3:]
    assert [m.message_id for m in again] == [m.message_id for m in receiver.at("/again")[:3]]
    assert all(m.verified for m in again)
    _wait(
        lambda: (
            len(
                api.get(
                    f"/webhooks/{hook['id']}/deliveries", params={"status": "succeeded"}
                ).json()
            )
            == 6
        )
    )


def test_a_position_of_no_event_of_the_webhook_is_refused(
    api: httpx.Client, receiver: Receiver
) -> None:
    hook = subscribe(api, receiver, "/nothing")

    refused = api.post(f"/webhooks/{hook['id']}/redeliver", json={"position": 10**9})

    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "position"


def test_a_tenants_subscription_never_receives_another_tenants_events(
    hooks: Server, api: httpx.Client, receiver: Receiver
) -> None:
    hook = subscribe(api, receiver, "/mine", eventTypes=["*"])
    with hooks.client(f"other-{uuid.uuid4().hex[:6]}") as other:
        others = changes(other, 3, "theirs")
        other_hook = other.get("/webhooks").json()
    (mine,) = changes(api, 1, "mine")  # after theirs in the log: delivered after passing them

    receiver.wait_for(lambda: any(m.body["subject"] == mine for m in receiver.at("/mine")))

    assert {m.body["subject"] for m in receiver.at("/mine", None)} <= {mine, hook["id"]}
    assert not set(others) & {m.body["subject"] for m in receiver.messages}
    assert other_hook == []


def test_another_tenants_webhook_is_not_found(
    hooks: Server, api: httpx.Client, receiver: Receiver
) -> None:
    hook = subscribe(api, receiver, "/hidden")
    with hooks.client(f"other-{uuid.uuid4().hex[:6]}") as other:
        assert other.get(f"/webhooks/{hook['id']}").status_code == 404
        assert other.delete(f"/webhooks/{hook['id']}").status_code == 404
        assert other.get(f"/webhooks/{hook['id']}/deliveries").status_code == 404


def test_a_blocked_url_is_refused_naming_the_field(api: httpx.Client) -> None:
    refused = api.post(
        "/webhooks", json={"url": "http://169.254.169.254/latest", "eventTypes": ["*"]}
    )

    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "url"


def test_after_a_sigkill_mid_delivery_every_event_is_delivered_none_skipped(
    database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    # the restarted process is another lease holder: it takes over once the lease lapses
    env = {**WEBHOOK_ENV, "CRONSOURCE_WEBHOOK_TIMEOUT_SECONDS": "0.5",
           "CRONSOURCE_WEBHOOK_LEASE_SECONDS": "2.6"}  # fmt: skip
    server = start_server(database_url, tmp_path, **env)
    gate = threading.Event()
    receiver.hold["/crash"] = (5, gate)  # the 5th message waits: the server is mid-delivery
    try:
        with server.client("acme") as api:
            subscribe(api, receiver, "/crash")
            ids = changes(api, 12)
        receiver.wait_for(lambda: len(receiver.at("/crash", None)) >= 5)
        server.proc.kill()
        server.proc.wait(30)
        gate.set()
        server = start_server(database_url, tmp_path, **env)

        receiver.wait_for(lambda: set(ids) <= {m.body["subject"] for m in receiver.at("/crash")})
    finally:
        gate.set()
        stop_server(server)
    got = [m.body["subject"] for m in receiver.at("/crash")]
    firsts = list(dict.fromkeys(got))
    assert firsts == ids  # every one, in log order; the one in flight may come twice
    assert len(got) <= len(ids) + 5


def _wait(predicate: Any, timeout: float = 30) -> None:
    """Poll the API until `predicate()` holds (a hang guard, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.05)


# -- delivery semantics -----------------------------------------------------------------------


def test_a_4xx_answer_is_retried_not_skipped(api: httpx.Client, receiver: Receiver) -> None:
    hook = subscribe(api, receiver, "/picky")
    receiver.script["/picky"] = [400, 302]
    ids = changes(api, 2)

    receiver.wait_for(lambda: len(receiver.at("/picky")) == 2)

    assert [m.status for m in receiver.at("/picky", None)] == [400, 302, 200, 200]
    assert [m.body["subject"] for m in receiver.at("/picky")] == ids
    assert api.get(f"/webhooks/{hook['id']}").json()["enabled"] is True


def test_410_gone_disables_the_subscription_at_once(api: httpx.Client, receiver: Receiver) -> None:
    hook = subscribe(api, receiver, "/gone")
    receiver.always["/gone"] = 410
    changes(api, 1)

    _wait(lambda: not api.get(f"/webhooks/{hook['id']}").json()["enabled"])

    assert len(receiver.at("/gone", 410)) == 1
    assert "410" in api.get(f"/webhooks/{hook['id']}").json()["disabledReason"]


def test_enabled_again_an_auto_disabled_subscription_retries_the_failed_event_first(
    api: httpx.Client, receiver: Receiver
) -> None:
    hook = subscribe(api, receiver, "/revived")
    receiver.always["/revived"] = 503
    (failed,) = changes(api, 1)
    _wait(lambda: not api.get(f"/webhooks/{hook['id']}").json()["enabled"])
    (later,) = changes(api, 1, "later")  # recorded while disabled

    del receiver.always["/revived"]
    enabled = api.put(f"/webhooks/{hook['id']}", json={"enabled": True})
    receiver.wait_for(lambda: len(receiver.at("/revived")) == 2)
    listing = f"/webhooks/{hook['id']}/deliveries"
    _wait(lambda: len(api.get(listing, params={"status": "succeeded"}).json()) == 2)

    assert enabled.status_code == 200
    assert [m.body["subject"] for m in receiver.at("/revived")] == [failed, later]
    first = api.get(listing).json()[-1]  # oldest last
    assert first["attemptCount"] == 5 and first["status"] == "succeeded"  # 4 failed, then 1


def test_a_disabled_subscription_gets_no_further_send(
    api: httpx.Client, receiver: Receiver
) -> None:
    hook = subscribe(api, receiver, "/paused")
    gate = threading.Event()
    receiver.hold["/paused"] = (1, gate)  # the first send is in flight while it is disabled
    try:
        changes(api, 3)
        receiver.wait_for(lambda: len(receiver.at("/paused")) == 1)
        assert api.put(f"/webhooks/{hook['id']}", json={"enabled": False}).status_code == 200
    finally:
        gate.set()
    listing = f"/webhooks/{hook['id']}/deliveries"
    _wait(lambda: api.get(listing).json() != [])  # the batch in flight is committed

    assert len(receiver.at("/paused", None)) == 1
    refused = api.post(f"/webhooks/{hook['id']}/redeliver", json={"position": 1})
    assert refused.status_code == 409


def test_disabled_and_enabled_at_once_one_worker_sends_each_event_once(
    api: httpx.Client, receiver: Receiver
) -> None:
    hook = subscribe(api, receiver, "/flip")
    gate = threading.Event()
    receiver.hold["/flip"] = (1, gate)
    try:
        ids = changes(api, 4)
        receiver.wait_for(lambda: len(receiver.at("/flip")) == 1)
        api.put(f"/webhooks/{hook['id']}", json={"enabled": False})
        api.put(f"/webhooks/{hook['id']}", json={"enabled": True})
    finally:
        gate.set()

    receiver.wait_for(lambda: set(ids) <= {m.body["subject"] for m in receiver.at("/flip")})

    assert [m.body["subject"] for m in receiver.at("/flip")] == ids
    assert receiver.most_in_flight["/flip"] == 1


# -- what a client sends back -----------------------------------------------------------------


def test_a_masked_secret_is_refused_on_create(api: httpx.Client, receiver: Receiver) -> None:
    body = {"url": receiver.url("/x"), "eventTypes": ["*"], "secret": "whsec_***"}

    refused = api.post("/webhooks", json=body)

    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "secret"


def test_putting_back_what_get_shows_keeps_the_url_and_the_secret(
    api: httpx.Client, receiver: Receiver
) -> None:
    hook = subscribe(api, receiver, "/kept?token=abc")
    receiver.secrets["/kept"] = hook["secret"]
    shown = api.get(f"/webhooks/{hook['id']}").json()

    put = api.put(
        f"/webhooks/{hook['id']}", json=shown, headers={"If-Match": f'"{shown["version"]}"'}
    )
    changes(api, 1)
    receiver.wait_for(lambda: len(receiver.at("/kept")) == 1)

    assert shown["url"].endswith("?token=***") and put.status_code == 200
    assert put.json()["version"] == shown["version"]  # nothing changed
    (message,) = receiver.at("/kept")
    assert message.query == "token=abc" and message.verified


# -- shutdown ---------------------------------------------------------------------------------


def test_sigterm_ends_an_open_stream_and_the_server_exits_cleanly(
    database_url: str, tmp_path: Path
) -> None:
    # a graceful timeout far beyond the hang guard: only the server ending the stream passes
    server = start_server(database_url, tmp_path, CRONSOURCE_SHUTDOWN_GRACE_SECONDS="600")
    try:
        with server.client("acme") as api, api.stream("GET", "/events/stream", headers=SSE,
                                                       timeout=30) as stream:  # fmt: skip
            lines = stream.iter_lines()
            assert next(lines) == "retry: 2000"  # the stream is open
            server.proc.send_signal(signal.SIGTERM)
            rest = list(lines)  # until the server closes it
        code = server.proc.wait(30)
    finally:
        stop_server(server)

    assert "event: shutdown" in rest
    assert code == 0
