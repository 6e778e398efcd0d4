"""schemathesis against /openapi.json on a real server: no 5xx, every response as documented,
and a refused request changes nothing.

Two phases share one server (its engine and webhook deliveries off, so that only the requests
sent here write to the log): every operation alone with schema-valid and schema-breaking input,
then sequences that follow the document's OpenAPI links (create a job, then update, trigger,
disable, delete it...), as a hypothesis state machine. Every request is counted; the count must
reach the store's budget, so the fuzzing cannot silently shrink.

The full budget (at least 2,000 requests, about a minute on 2 cores) runs on SQLite, the default
store; PostgreSQL gets a quarter of it, for what only it refuses (NUL, sizes, types), so that
CI stays near 90 s.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    rule,
    run_state_machine_as_test,
)
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.conftest import PREFIX, Server, start_server, stop_server


@dataclass(frozen=True)
class Budget:
    """How much to generate, and how many requests that must at least send."""

    examples: int  # per operation and generation mode
    scenarios: int  # linked sequences
    steps: int  # requests at most in each sequence
    min_requests: int


BUDGETS = {"sqlite": Budget(30, 60, 12, 2_000), "postgresql": Budget(8, 15, 12, 500)}
TENANT = "fuzz"
GONE_AFTER_DELETE = ("get_job", "get_webhook")
SEED_JOB = {"name": "seed", "pattern": "0 0 1 1 *", "taskType": "FunctionTask",
            "taskConfig": {"function": "noop"}}  # fmt: skip
# no 5xx, and every response as documented; a schema-valid job that the domain refuses (a
# cron pattern that does not parse) is a documented 422, not a failure of the contract
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def refused_when_invalid(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """Schema-breaking input is refused (4xx), not stored; except that an empty query value
    (`?page=`, what a generated `{}` or `[]` is sent as) means "not given" to this API."""
    if any(value in ("", {}, [], None) for value in (case.query or {}).values()):
        return None
    return negative_data_rejection(ctx, response, case)


NEGATIVE_CHECKS = [*CHECKS, refused_when_invalid]
HYPOTHESIS = {
    "deadline": None,
    "suppress_health_check": list(HealthCheck),
    "database": None,
}


@pytest.fixture(scope="module")
def server(store_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """This module's own server: no engine and no webhook deliveries write to its log."""
    server = start_server(
        store_url,
        tmp_path_factory.mktemp("data"),
        CRONSOURCE_ENGINE="off",
        CRONSOURCE_WEBHOOKS="off",
    )
    yield server
    stop_server(server)


PATTERNS = ["* * * * *", "0 2 * * *", "*/10 * * * * *", "@daily", "30 2 * * MON-FRI", "0 0 1 1 *"]
TASKS = st.one_of(
    st.fixed_dictionaries({
        "taskType": st.just("FunctionTask"),
        "taskConfig": st.fixed_dictionaries(
            {"function": st.sampled_from(["noop", "log"])}, optional={"payload": st.just({"n": 1})}
        ),
    }),
    st.fixed_dictionaries({
        "taskType": st.just("HttpInvokerTask"),
        "taskConfig": st.fixed_dictionaries(
            {"url": st.sampled_from(["https://example.com/ping", "https://x.example/${T:YYYY-MM-DD}"])},
            optional={"method": st.sampled_from(["GET", "POST"]), "body": st.just({"a": 1})},
        ),
    }),
)  # fmt: skip
JOB_FIELDS = st.fixed_dictionaries(
    {"pattern": st.sampled_from(PATTERNS)},
    optional={
        "timezone": st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]),
        "applicationId": st.sampled_from(["billing", 7]),
        "enabled": st.booleans(),
        "description": st.text(st.characters(exclude_characters="\x00"), max_size=20),
        "retry": st.fixed_dictionaries({"maxRetries": st.integers(0, 3)}),
        "concurrencyPolicy": st.sampled_from(["allow", "skip", "queue", "replace"]),
        "misfirePolicy": st.sampled_from(["skip", "runOnce", "runAll"]),
        "jitterSeconds": st.integers(0, 5),
    },
).flatmap(lambda fields: TASKS.map(lambda task: {**fields, **task}))

WEBHOOK_FIELDS = st.fixed_dictionaries(
    {"url": st.just("https://example.com/hooks"),
     "eventTypes": st.lists(st.sampled_from(["scheduler.job.*", "scheduler.job.execution.failed",
                                              "*"]), min_size=1, max_size=3)},
    optional={"enabled": st.booleans(), "startAfter": st.integers(0, 10)},
)  # fmt: skip


RANGE = {"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T00:03:00Z"}


