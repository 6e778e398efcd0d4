"""The public event table, the envelope, type globs and the webhook signature."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from eventsourcing.domain import Aggregate
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from application.public_events import ALL_TYPES, PUBLIC_TYPES, envelope, owner_of_first
from domain.errors import InvalidField
from domain.execution import Execution, Trigger
from domain.job import Job, JobName
from domain.ledger import SkippedSlots, SkipReason
from domain.webhook import Subscription, check_globs, check_secret, glob_regex, sign

INTERNAL = {Execution.Scheduled, JobName.Claimed, JobName.Released, JobName.Reclaimed}  # type: ignore[attr-defined]
DESIGN_TYPES = {
    "scheduler.job.created", "scheduler.job.updated", "scheduler.job.enabled",
    "scheduler.job.disabled", "scheduler.job.deleted", "scheduler.job.execution.started",
    "scheduler.job.execution.succeeded", "scheduler.job.execution.failed",
    "scheduler.job.execution.retrying", "scheduler.job.execution.skipped",
}  # fmt: skip
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def _event_classes(aggregate: type) -> set[type]:
    """The event classes an aggregate stores (the library's unused default `Created` aside)."""
    found = {
        v
        for v in vars(aggregate).values()
        if isinstance(v, type) and issubclass(v, Aggregate.Event) and v.__name__ != "Event"
    }
    creations = {c for c in found if issubclass(c, Aggregate.Created)}
    if len(creations) > 1:
        found.discard(vars(aggregate)["Created"])
    return found


@pytest.mark.parametrize("aggregate", [Job, JobName, Execution, SkippedSlots, Subscription])
def test_every_stored_event_class_is_public_or_named_internal(aggregate: type) -> None:
    for cls in _event_classes(aggregate):
        assert (cls in PUBLIC_TYPES) != (cls in INTERNAL), cls.__qualname__


def test_the_public_job_types_are_designs_and_webhooks_add_their_own() -> None:
    job_types = {t for t in ALL_TYPES if t.startswith("scheduler.job.")}
    webhook_types = {t for t in ALL_TYPES if t.startswith("scheduler.webhook.")}
    assert job_types == DESIGN_TYPES
    assert webhook_types == {
        f"scheduler.webhook.{v}" for v in ("created", "updated", "enabled", "disabled", "deleted")
    }


def _job() -> Job:
    definition = {"name": "n", "pattern": "0 2 * * *", "timezone": "UTC", "taskType": "HttpInvokerTask",
                  "taskConfig": {"url": "https://example.com", "headers": {"X-Api-Token": "s3cret"}}}  # fmt: skip
    return Job(
        tenant="acme", application={"id": "7"}, definition=definition, enabled=True, by="ana"
    )


def test_an_envelope_is_cloudevents_with_the_job_as_subject_and_secrets_masked() -> None:
    job = _job()
    created = job.collect_events()[0]
    owner = owner_of_first(created, {})
    assert owner is not None

    public = envelope(created, 12, owner)

    assert public is not None
    doc = public.envelope
    assert doc["specversion"] == "1.0"
    assert doc["type"] == "scheduler.job.created"
    assert doc["subject"] == str(job.id) == doc["data"]["jobId"]
    assert doc["position"] == 12 and doc["datacontenttype"] == "application/json"
    assert doc["time"].endswith("Z")
    assert doc["data"]["definition"]["taskConfig"]["headers"]["X-Api-Token"] == "***"
    assert "tenant" not in doc["data"]
    assert public.tenant == "acme" and public.application_id == "7"
    assert envelope(created, 12, owner).envelope["id"] == doc["id"]  # stable across reads


def test_execution_events_carry_their_job_and_scheduled_is_internal() -> None:
    job = _job()
    execution = Execution.schedule(job.id, "acme", 1, {"application": {"id": "7"}},
                                   datetime(2026, 2, 4, 2, tzinfo=UTC), Trigger.CRON, "n1", "scheduler")  # fmt: skip
    execution.start("n1", datetime(2026, 2, 4, 2, tzinfo=UTC))
    scheduled, started = execution.collect_events()
    owner = owner_of_first(scheduled, {})
    assert owner is not None

    assert envelope(scheduled, 1, owner) is None
    public = envelope(started, 2, owner)
    assert public is not None
    doc = public.envelope
    assert doc["type"] == "scheduler.job.execution.started"
    assert doc["subject"] == str(job.id)
    assert doc["data"]["executionId"] == str(execution.id)
    assert doc["data"]["trigger"] == "cron" and doc["data"]["attempt"] == 1


def test_skipped_slots_are_execution_skipped_events() -> None:
    first = datetime(2026, 2, 4, 2, tzinfo=UTC)
    skips = SkippedSlots.record(uuid4(), "acme", first, first, 1, SkipReason.MISSED, "n1")
    skips.extend(datetime(2026, 2, 4, 3, tzinfo=UTC), 1)
    skipped, extended = skips.collect_events()
    owner = owner_of_first(skipped, {})
    assert owner is not None

    doc = envelope(extended, 5, owner).envelope  # type: ignore[union-attr]

    assert doc["type"] == "scheduler.job.execution.skipped"
    assert doc["data"]["reason"] == "MISSED" and doc["data"]["count"] == 2
    assert doc["data"]["from"] == "2026-02-04T02:00:00.000Z"
    assert doc["data"]["to"] == "2026-02-04T03:00:00.000Z"


def test_a_webhook_event_never_shows_its_secret() -> None:
    sub = Subscription(tenant="acme", url="https://h.example/x?token=abc", event_types=["scheduler.*"],
                       job_id=None, application_id=None, secret=SECRET, enabled=True, start_after=0, by="ana")  # fmt: skip
    sub.update({"secret": "whsec_" + base64.b64encode(b"m" * 32).decode()}, by="ana")
    created, updated = sub.collect_events()
    owner = owner_of_first(created, {})
    assert owner is not None

    bodies = [envelope(e, i, owner).body for i, e in enumerate((created, updated), 1)]  # type: ignore[union-attr]

    assert all(SECRET.encode()[6:20] not in b for b in bodies)
    assert b"token=***" in bodies[0]


@pytest.mark.parametrize(
    ("globs", "kind", "matches"),
    [
        (["scheduler.job.*"], "scheduler.job.execution.failed", True),
        (["scheduler.job.execution.*"], "scheduler.job.created", False),
        (["scheduler.job.created"], "scheduler.job.created", True),
        (["scheduler.job.created"], "scheduler.job.created.x", False),
        (["*.deleted", "scheduler.webhook.*"], "scheduler.webhook.updated", True),
    ],
)
def test_type_globs_match_whole_types_with_star_across_dots(
    globs: list[str], kind: str, matches: bool
) -> None:
    assert (glob_regex(globs).match(kind) is not None) is matches


def test_a_glob_that_matches_no_type_is_refused_naming_it() -> None:
    with pytest.raises(InvalidField) as refused:
        check_globs("eventTypes", ["scheduler.jobs.*"], ALL_TYPES)
    assert refused.value.field == "eventTypes[0]"


@pytest.mark.parametrize(
    "secret", ["nope", "whsec_!!", "whsec_" + base64.b64encode(b"short").decode()]
)
def test_a_malformed_secret_is_refused(secret: str) -> None:
    with pytest.raises(InvalidField):
        check_secret(secret)


def test_the_signature_verifies_with_the_standardwebhooks_package() -> None:
    body, ts = b'{"type":"scheduler.job.created"}', int(time.time())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(ts),
               "webhook-signature": sign(SECRET, "msg_1", ts, body)}  # fmt: skip

    Webhook(SECRET).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body + b" ", headers)


