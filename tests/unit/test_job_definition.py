"""A job definition is valid from birth: every bad field is named, aliases fold in."""

from __future__ import annotations

from typing import Any

import pytest

from domain.errors import InvalidField, InvalidFields
from domain.job_definition import parse_job_changes, parse_new_job


def job(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "health-check",
        "pattern": "*/5 * * * *",
        "taskType": "HttpInvokerTask",
        "taskConfig": {
            "endpoint": "https://external-service.com",
            "method": "GET",
            "path": "/health",
        },
    }
    doc.update(extra)
    return {k: v for k, v in doc.items() if v is not None}


def bad_fields(doc: Any) -> set[str]:
    with pytest.raises((InvalidField, InvalidFields)) as caught:
        parse_new_job(doc)
    error = caught.value
    return {e.field for e in error.errors} if isinstance(error, InvalidFields) else {error.field}


def test_the_seed_example_is_valid_with_defaults_filled_in() -> None:
    definition, enabled, app = parse_new_job(job(applicationId=1))

    assert enabled is True
    assert app == "1"
    assert definition["timezone"] == "UTC"
    assert definition["retry"] == {
        "maxRetries": 0,
        "retryDelaySeconds": 60,
        "backoff": "fixed",
        "maxDelaySeconds": 3600,
    }
    assert definition["concurrencyPolicy"] == "allow"
    assert definition["misfirePolicy"] == "skip"
    assert definition["taskConfig"]["timeout"] == 30000


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        (job(name=None), "name"),
        (job(name=""), "name"),
        (job(name="x" * 201), "name"),
        (job(name="has space"), "name"),
        (job(pattern=None), "pattern"),
        (job(pattern="0 24 * * *"), "pattern"),
        (job(timezone="Mars/Base"), "timezone"),
        (job(taskType="ShellTask"), "taskType"),
        (job(taskConfig=None), "taskConfig"),
        (job(taskConfig={"url": "ftp://example.com/x"}), "taskConfig.url"),
        (job(taskConfig={"url": "file:///etc/passwd"}), "taskConfig.url"),
        (job(taskConfig={"url": "https://x.com", "method": "BREW"}), "taskConfig.method"),
        (job(taskConfig={"url": "https://x.com", "timeout": "5s"}), "taskConfig.timeout"),
        (job(taskConfig={"url": "https://x.com", "headers": {"X": 1}}), "taskConfig.headers.X"),
        (
            job(taskConfig={"url": "https://x.com", "auth": {"authMethod": "magic"}}),
            "taskConfig.auth.authMethod",
        ),
        (
            job(taskConfig={"url": "https://x.com", "auth": {"authMethod": "bearer"}}),
            "taskConfig.auth.token",
        ),
        (job(taskConfig={"url": "https://x.com", "body": {"d": "${T:YY}"}}), "taskConfig.body.d"),
        (job(taskConfig={"url": "https://x.com", "extra": 1}), "taskConfig.extra"),
        (job(taskConfig={"endpoint": "https://x.com", "path": "no-slash"}), "taskConfig.path"),
        (job(description="x" * 2001), "description"),
        (job(enabled="yes"), "enabled"),
        (job(applicationId=["a"]), "applicationId"),
        (job(retry={"maxRetries": -1}), "retry.maxRetries"),
        (job(retry={"backoff": "random"}), "retry.backoff"),
        (job(maxRetries="3"), "retry.maxRetries"),
        (job(concurrencyPolicy="often"), "concurrencyPolicy"),
        (job(misfirePolicy="panic"), "misfirePolicy"),
        (job(catchUp="yes"), "catchUp"),
        (job(timeoutSeconds=0), "timeoutSeconds"),
        (job(jitterSeconds=-1), "jitterSeconds"),
        (job(pauseAfterFailures=0), "pauseAfterFailures"),
        (job(colour="blue"), "colour"),
        ([1, 2], "body"),
    ],
)
def test_a_bad_field_is_named(doc: Any, field: str) -> None:
    assert field in bad_fields(doc)


def test_several_bad_fields_are_named_at_once() -> None:
    assert bad_fields(job(pattern="bad", timezone="Nowhere/Else", jitterSeconds=99999)) >= {
        "pattern", "timezone", "jitterSeconds",
    }  # fmt: skip


def test_a_function_task_needs_a_function_name() -> None:
    assert "taskConfig.function" in bad_fields(
        job(taskType="FunctionTask", taskConfig={"payload": {}})
    )


def test_a_function_task_is_valid_with_a_payload() -> None:
    definition, _, _ = parse_new_job(
        job(taskType="FunctionTask", taskConfig={"function": "noop", "payload": {"a": 1}})
    )

    assert definition["taskConfig"] == {"function": "noop", "payload": {"a": 1}, "timeout": 30000}


def test_the_bootstrap_url_form_is_accepted() -> None:
    definition, _, _ = parse_new_job(
        job(taskConfig={"url": "http://crm-service/health", "method": "GET", "timeout": 5000})
    )

    assert definition["taskConfig"] == {
        "method": "GET",
        "url": "http://crm-service/health",
        "timeout": 5000,
    }


def test_a_url_with_a_parameter_in_the_host_is_accepted_for_later_checking() -> None:
    parse_new_job(job(taskConfig={"url": "https://api-${T:YYYY}.example.com/x"}))


def test_catch_up_true_means_run_once_and_false_means_skip() -> None:
    assert parse_new_job(job(catchUp=True))[0]["misfirePolicy"] == "runOnce"
    assert parse_new_job(job(catchUp=False))[0]["misfirePolicy"] == "skip"


def test_an_explicit_misfire_policy_wins_over_catch_up() -> None:
    assert parse_new_job(job(catchUp=True, misfirePolicy="runAll"))[0]["misfirePolicy"] == "runAll"


def test_changes_are_only_the_fields_that_differ() -> None:
    current, _, _ = parse_new_job(job())

    changes, enabled = parse_job_changes(
        {"pattern": "*/10 * * * *", "name": "health-check"}, current
    )

    assert changes == {"pattern": "*/10 * * * *"}
    assert enabled is None


def test_a_change_is_validated_against_the_whole_result() -> None:
    current, _, _ = parse_new_job(job())

    with pytest.raises(InvalidField) as caught:
        parse_job_changes({"timezone": "Nowhere/Else"}, current)
    assert caught.value.field == "timezone"


def test_a_partial_retry_change_keeps_the_other_retry_fields() -> None:
    current, _, _ = parse_new_job(job(retry={"maxRetries": 2, "retryDelaySeconds": 9}))

    changes, _ = parse_job_changes({"retry": {"maxRetries": 5}}, current)

    assert changes["retry"]["retryDelaySeconds"] == 9
    assert changes["retry"]["maxRetries"] == 5


def test_the_application_cannot_be_changed() -> None:
    current, _, _ = parse_new_job(job())

    with pytest.raises(InvalidField) as caught:
        parse_job_changes({"applicationId": 9}, current)
    assert caught.value.field == "applicationId"