def realistic(context: Any, case: schemathesis.Case) -> st.SearchStrategy[schemathesis.Case]:
    """Half of the schema-valid jobs, subscriptions, ranges and patterns made plausible (a
    random string is almost never a cron pattern, a known function or a reachable URL), so
    that requests get past validation and the linked operations act on resources that exist."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return st.just(case)
    key = (case.method.upper(), case.path.removeprefix(PREFIX))
    body = case.body if isinstance(case.body, dict) else {}
    if key == ("POST", "/jobs"):  # the generated name, or one unlikely to be taken
        names = st.sampled_from([body.get("name", "a"), f"job-{uuid.uuid4().hex[:12]}"])
        bodies = st.tuples(names, JOB_FIELDS).map(lambda t: {"name": t[0], **t[1]})
    elif key == ("PUT", "/jobs/{job_id}"):  # a partial update: some of the fields
        bodies = JOB_FIELDS.flatmap(
            lambda fields: st.sets(st.sampled_from(sorted(fields)), min_size=1).map(
                lambda keys: (
                    {k: v for k, v in fields.items() if k in keys}
                    | ({"taskType": fields["taskType"]} if "taskConfig" in keys else {})
                )
            )
        )
    elif key == ("POST", "/webhooks"):
        bodies = WEBHOOK_FIELDS
    elif key == ("POST", "/jobs/{job_id}/backfill"):
        bodies = st.just(RANGE)
    elif key == ("GET", "/jobs/{job_id}/slots"):
        return st.one_of(st.just(case), st.just(RANGE).map(lambda q: _with(case, query=q)))
    elif key == ("GET", "/cron/preview"):
        queries = st.sampled_from(PATTERNS).map(lambda p: {**(case.query or {}), "pattern": p})
        return st.one_of(st.just(case), queries.map(lambda q: _with(case, query=q)))
    else:
        return st.just(case)
    return st.one_of(st.just(case), bodies.map(lambda b: _with(case, body=b)))


def _with(case: schemathesis.Case, **parts: Any) -> schemathesis.Case:
    for name, value in parts.items():
        setattr(case, name, value)
    return case


@dataclass(frozen=True)
class State:
    """What a refused request must leave as it was."""

    log_position: int
    jobs: bytes
    webhooks: bytes


class Witness:
    """Reads the state: the log's head (all tenants) and one tenant's lists."""

    def __init__(self, server: Server) -> None:
        self.http = httpx.Client(base_url=server.base + PREFIX, timeout=30)

    def read(self, headers: dict[str, str]) -> State:
        position = self._caught_up_position()
        return State(position, self._all("/jobs", headers), self._all("/webhooks", headers))

    def _caught_up_position(self) -> int:
        """The log's head, once every read model has applied it (a command waits for the
        read models before it answers; this is the hang guard, not a sleep)."""
        deadline = time.monotonic() + 10
        while True:
            gauges = _gauges(self.http.get("/metrics").text)
            lags = [v for k, v in gauges.items() if k.startswith("cronsource_projection_lag")]
            if not any(lags) or time.monotonic() > deadline:
                return int(gauges["cronsource_log_position"])
            time.sleep(0.01)

    def _all(self, path: str, headers: dict[str, str]) -> bytes:
        pages, page = [], 1
        while True:
            answer = self.http.get(path, params={"pageSize": 500, "page": page}, headers=headers)
            answer.raise_for_status()
            pages.append(answer.content)
            if int(answer.headers["X-Total-Count"]) <= 500 * page:
                return b"".join(pages)
            page += 1


def _gauges(text: str) -> dict[str, float]:
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


@dataclass
class Fuzzer:
    """Sends generated requests as one tenant, counts them, and checks that a refusal
    changed nothing."""

    server: Server
    witness: Witness
    budget: Budget
    headers: dict[str, str] = field(default_factory=dict)
    session: requests.Session = field(default_factory=requests.Session)
    sent: dict[str, int] = field(default_factory=dict)
    answers: Counter[str] = field(default_factory=Counter)
    refused: int = 0
    state: State | None = None

    def act_as(self, tenant: str) -> None:
        self.headers = {"Authorization": f"Bearer {self.server.token(tenant=tenant)}"}
        self.state = None

    @property
    def total(self) -> int:
        return sum(self.sent.values())

    def send(self, case: schemathesis.Case, phase: str, **kwargs: Any) -> Any:
        if self.state is None:
            self.state = self.witness.read(self.headers)
        case.headers = {**(case.headers or {}), **self.headers}
        response = case.call(base_url=self.server.base, session=self.session, **kwargs)
        self.sent[phase] = self.sent.get(phase, 0) + 1
        status = response.status_code
        self.answers[f"{case.method} {case.path.removeprefix(PREFIX)} {status}"] += 1
        if status < 300 and case.method.upper() in ("GET", "HEAD"):
            return response  # a read changes nothing (the next refusal would show it if it did)
        after = self.witness.read(self.headers)
        if 400 <= status < 500:
            self.refused += 1
            assert after == self.state, (
                f"{case.method} {case.formatted_path} answered {status} ({response.text[:300]}) "
                f"yet changed the state: {_difference(self.state, after)}"
            )
        self.state = after
        return response


def _difference(before: State, after: State) -> str:
    changed = [name for name in ("log_position", "jobs", "webhooks")
               if getattr(before, name) != getattr(after, name)]  # fmt: skip
    return f"{changed}; log position {before.log_position} -> {after.log_position}"


def _each_operation(fuzzer: Fuzzer, operations: Operations) -> None:
    """Every operation alone, with input that fits its schema and input that breaks it."""
    for operation_id in operations.ids:
        operation = operations.by_id[operation_id]
        _fuzz(fuzzer, operation, GenerationMode.POSITIVE, CHECKS)
        if operations.breakable(operation_id):
            _fuzz(fuzzer, operation, GenerationMode.NEGATIVE, NEGATIVE_CHECKS)


def _fuzz(fuzzer: Fuzzer, operation: Any, mode: GenerationMode, checks: list[Any]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=fuzzer.budget.examples, **HYPOTHESIS)
    def check(case: schemathesis.Case) -> None:
        response = fuzzer.send(case, mode.value)
        case.validate_response(response, checks=checks)

    check()


class Operations:
    """The document's operations by operationId, their strategies, and its OpenAPI links."""

    def __init__(self, schema: Any) -> None:
        self.by_id: dict[str, Any] = {}
        self.links: dict[str, dict[int, list[tuple[str, str, str]]]] = {}
        for result in schema.get_all_operations():
            operation = result.ok()
            raw = operation.definition.raw
            self.by_id[raw["operationId"]] = operation
            for status, answer in raw["responses"].items():
                for link in answer.get("links", {}).values():
                    ((parameter, expression),) = link["parameters"].items()
                    self.links.setdefault(raw["operationId"], {}).setdefault(int(status), [])
                    self.links[raw["operationId"]][int(status)].append(
                        (
                            link["operationId"],
                            parameter,
                            expression.removeprefix("$response.body#"),
                        )
                    )
        # what starts a sequence: an operation whose answer links on, and that needs no id
        self.roots = sorted(k for k in self.links if "{" not in self.by_id[k].path)
        self.ids = sorted(self.by_id)
        self.linked = sorted({(op, parameter) for by_status in self.links.values()
                              for targets in by_status.values() for op, parameter, _ in targets})  # fmt: skip
        self._strategies: dict[tuple[str, GenerationMode], Any] = {}

    def strategy(self, operation_id: str, mode: GenerationMode) -> Any:
        key = (operation_id, mode)
        if key not in self._strategies:
            self._strategies[key] = self.by_id[operation_id].as_strategy(generation_mode=mode)
        return self._strategies[key]

    def breakable(self, operation_id: str) -> bool:
        """Whether the operation takes any input that a request could break."""
        raw = self.by_id[operation_id].definition.raw
        return bool(raw.get("parameters") or raw.get("requestBody"))


