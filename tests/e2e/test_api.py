"""The REST API as clients use it: the seed's curl examples, contracts, errors, tenants."""

from __future__ import annotations

from typing import Any

import httpx

from tests.e2e.conftest import Server
from tests.engine_support import wait_for
from tests.target_server import serving

HEALTH_CHECK = {
    "applicationId": 1,
    "name": "health-check",
    "description": "Check external service health every 5 minutes",
    "enabled": True,
    "pattern": "*/5 * * * *",
    "taskType": "HttpInvokerTask",
    "taskConfig": {"endpoint": "https://external-service.com", "method": "GET", "path": "/health"},
}


def create(client: httpx.Client, doc: dict[str, Any] | None = None) -> dict[str, Any]:
    response = client.post("/jobs", json=doc or HEALTH_CHECK)
    assert response.status_code == 201, response.text
    return response.json()


def test_the_seed_create_example_answers_201_with_location_and_the_job(
    client: httpx.Client,
) -> None:
    response = client.post("/jobs", json=HEALTH_CHECK)

    assert response.status_code == 201, response.text
    job = response.json()
    assert response.headers["Location"] == f"/_/scheduler/jobs/{job['id']}"
    assert response.headers["ETag"] == '"1"'
    assert job["application"] == {"id": "1", "name": "1", "displayName": "1"}
    assert {
        k: job[k] for k in ("name", "description", "enabled", "pattern", "taskType", "taskConfig")
    } == {
        **{k: HEALTH_CHECK[k] for k in ("name", "description", "enabled", "pattern", "taskType")},
        "taskConfig": {**HEALTH_CHECK["taskConfig"], "timeout": 30000},
    }
    assert job["createdBy"] == job["updatedBy"] == "ana"
    assert job["createdAt"].endswith("Z") and len(job["createdAt"]) == 24


def test_the_seed_list_example_is_a_bare_array_with_a_total(client: httpx.Client) -> None:
    create(client)

    response = client.get("/jobs")

    assert response.status_code == 200
    assert isinstance(response.json(), list) and response.json()[0]["name"] == "health-check"
    assert response.headers["X-Total-Count"] == "1"


def test_the_seed_update_example_changes_only_what_it_names(client: httpx.Client) -> None:
    job = create(client)

    response = client.put(
        f"/jobs/{job['id']}",
        json={"pattern": "*/10 * * * *", "description": "Check every 10 minutes instead"},
    )

    assert response.status_code == 200, response.text
    updated = response.json()
    assert (updated["pattern"], updated["version"], updated["taskConfig"]) == (
        "*/10 * * * *",
        2,
        job["taskConfig"],
    )


def test_the_seed_enable_and_disable_examples(client: httpx.Client) -> None:
    job = create(client)

    disabled = client.post(f"/jobs/{job['id']}/disable")
    enabled = client.post(f"/jobs/{job['id']}/enable")

    assert (disabled.status_code, disabled.json()["enabled"]) == (200, False)
    assert (enabled.status_code, enabled.json()["enabled"]) == (200, True)


def test_the_seed_trigger_and_history_examples(client: httpx.Client) -> None:
    job = create(client, {**HEALTH_CHECK, "enabled": False})

    response = client.post(f"/jobs/{job['id']}/trigger")

    assert response.status_code == 202, response.text
    execution_id = response.json()["executionId"]
    assert response.headers["Location"] == f"/_/scheduler/executions/{execution_id}"
    executions = client.get(f"/jobs/{job['id']}/executions").json()
    assert [e["id"] for e in executions] == [execution_id]
    assert executions[0]["trigger"] == "manual"
    detail = client.get(f"/executions/{execution_id}").json()
    assert detail["jobSnapshot"]["name"] == "health-check"


def test_the_seed_example_with_parameters_reaches_a_local_target_resolved(
    server: Server, tenant: str
) -> None:
    with serving() as target, server.client(tenant) as client:
        doc = {
            "applicationId": 5, "name": "daily-data-sync", "pattern": "0 2 * * *",
            "taskType": "HttpInvokerTask",
            "taskConfig": {"endpoint": target.url(""), "method": "POST", "path": "/api/sync",
                           "body": {"fromDate": "${T-1:YYYY-MM-DD}", "toDate": "${T:YYYY-MM-DD}"},
                           "headers": {"X-Custom-Header": "value"}},
        }  # fmt: skip
        job = create(client, doc)
        execution_id = client.post(f"/jobs/{job['id']}/trigger").json()["executionId"]
        wait_for(
            lambda: client.get(f"/executions/{execution_id}").json()["status"] == "succeeded",
            what="the run",
        )
        execution = client.get(f"/executions/{execution_id}").json()

    (received,) = target.at("/api/sync")
    day = execution["scheduledFor"][:10]
    assert received.body["toDate"] == day
    assert received.body["fromDate"] < day and len(received.body["fromDate"]) == 10
    assert received.headers["X-Custom-Header"] == "value"