@pytest.mark.parametrize(
    ("target", "shown"),
    [
        ({"url": "https://ops:hunter2@example.com/sync"}, {"url": "https://ops:***@example.com/sync"}),
        ({"url": "https://example.com/sync?access_token=abc&day=1"},
         {"url": "https://example.com/sync?access_token=***&day=1"}),
        ({"endpoint": "https://ops:hunter2@example.com", "path": "/sync"},
         {"endpoint": "https://ops:***@example.com", "path": "/sync"}),
    ],
)  # fmt: skip
def test_credentials_in_a_jobs_target_url_never_leave_in_its_events(
    target: dict[str, str], shown: dict[str, str]
) -> None:
    definition = {"name": "n", "pattern": "0 2 * * *", "timezone": "UTC",
                  "taskType": "HttpInvokerTask", "taskConfig": target}  # fmt: skip
    job = Job(tenant="acme", application={"id": "7"}, definition=definition, enabled=True, by="a")
    job.update({"taskConfig": {**target, "method": "PUT"}}, by="ana")
    created, updated = job.collect_events()
    owner = owner_of_first(created, {})
    assert owner is not None

    docs = [envelope(e, i, owner).envelope for i, e in enumerate((created, updated), 1)]  # type: ignore[union-attr]

    assert docs[0]["data"]["definition"]["taskConfig"] == shown
    assert docs[1]["data"]["changes"]["taskConfig"] == {**shown, "method": "PUT"}
    assert all(b"hunter2" not in e.body and b"abc" not in e.body
               for e in (envelope(created, 1, owner), envelope(updated, 2, owner)))  # type: ignore[union-attr]  # fmt: skip
    assert job.definition["taskConfig"] == {
        **target,
        "method": "PUT",
    }  # the stored event is untouched


def test_a_masked_secret_signs_nothing() -> None:
    with pytest.raises(InvalidField):
        sign("whsec_***", "msg_1", int(time.time()), b"{}")  # it decoded to an empty key
