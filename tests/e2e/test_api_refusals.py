"""Bad input, bad tokens, other tenants: each refused with a 4xx problem that changes nothing."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
import jwt
import pytest

from tests.e2e.conftest import SECRET, Server
from tests.e2e.test_api import HEALTH_CHECK, create


def job(**changes: Any) -> dict[str, Any]:
    doc = {**HEALTH_CHECK, **changes}
    return {k: v for k, v in doc.items() if v is not None}


BAD_JOBS = [
    ("bad cron", job(pattern="61 * * * *"), "pattern"),
    ("bad cron field count", job(pattern="* * *"), "pattern"),
    ("bad time zone", job(timezone="Mars/Base"), "timezone"),
    ("unknown task type", job(taskType="ShellTask"), "taskType"),
    ("missing name", job(name=None), "name"),
    ("over-long name", job(name="x" * 201), "name"),
    ("name with spaces", job(name="two words"), "name"),
    ("non-http url", job(taskConfig={"url": "ftp://example.com/file"}), "taskConfig.url"),
    (
        "blocked static url",
        job(taskConfig={"url": "http://169.254.169.254/latest/meta-data"}),
        "taskConfig.url",
    ),
    (
        "unknown parameter token",
        job(taskConfig={"url": "https://x.example", "body": {"d": "${T:YY-MM}"}}),
        "taskConfig.body.d",
    ),
    ("wrong type", job(enabled="yes"), "enabled"),
    ("wrong nested type", job(retry={"maxRetries": "3"}), "retry.maxRetries"),
    ("unknown field", job(colour="blue"), "colour"),
    (
        "unknown task field",
        job(taskConfig={"url": "https://x.example", "verb": "GET"}),
        "taskConfig.verb",
    ),
    (
        "unknown function",
        job(taskType="FunctionTask", taskConfig={"function": "nope"}),
        "taskConfig.function",
    ),
]


@pytest.mark.parametrize(("case", "doc", "field"), BAD_JOBS, ids=[c[0] for c in BAD_JOBS])
def test_a_bad_job_is_refused_naming_the_field_and_changes_nothing(
    client: httpx.Client, case: str, doc: Any, field: str
) -> None:
    response = client.post("/jobs", json=doc)

    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert field in [e["field"] for e in problem.get("errors", [])], problem
    assert client.get("/jobs").headers["X-Total-Count"] == "0"


def test_a_duplicate_name_is_a_409(client: httpx.Client) -> None:
    create(client)

    response = client.post("/jobs", json=HEALTH_CHECK)

    assert response.status_code == 409
    assert response.json()["errors"][0]["field"] == "name"
    assert client.get("/jobs").headers["X-Total-Count"] == "1"


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"", "application/json", 400),
        (b"[1, 2]", "application/json", 422),
        (b"x" * (1024 * 1024 + 1), "application/json", 413),
    ],
    ids=["non-JSON body", "empty body", "not an object", "oversize body"],
)
def test_a_body_that_is_not_a_job_is_refused(
    client: httpx.Client, body: bytes, content_type: str, status: int
) -> None:
    response = client.post("/jobs", content=body, headers={"Content-Type": content_type})

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert client.get("/jobs").headers["X-Total-Count"] == "0"


def test_a_malformed_if_match_is_a_400_and_changes_nothing(client: httpx.Client) -> None:
    created = create(client)

    response = client.put(
        f"/jobs/{created['id']}", json={"description": "x"}, headers={"If-Match": "not-a-version"}
    )

    assert response.status_code == 400
    assert client.get(f"/jobs/{created['id']}").json()["version"] == 1


@pytest.mark.parametrize(
    "params",
    [{"page": "0"}, {"page": "x"}, {"pageSize": "501"}, {"pageSize": "-1"}, {"enabled": "maybe"}],
)
def test_bad_paging_and_filters_are_400(client: httpx.Client, params: dict[str, str]) -> None:
    response = client.get("/jobs", params=params)

    assert response.status_code == 400
    assert next(iter(params)) in response.json()["detail"]


# -- tokens ----------------------------------------------------------------------------------


def _token(**claims: Any) -> str:
    now = int(time.time())
    payload = {
        "sub": "eve",
        "tenant": "default",
        "scope": "jobs:read",
        "aud": "cronsource",
        "exp": now + 60,
        **claims,
    }
    return jwt.encode(
        {k: v for k, v in payload.items() if v is not None}, SECRET, algorithm="HS256"
    )


def _none_alg() -> str:
    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    claims = {
        "sub": "eve",
        "aud": "cronsource",
        "exp": int(time.time()) + 60,
        "scope": "jobs:read",
    }
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


BAD_TOKENS = [
    ("missing", None),
    ("malformed", "Bearer not.a.jwt"),
    ("not bearer", "Basic dXNlcjpwYXNz"),
    (
        "wrong signature",
        "Bearer "
        + jwt.encode(
            {"sub": "eve", "aud": "cronsource", "exp": int(time.time()) + 600},
            "another-secret-" + "y" * 40,
            algorithm="HS256",
        ),
    ),
    ("alg none", "Bearer " + _none_alg()),
    ("expired", "Bearer " + _token(exp=int(time.time()) - 3600)),
    ("wrong audience", "Bearer " + _token(aud="someone-else")),
]


@pytest.mark.parametrize(("case", "header"), BAD_TOKENS, ids=[c[0] for c in BAD_TOKENS])
def test_a_bad_token_is_a_401(server: Server, case: str, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}

    response = httpx.get(server.base + "/_/scheduler/jobs", headers=headers)

    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_token_without_the_scope_is_a_403_and_changes_nothing(
    server: Server, tenant: str
) -> None:
    with (
        server.client(tenant, scopes=["jobs:read"]) as reader,
        server.client(tenant, scopes=[]) as nobody,
    ):
        created = reader.post("/jobs", json=HEALTH_CHECK)
        listed = nobody.get("/jobs")
        total = reader.get("/jobs").headers["X-Total-Count"]

    assert created.status_code == 403
    assert listed.status_code == 403
    assert total == "0"


def test_a_token_without_a_scope_claim_has_no_rights(server: Server) -> None:
    token = _token(scope=None)

    response = httpx.get(
        server.base + "/_/scheduler/jobs", headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 403


def test_another_tenant_neither_sees_nor_changes_nor_hears_of_a_job(
    server: Server, tenant: str
) -> None:
    with server.client(tenant) as owner, server.client(tenant + "-other") as other:
        job_id = create(owner)["id"]
        execution_id = owner.post(f"/jobs/{job_id}/trigger").json()["executionId"]
        responses = [
            other.get(f"/jobs/{job_id}"),
            other.put(f"/jobs/{job_id}", json={"description": "mine now"}),
            other.delete(f"/jobs/{job_id}"),
            other.post(f"/jobs/{job_id}/enable"),
            other.post(f"/jobs/{job_id}/disable"),
            other.post(f"/jobs/{job_id}/trigger"),
            other.get(f"/jobs/{job_id}/executions"),
            other.get(f"/jobs/{job_id}/history"),
            other.get(
                f"/jobs/{job_id}/slots",
                params={"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"},
            ),
            other.get(f"/executions/{execution_id}"),
        ]
        assert [r.status_code for r in responses] == [404] * len(responses)
        assert other.get("/jobs").json() == []
        assert other.get("/executions").json() == []
        assert other.get("/stats").json()["jobs"] == {"total": 0, "enabled": 0}
        assert owner.get(f"/jobs/{job_id}").json()["description"] == HEALTH_CHECK["description"]


@pytest.mark.parametrize(
    ("start", "end", "status"),
    [
        ("0027-01-01T00:00:00Z", "0001-01-01T00:00:00+01:27", 422),  # `to` is in the year 0 UTC
        ("0001-01-01T00:00:00Z", "0001-01-01T01:00:01Z", 202),  # the calendar's first hour
    ],
)
def test_a_backfill_at_the_calendars_edge_is_answered_not_a_500(
    client: httpx.Client, start: str, end: str, status: int
) -> None:
    # both answered 500 (OverflowError) until the fuzzer found them
    job = create(client)

    response = client.post(f"/jobs/{job['id']}/backfill", json={"from": start, "to": end})

    assert response.status_code == status, response.text
