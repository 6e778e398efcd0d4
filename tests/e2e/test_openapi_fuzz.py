"""schemathesis against /openapi.json on a real server: no 5xx, every response as documented."""

from __future__ import annotations

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.conftest import Server

EXAMPLES = 15  # per operation: bounded, so the suite stays quick
# no 5xx, and every response as documented; a schema-valid job that the domain refuses (a
# cron pattern that does not parse) is a documented 422, not a failure of the contract
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def test_the_api_keeps_its_contract_for_generated_requests(server: Server) -> None:
    document = httpx.get(server.base + "/_/scheduler/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(document)
    headers = {"Authorization": f"Bearer {server.token(tenant='fuzz')}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case: schemathesis.Case) -> None:
            case.headers = {**(case.headers or {}), **headers}
            case.call_and_validate(base_url=server.base, checks=CHECKS)

        check()
