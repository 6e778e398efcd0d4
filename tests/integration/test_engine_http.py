"""The engine with its real runners against real HTTP targets on 127.0.0.1 (allow-listed)."""

from __future__ import annotations

import base64
import socket
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from interfaces.composition import Core
from tests.engine_support import running_engine, wait_for
from tests.target_server import Target, serving


@pytest.fixture
def target() -> Any:
    with serving() as t:
        yield t


@pytest.fixture
def core(make_core: Callable[..., Core]) -> Core:
    return make_core(allow_targets="127.0.0.0/8", functions="tests.fixtures_functions")


def rows(core: Core, job_id: Any, **filters: Any) -> list[dict[str, Any]]:
    core.projections.catch_up()
    return core.queries.list_executions("acme", job_id=str(job_id), limit=500, **filters).items


def job(name: str, config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": name, "pattern": "* * * * * *", "taskConfig": config, **extra}


def test_an_every_second_job_hits_the_target_once_per_slot(core: Core, target: Target) -> None:
    config = {"url": target.url("/tick"), "method": "POST",
              "body": {"at": "${T:YYYY-MM-DDTHH:mm:ss}", "yesterday": "${T-1:YYYY-MM-DD}"}}  # fmt: skip
    job_id = core.jobs.create_job("acme", job(config=config, name="tick"), by="ana").id

    with running_engine(core, core.task_runner()):
        wait_for(lambda: len(rows(core, job_id, status="succeeded")) >= 3, what="three fires")

    received = target.at("/tick")
    sent_slots = [r.body["at"] for r in received]
    assert len(sent_slots) == len(set(sent_slots))  # once per slot
    recorded = {r["scheduledFor"][:19] for r in rows(core, job_id)}
    assert set(sent_slots) <= recorded  # each call carried its own scheduled instant
    for r in received:
        day = datetime.fromisoformat(r.body["at"]).date()
        assert r.body["yesterday"] == day.fromordinal(day.toordinal() - 1).isoformat()


def test_bearer_and_basic_auth_reach_the_target(core: Core, target: Target) -> None:
    bearer = {"url": target.url("/bearer"), "auth": {"authMethod": "bearer", "token": "t0ken"}}
    basic = {
        "url": target.url("/basic"),
        "auth": {"authMethod": "basic", "username": "u", "password": "p"},
    }
    ids = [
        core.jobs.create_job("acme", job(n, c, pattern="0 0 1 1 *"), by="ana").id
        for n, c in (("b1", bearer), ("b2", basic))
    ]

    with running_engine(core, core.task_runner()):
        for job_id in ids:
            core.jobs.trigger_job("acme", job_id, by="ana")
        wait_for(lambda: target.at("/bearer") and target.at("/basic"), what="both calls")

    assert target.at("/bearer")[0].headers["Authorization"] == "Bearer t0ken"
    assert (
        target.at("/basic")[0].headers["Authorization"]
        == "Basic " + base64.b64encode(b"u:p").decode()
    )
    execution = core.jobs.get_execution("acme", rows(core, ids[0])[0]["id"])
    assert execution.job_snapshot["taskConfig"]["auth"]["token"] == "***"


def _failure_code(
    core: Core, config: dict[str, Any], task_type: str = "HttpInvokerTask"
) -> dict[str, Any]:
    doc = job("failing", config, pattern="0 0 1 1 *", taskType=task_type)
    job_id = core.jobs.create_job("acme", doc, by="ana").id
    with running_engine(core, core.task_runner()):
        core.jobs.trigger_job("acme", job_id, by="ana")
        return wait_for(lambda: rows(core, job_id, status="failed"), what="the failure")[0][
            "error"
        ]


def test_a_5xx_answer_fails_with_http_status(core: Core, target: Target) -> None:
    target.status["/broken"] = 503

    error = _failure_code(core, {"url": target.url("/broken")})

    assert (error["code"], error["status"]) == ("HTTP_STATUS", 503)


def test_a_slow_target_fails_with_timeout(core: Core, target: Target) -> None:
    target.hold["/slow"] = threading.Event()

    error = _failure_code(core, {"url": target.url("/slow"), "timeout": 300})

    assert error["code"] == "TIMEOUT"


def test_a_closed_port_fails_with_connection(core: Core) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    error = _failure_code(core, {"url": f"http://127.0.0.1:{port}/"})

    assert error["code"] == "CONNECTION"


def test_a_raising_function_fails_with_function_error(core: Core) -> None:
    error = _failure_code(core, {"function": "explode", "payload": {}}, "FunctionTask")

    assert error["code"] == "FUNCTION_ERROR"
    assert "stack" in error


def test_a_function_missing_on_the_engines_node_fails_with_unknown_function(
    core: Core, make_core
) -> None:  # type: ignore[no-untyped-def]
    doc = job(
        "fn",
        {"function": "double", "payload": {"n": 2}},
        pattern="0 0 1 1 *",
        taskType="FunctionTask",
    )
    job_id = core.jobs.create_job("acme", doc, by="ana").id
    bare = make_core()  # an engine node without the module

    with running_engine(bare, bare.task_runner()):
        core.jobs.trigger_job("acme", job_id, by="ana")
        row = wait_for(lambda: rows(core, job_id, status="failed"), what="the failure")[0]

    assert row["error"]["code"] == "UNKNOWN_FUNCTION"


def test_a_static_url_to_a_blocked_address_is_refused_at_creation(make_core) -> None:  # type: ignore[no-untyped-def]
    strict = make_core()  # no allow-list

    with pytest.raises(Exception, match=r"taskConfig\.url: blocked: loopback"):
        strict.jobs.create_job("acme", job("local", {"url": "http://127.0.0.1:9/"}), by="ana")


def test_a_url_with_parameters_is_blocked_when_called(make_core, target: Target) -> None:  # type: ignore[no-untyped-def]
    strict = make_core()
    url = f"http://127.0.0.1:{target.port}/" + "${T:YYYY}"
    job_id = strict.jobs.create_job(
        "acme", job("later", {"url": url}, pattern="0 0 1 1 *"), by="ana"
    ).id

    with running_engine(strict, strict.task_runner()):
        strict.jobs.trigger_job("acme", job_id, by="ana")
        row = wait_for(lambda: rows(strict, job_id, status="failed"), what="the failure")[0]

    assert row["error"]["code"] == "URL_BLOCKED"
    assert target.received == []