def _pointer(document: Any, pointer: str) -> Any:
    for part in pointer.split("/")[1:]:
        document = document[part] if isinstance(document, dict) else None
    return document


class LinkedRequests(RuleBasedStateMachine):
    """Sequences over the document's OpenAPI links, each as a tenant of its own: what one
    answer names (a created job's id, a triggered execution's id) is what later requests act
    on, with valid and broken input, until it is deleted (and then it must be gone).

    What is drawn never depends on the server's answers (the operation comes from the fixed
    list of link targets; only the id it is sent with comes from an answer): hypothesis
    replays a sequence by its draws, and fails one whose draws change on replay as flaky.
    """

    fuzzer: Fuzzer
    operations: Operations

    def __init__(self) -> None:
        super().__init__()
        self.fuzzer.act_as(f"fuzz-{uuid.uuid4().hex[:10]}")
        self.ids: dict[tuple[str, str], list[str]] = {}  # (operationId, parameter) -> ids
        self.deleted: set[str] = set()

    @initialize()
    def seed(self) -> None:
        """A job, one of its executions and a subscription, so that every link has an id
        to follow from the first step (not counted: nothing here is generated)."""
        http = self.fuzzer.witness.http
        headers = self.fuzzer.headers
        for operation_id, path, body in (
            ("create_job", "/jobs", SEED_JOB),
            ("create_webhook", "/webhooks", {"url": "https://example.com/hooks",
                                            "eventTypes": ["scheduler.job.*"]}),
        ):  # fmt: skip
            answer = http.post(path, json=body, headers=headers)
            assert answer.status_code == 201, answer.text
            self._remember(operation_id, 201, answer.json())
        job_id = self.ids[("trigger_job", "job_id")][0]
        answer = http.post(f"/jobs/{job_id}/trigger", headers=headers)
        assert answer.status_code == 202, answer.text
        self._remember("trigger_job", 202, answer.json())
        self.fuzzer.state = None  # the seeding changed the state

    @rule(data=st.data(), pick=st.integers(0, 2**16))
    def create(self, data: st.DataObject, pick: int) -> None:
        operation_id = self.operations.roots[pick % len(self.operations.roots)]
        self._send(data, operation_id, GenerationMode.POSITIVE, {})

    @rule(data=st.data(), pick=st.integers(0, 2**16), which=st.integers(0, 2**16),
          broken=st.integers(0, 3))  # fmt: skip
    def follow_a_link(self, data: st.DataObject, pick: int, which: int, broken: int) -> None:
        operation_id, parameter = self.operations.linked[pick % len(self.operations.linked)]
        known = self.ids.get((operation_id, parameter))
        path = {parameter: known[which % len(known)]} if known else {}
        breakable = broken == 0 and self.operations.breakable(operation_id)
        mode = GenerationMode.NEGATIVE if breakable else GenerationMode.POSITIVE
        self._send(data, operation_id, mode, path)

    @rule(data=st.data(), pick=st.integers(0, 2**16), negative=st.booleans())
    def anything(self, data: st.DataObject, pick: int, negative: bool) -> None:
        operation_id = self.operations.ids[pick % len(self.operations.ids)]
        breakable = negative and self.operations.breakable(operation_id)
        mode = GenerationMode.NEGATIVE if breakable else GenerationMode.POSITIVE
        self._send(data, operation_id, mode, {})

    def _send(
        self, data: st.DataObject, operation_id: str, mode: GenerationMode, path: dict[str, str]
    ) -> None:
        case = data.draw(self.operations.strategy(operation_id, mode))
        if path:
            case.path_parameters = {**(case.path_parameters or {}), **path}
        response = self.fuzzer.send(case, "links")
        # a broken input's path parameter may just have been replaced: whether the rest
        # still breaks the schema is not known here, so only the contract is checked
        case.validate_response(response, checks=CHECKS)
        status, value = response.status_code, next(iter(path.values()), None)
        if case.method.upper() == "DELETE" and status == 204 and value is not None:
            self.deleted.add(value)
        # a deleted job or subscription is gone (its history and executions stay readable)
        if operation_id in GONE_AFTER_DELETE and value in self.deleted and not case.query:
            assert status == 404, f"{case.formatted_path} answered {status} after its delete"
        if self.operations.links.get(operation_id, {}).get(status):
            self._remember(operation_id, status, response.json())

    def _remember(self, operation_id: str, status: int, body: Any) -> None:
        """The ids an answer's links name, for the operations they link to."""
        for linked, parameter, pointer in self.operations.links[operation_id].get(status, []):
            found = _pointer(body, pointer)
            known = self.ids.setdefault((linked, parameter), [])
            if isinstance(found, str) and found not in known:
                known.append(found)