def test_a_trigger_body_overrides_the_body_for_that_run(server: Server, tenant: str) -> None:
    with serving() as target, server.client(tenant) as client:
        job = create(client, {"name": "echo", "pattern": "0 2 * * *",
                              "taskConfig": {"url": target.url("/echo"), "method": "POST", "body": {"a": 1}}})  # fmt: skip
        execution_id = client.post(f"/jobs/{job['id']}/trigger", json={"b": "${T:YYYY}"}).json()[
            "executionId"
        ]
        wait_for(
            lambda: client.get(f"/executions/{execution_id}").json()["status"] == "succeeded",
            what="the run",
        )

    assert list(target.at("/echo")[0].body) == ["b"]  # the override replaced the whole body
    assert target.at("/echo")[0].body["b"].isdigit()  # and its parameters were resolved


def test_if_match_with_a_stale_version_is_refused_with_412(client: httpx.Client) -> None:
    job = create(client)
    client.put(f"/jobs/{job['id']}", json={"description": "v2"}, headers={"If-Match": '"1"'})

    stale = client.put(
        f"/jobs/{job['id']}", json={"description": "v3"}, headers={"If-Match": '"1"'}
    )
    fresh = client.put(f"/jobs/{job['id']}", json={"description": "v3"}, headers={"If-Match": "2"})

    assert stale.status_code == 412 and stale.headers["content-type"] == "application/problem+json"
    assert fresh.status_code == 200 and fresh.headers["ETag"] == '"3"'


def test_a_job_read_back_whole_can_be_put_back(client: httpx.Client) -> None:
    job = create(client, {**HEALTH_CHECK, "taskConfig": {**HEALTH_CHECK["taskConfig"],
                                                         "auth": {"authMethod": "bearer", "token": "s3cret"}}})  # fmt: skip

    shown = client.get(f"/jobs/{job['id']}").json()
    response = client.put(f"/jobs/{job['id']}", json={**shown, "description": "again"})

    assert response.status_code == 200, response.text
    assert response.json()["taskConfig"]["auth"] == {"authMethod": "bearer", "token": "***"}
    assert response.json()["version"] == 2


def test_delete_answers_204_and_the_job_is_gone(client: httpx.Client) -> None:
    job = create(client)

    assert client.delete(f"/jobs/{job['id']}").status_code == 204
    assert client.get(f"/jobs/{job['id']}").status_code == 404
    assert client.post(f"/jobs/{job['id']}/enable").status_code == 404


def test_history_and_time_travel(client: httpx.Client) -> None:
    job = create(client)
    client.put(f"/jobs/{job['id']}", json={"pattern": "0 3 * * *"})

    history = client.get(f"/jobs/{job['id']}/history").json()
    first = client.get(f"/jobs/{job['id']}", params={"version": 1}).json()
    as_of = client.get(f"/jobs/{job['id']}", params={"asOf": history[0]["time"]}).json()

    assert [h["type"] for h in history] == ["scheduler.job.created", "scheduler.job.updated"]
    assert first["pattern"] == as_of["pattern"] == "*/5 * * * *"


def test_paging_links_and_totals(client: httpx.Client) -> None:
    for i in range(5):
        create(client, {**HEALTH_CHECK, "name": f"job-{i}"})

    response = client.get("/jobs", params={"page": 2, "pageSize": 2})

    assert [j["name"] for j in response.json()] == ["job-2", "job-3"]
    assert response.headers["X-Total-Count"] == "5"
    assert 'rel="next"' in response.headers["Link"] and 'rel="prev"' in response.headers["Link"]


def test_cron_preview_functions_stats_and_health(client: httpx.Client, server: Server) -> None:
    preview = client.get("/cron/preview", params={"pattern": "*/15 * * * *", "count": 3})
    bad = client.get("/cron/preview", params={"pattern": "61 * * * *"})
    functions = client.get("/functions").json()
    stats = client.get("/stats").json()

    assert preview.status_code == 200 and len(preview.json()["next"]) == 3
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "pattern"
    assert "noop" in [f["name"] for f in functions]
    assert set(stats) == {"jobs", "engine", "last24h", "durationMs", "projections"}
    assert httpx.get(server.base + "/_/scheduler/healthz").json() == {"status": "ok"}
    ready = httpx.get(server.base + "/_/scheduler/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert httpx.get(server.base + "/_/scheduler/openapi.json").json()["openapi"] == "3.1.0"
    metrics = httpx.get(server.base + "/_/scheduler/metrics")
    assert metrics.status_code == 200 and "cronsource_projection_lag" in metrics.text


def test_unknown_paths_answer_a_problem(client: httpx.Client) -> None:
    response = client.get("/nowhere")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_a_job_created_through_an_api_only_node_fires_on_an_engine_node(
    server: Server, tenant: str, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from tests.e2e.conftest import start_server, stop_server

    if not server.database_url.startswith("postgresql"):
        pytest.skip("an API-only node and an engine node share a PostgreSQL store")
    api_only = start_server(server.database_url, tmp_path, CRONSOURCE_ENGINE="off")
    try:
        with serving() as target, api_only.client(tenant) as client:
            doc = {
                "name": "remote",
                "pattern": "* * * * * *",
                "taskConfig": {"url": target.url("/remote")},
            }
            job = create(client, doc)
            wait_for(lambda: target.at("/remote"), what="the engine node to fire it")
            executions = client.get(f"/jobs/{job['id']}/executions").json()
        assert executions and {e["node"] for e in executions} == {server.env["CRONSOURCE_NODE"]}
    finally:
        stop_server(api_only)
