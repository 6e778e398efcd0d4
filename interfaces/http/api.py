"""The REST API: parse, call off the event loop, present. Queries read projections only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from application.audit import job_as_of, job_history
from application.jobs import Written
from application.slot_ledger import slot_ledger
from domain.errors import InvalidField, VersionConflict
from domain.instants import iso_ms, parse_instant
from domain.schedule import Schedule
from infrastructure.auth import Principal
from interfaces.http import schemas as s
from interfaces.http.problems import BadRequest, PreconditionFailed
from interfaces.http.routing import Api, json_body, links_to

api = Api()
JSON = "application/json"


def respond(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response (orjson)."""
    return Response(orjson.dumps(body), status, headers=headers, media_type=JSON)


def _state(request: Request) -> Any:
    return request.app.state


async def _visible(request: Request, written: Written) -> bool:
    """Read-your-writes: wait (bounded) until the read models hold this write."""
    core = _state(request).core
    return bool(await run_in_threadpool(core.projections.wait_for, written.position, 5.0))


def _query(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    if value is not None and "\x00" in value:
        raise BadRequest(f"{name}: must not contain NUL characters")
    return value if value not in (None, "") else None


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = _query(request, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name}: {raw!r} is not an integer") from None
    if not low <= value <= high:
        raise BadRequest(f"{name}: must be between {low} and {high}")
    return value


def _bool_param(request: Request, name: str) -> bool | None:
    raw = _query(request, name)
    if raw is None:
        return None
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise BadRequest(f"{name}: must be true or false")


def _instant_param(request: Request, name: str) -> str | None:
    raw = _query(request, name)
    if raw is None:
        return None
    try:
        return iso_ms(parse_instant(raw, name))
    except InvalidField as e:
        raise BadRequest(str(e)) from None


def _paging(request: Request) -> tuple[int, int]:
    limits = _state(request).limits
    page = _int_param(request, "page", 1, 1, 1_000_000)
    size = _int_param(request, "pageSize", limits.default_page_size, 1, limits.max_page_size)
    return page, size


def _paged(request: Request, items: list[Any], total: int, page: int, size: int) -> Response:
    """A bare array with `X-Total-Count` and an RFC 8288 `Link` header."""
    last = max(1, -(-total // size))
    links = []
    params = dict(request.query_params)
    for rel, number in (("first", 1), ("prev", page - 1), ("next", page + 1), ("last", last)):
        if 1 <= number <= last and not (rel in ("prev", "next") and number == page):
            query = urlencode({**params, "page": number, "pageSize": size})
            links.append(f'<{request.url.path}?{query}>; rel="{rel}"')
    headers = {"X-Total-Count": str(total)}
    if links:
        headers["Link"] = ", ".join(links)
    return respond(items, 200, headers)


def _job_headers(request: Request, row: dict[str, Any]) -> dict[str, str]:
    return {
        "ETag": f'"{row["version"]}"',
        "Location": f"{_state(request).prefix}/jobs/{row['id']}",
    }


async def _job_response(
    request: Request, user: Principal, written: Written, status: int
) -> Response:
    core = _state(request).core
    if await _visible(request, written):
        row = await run_in_threadpool(core.queries.get_job, user.tenant, str(written.id))
    else:  # the read model is behind (its store failing?): the job as the log has it
        row = await run_in_threadpool(
            job_as_of, core.jobs, user.tenant, written.id, version=written.version
        )
    return respond(row, status, _job_headers(request, row))


# -- jobs ----------------------------------------------------------------------------------

#: What a client can do next with the job in an answer (OpenAPI links: stateful clients and
#: fuzzers follow them)
JOB_LINKS = links_to(
    "job_id", "$response.body#/id", "get_job", "update_job", "delete_job", "enable_job",
    "disable_job", "trigger_job", "backfill_job", "job_slots", "job_history_route",
    "job_executions",
)  # fmt: skip

PAGING = {
    "page": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
    "pageSize": {"type": "integer", "minimum": 1, "maximum": 500},
}


@api.route(
    "GET", "/jobs", scope="jobs:read", summary="List jobs",
    query={"enabled": {"type": "boolean"}, "taskType": {"type": "string"},
           "applicationId": {"type": "string"}, "q": {"type": "string"}, **PAGING},
    responses={200: ("Jobs, oldest first; X-Total-Count and Link headers", {"type": "array", "items": s.JOB})},
)  # fmt: skip
async def list_jobs(request: Request, user: Principal) -> Response:
    page, size = _paging(request)
    filters = {
        "enabled": _bool_param(request, "enabled"),
        "task_type": _query(request, "taskType"),
        "application_id": _query(request, "applicationId"),
        "q": _query(request, "q"),
    }
    queries = _state(request).core.queries
    result = await run_in_threadpool(
        queries.list_jobs, user.tenant, (page - 1) * size, size, **filters
    )
    return _paged(request, result.items, result.total, page, size)


@api.route(
    "POST", "/jobs", scope="jobs:write", summary="Create a job", body=s.JOB_CREATE,
    responses={201: ("Created; Location and ETag headers", s.JOB)}, links={201: JOB_LINKS},
)  # fmt: skip
async def create_job(request: Request, user: Principal) -> Response:
    doc = await json_body(request, s.JOB_CREATE)
    jobs = _state(request).core.jobs
    written = await run_in_threadpool(jobs.create_job, user.tenant, doc, user.subject)
    return await _job_response(request, user, written, 201)


@api.route(
    "GET", "/jobs/{job_id}", scope="jobs:read", summary="One job, or its state at a version or instant",
    query={"version": {"type": "integer", "minimum": 1}, "asOf": s.INSTANT},
    responses={200: ("The job; ETag header", s.JOB)}, links={200: JOB_LINKS},
)  # fmt: skip
async def get_job(request: Request, user: Principal) -> Response:
    job_id = request.path_params["job_id"]
    core = _state(request).core
    version = _query(request, "version")
    as_of = _query(request, "asOf")
    if version is not None or as_of is not None:
        number = _int_param(request, "version", 0, 1, 10**9) if version is not None else None
        at = parse_instant(as_of, "asOf") if as_of is not None else None
        row = await run_in_threadpool(
            job_as_of, core.jobs, user.tenant, job_id, version=number, at=at
        )
        return respond(row, 200, {"ETag": f'"{row["version"]}"'})
    row = await run_in_threadpool(core.queries.get_job, user.tenant, job_id)
    return respond(row, 200, _job_headers(request, row))


def _if_match(request: Request) -> int | None:
    raw = request.headers.get("if-match")
    if raw is None:
        return None
    text = raw.strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    if not text.isdigit():
        raise BadRequest('If-Match: expected the job version, e.g. "3"')
    return int(text)


@api.route(
    "PUT", "/jobs/{job_id}", scope="jobs:write", summary="Change some fields of a job",
    body=s.JOB_UPDATE, responses={200: ("The job after the change", s.JOB)},
    links={200: JOB_LINKS},
)  # fmt: skip
async def update_job(request: Request, user: Principal) -> Response:
    expected = _if_match(request)
    doc = await json_body(request, s.JOB_UPDATE)
    doc = {k: v for k, v in doc.items() if k not in s.READ_ONLY}
    jobs = _state(request).core.jobs
    try:
        written = await run_in_threadpool(
            jobs.update_job,
            user.tenant,
            request.path_params["job_id"],
            doc,
            user.subject,
            expected,
        )
    except VersionConflict as e:
        if expected is None:
            raise
        raise PreconditionFailed(str(e), {"ETag": f'"{e.actual}"'}) from None
    return await _job_response(request, user, written, 200)


@api.route(
    "DELETE",
    "/jobs/{job_id}",
    scope="jobs:write",
    summary="Delete a job",
    responses={204: ("Deleted", None)},
)
async def delete_job(request: Request, user: Principal) -> Response:
    jobs = _state(request).core.jobs
    written = await run_in_threadpool(
        jobs.delete_job, user.tenant, request.path_params["job_id"], user.subject
    )
    await _visible(request, written)
    return Response(status_code=204)


async def _job_command(request: Request, user: Principal, command: str) -> Response:
    """A command on one job that answers with the job as it now is."""
    jobs = _state(request).core.jobs
    written = await run_in_threadpool(
        getattr(jobs, command), user.tenant, request.path_params["job_id"], user.subject
    )
    return await _job_response(request, user, written, 200)


@api.route(
    "POST",
    "/jobs/{job_id}/enable",
    scope="jobs:write",
    summary="Enable a job",
    responses={200: ("The job", s.JOB)},
    links={200: JOB_LINKS},
)
async def enable_job(request: Request, user: Principal) -> Response:
    return await _job_command(request, user, "enable_job")


@api.route(
    "POST",
    "/jobs/{job_id}/disable",
    scope="jobs:write",
    summary="Disable a job",
    responses={200: ("The job", s.JOB)},
    links={200: JOB_LINKS},
)
async def disable_job(request: Request, user: Principal) -> Response:
    return await _job_command(request, user, "disable_job")


@api.route(
    "POST", "/jobs/{job_id}/trigger", scope="jobs:trigger", summary="Run a job now",
    body=s.TRIGGER, body_required=False,
    responses={202: ("Recorded; Location of the execution", {"type": "object", "properties": {"executionId": s.ID}})},
    links={202: links_to("execution_id", "$response.body#/executionId", "get_execution")},
)  # fmt: skip
async def trigger_job(request: Request, user: Principal) -> Response:
    override = await json_body(request, None, required=False)
    if override is not None and not isinstance(override, dict):
        raise InvalidField(
            "body", "an override must be a JSON object (it replaces body or payload)"
        )
    jobs = _state(request).core.jobs
    written = await run_in_threadpool(
        jobs.trigger_job, user.tenant, request.path_params["job_id"], user.subject, override
    )
    await _visible(request, written)
    location = f"{_state(request).prefix}/executions/{written.id}"
    return respond({"executionId": str(written.id)}, 202, {"Location": location})


@api.route(
    "POST", "/jobs/{job_id}/backfill", scope="jobs:trigger", summary="Run each slot of a past range once",
    body=s.BACKFILL,
    responses={202: ("Recorded", {"type": "object", "properties": {"count": {"type": "integer"}}})},
)  # fmt: skip
async def backfill_job(request: Request, user: Principal) -> Response:
    doc = await json_body(request, s.BACKFILL)
    start, end = parse_instant(doc["from"], "from"), parse_instant(doc["to"], "to")
    jobs = _state(request).core.jobs
    recorded = await run_in_threadpool(
        jobs.backfill, user.tenant, request.path_params["job_id"], start, end, user.subject
    )
    return respond({"count": len(recorded), "executionIds": [str(e.id) for e in recorded]}, 202)


@api.route(
    "GET", "/jobs/{job_id}/slots", scope="jobs:read", summary="Each slot of a range: run or skipped, and why",
    query={"from": s.INSTANT, "to": s.INSTANT}, required_query=("from", "to"),
    responses={200: ("The ledger", {"type": "array", "items": s.SLOT})},
)  # fmt: skip
async def job_slots(request: Request, user: Principal) -> Response:
    start, end = _query(request, "from"), _query(request, "to")
    if start is None or end is None:
        raise BadRequest("from and to are required (ISO 8601 instants)")
    core = _state(request).core
    await run_in_threadpool(core.projections.catch_up)
    ledger = await run_in_threadpool(
        slot_ledger, core.jobs, core.executions_view, core.skips_view, user.tenant,
        request.path_params["job_id"], parse_instant(start, "from"), parse_instant(end, "to"),
        datetime.now(UTC),
    )  # fmt: skip
    return respond(ledger)


@api.route(
    "GET", "/jobs/{job_id}/history", scope="jobs:read", summary="The job's events, oldest first",
    responses={200: ("History", {"type": "array", "items": s.HISTORY_ENTRY})},
)  # fmt: skip
async def job_history_route(request: Request, user: Principal) -> Response:
    jobs = _state(request).core.jobs
    return respond(
        await run_in_threadpool(job_history, jobs, user.tenant, request.path_params["job_id"])
    )


# -- executions ------------------------------------------------------------------------------

EXECUTION_FILTERS = {"status": {"enum": ["pending", "running", "succeeded", "failed"]},
                     "since": s.INSTANT, "until": s.INSTANT, **PAGING}  # fmt: skip


async def _executions(request: Request, user: Principal, job_id: str | None) -> Response:
    page, size = _paging(request)
    status = _query(request, "status")
    if status is not None and status not in ("pending", "running", "succeeded", "failed"):
        raise BadRequest("status: must be pending, running, succeeded or failed")
    filters = {"job_id": job_id, "status": status,
               "since": _instant_param(request, "since"), "until": _instant_param(request, "until")}  # fmt: skip
    queries = _state(request).core.queries
    result = await run_in_threadpool(
        queries.list_executions, user.tenant, (page - 1) * size, size, **filters
    )
    return _paged(request, result.items, result.total, page, size)


@api.route(
    "GET", "/jobs/{job_id}/executions", scope="jobs:read", summary="A job's executions, newest first",
    query=EXECUTION_FILTERS, responses={200: ("Executions", {"type": "array", "items": s.EXECUTION})},
)  # fmt: skip
async def job_executions(request: Request, user: Principal) -> Response:
    job_id = request.path_params["job_id"]
    jobs = _state(request).core.jobs
    await run_in_threadpool(lambda: jobs.get_job(user.tenant, job_id, include_deleted=True))
    return await _executions(request, user, job_id)


@api.route(
    "GET", "/executions", scope="jobs:read", summary="Executions across jobs, newest first",
    query={"jobId": {"type": "string"}, **EXECUTION_FILTERS},
    responses={200: ("Executions", {"type": "array", "items": s.EXECUTION})},
)  # fmt: skip
async def list_executions(request: Request, user: Principal) -> Response:
    return await _executions(request, user, _query(request, "jobId"))


@api.route(
    "GET", "/executions/{execution_id}", scope="jobs:read", summary="One execution",
    responses={200: ("The execution", s.EXECUTION)},
)  # fmt: skip
async def get_execution(request: Request, user: Principal) -> Response:
    core = _state(request).core

    def snapshot(execution_id: str) -> dict[str, Any]:
        return core.jobs.get_execution(user.tenant, execution_id).job_snapshot

    execution_id = request.path_params["execution_id"]
    detail = await run_in_threadpool(
        core.queries.get_execution_detail, user.tenant, execution_id, snapshot
    )
    return respond(detail)


# -- the rest --------------------------------------------------------------------------------


@api.route(
    "GET",
    "/stats",
    scope="jobs:read",
    summary="Scheduler statistics",
    responses={200: ("Stats", s.STATS)},
)
async def stats(request: Request, user: Principal) -> Response:
    state = _state(request)
    return respond(await run_in_threadpool(state.stats, user.tenant))


@api.route(
    "GET", "/functions", scope="jobs:read", summary="Registered function tasks",
    responses={200: ("Functions", {"type": "array", "items": s.FUNCTION})},
)  # fmt: skip
async def functions(request: Request, user: Principal) -> Response:
    return respond(_state(request).core.functions.describe())


@api.route(
    "GET", "/cron/preview", scope="jobs:read", summary="Next fire instants of a pattern",
    query={"pattern": {"type": "string"}, "timezone": {"type": "string"}, "count": {"type": "integer", "minimum": 1, "maximum": 100}},
    required_query=("pattern",),
    responses={200: ("Preview", s.PREVIEW)},
)  # fmt: skip
async def cron_preview(request: Request, user: Principal) -> Response:
    pattern = _query(request, "pattern")
    if pattern is None:
        raise InvalidField("pattern", "required: a cron pattern such as '0 2 * * *'")
    timezone = _query(request, "timezone") or "UTC"
    count = _int_param(request, "count", 5, 1, _state(request).limits.max_preview)
    schedule = Schedule(pattern, timezone)
    instants = schedule.next_n(datetime.now(UTC), count)
    return respond(
        {"pattern": schedule.pattern, "timezone": timezone, "next": [iso_ms(i) for i in instants]}
    )


@api.route(
    "GET", "/metrics", scope=None, summary="Prometheus metrics (text exposition format)",
    responses={200: ("Metrics", None)},
)  # fmt: skip
async def metrics(request: Request, user: Principal) -> Response:
    body, content_type = await _state(request).metrics()
    return Response(body, 200, media_type=content_type)


@api.route(
    "GET",
    "/healthz",
    scope=None,
    summary="Liveness",
    responses={200: ("Alive", {"type": "object"})},
)
async def healthz(request: Request, user: Principal) -> Response:
    return respond({"status": "ok"})


@api.route(
    "GET", "/readyz", scope=None,
    summary="Readiness: store reachable, projections within the lag bound, engine running; each check says why not",
    responses={200: ("Ready", {"type": "object"}), 503: ("Not ready", {"type": "object"})},
)  # fmt: skip
async def readyz(request: Request, user: Principal) -> Response:
    report = await _state(request).readiness.report()
    return respond(report, 200 if report["ready"] else 503)


@api.route(
    "GET",
    "/openapi.json",
    scope=None,
    summary="This API's OpenAPI 3.1 document",
    responses={200: ("OpenAPI", {"type": "object"})},
)
async def openapi_json(request: Request, user: Principal) -> Response:
    return respond(_state(request).openapi)