def _linked_sequences(fuzzer: Fuzzer, operations: Operations) -> None:
    machine = type("LinkedRequests", (LinkedRequests,),
                   {"fuzzer": fuzzer, "operations": operations})  # fmt: skip
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=fuzzer.budget.scenarios,
            stateful_step_count=fuzzer.budget.steps,
            **HYPOTHESIS,
        ),
    )


def test_generated_requests_keep_the_contract_and_refusals_change_nothing(
    server: Server,
) -> None:
    document = httpx.get(server.base + PREFIX + "/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(document)
    schema.hooks.register_hook_with_name(realistic, "flatmap_case")
    assert len(list(schema.get_all_operations())) >= 20
    store = server.database_url.split(":", 1)[0]
    fuzzer = Fuzzer(server, Witness(server), BUDGETS[store])
    fuzzer.act_as(TENANT)
    started = time.monotonic()

    operations = Operations(schema)
    _each_operation(fuzzer, operations)
    _linked_sequences(fuzzer, operations)

    seconds = time.monotonic() - started
    print(f"fuzz on {store}: {fuzzer.sent} requests ({fuzzer.refused} refused) in {seconds:.1f} s")
    print("fuzz answers:", ", ".join(f"{k}: {n}" for k, n in sorted(fuzzer.answers.items())))
    budget = fuzzer.budget
    assert fuzzer.total >= budget.min_requests, f"only {fuzzer.sent} requests were sent"
    assert fuzzer.sent["negative"] >= budget.examples, "no schema-breaking input was sent"
    assert fuzzer.sent["links"] >= budget.scenarios, "the linked sequences sent almost nothing"
    assert fuzzer.refused > 0 and fuzzer.state is not None
