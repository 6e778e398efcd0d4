"""The one table from stored event classes to public event types (CloudEvents `type`), and the
envelope each public event is shown in (the /events API, the stream, webhooks, history).

`Execution.Scheduled` is internal: DESIGN §2 names no such type, and `started` is the
public "an execution was recorded and began" (its data carries what Scheduled said: the
trigger and the slot). Name claims (`JobName`) are internal too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import orjson
from eventsourcing.utils import get_topic

from domain.execution import Execution
from domain.instants import iso_ms
from domain.job import Job
from domain.ledger import SkippedSlots
from domain.masking import mask_secrets, mask_url
from domain.webhook import Subscription

PUBLIC_TYPES: dict[type, str] = {
    Job.Created: "scheduler.job.created",  # type: ignore[attr-defined]
    Job.Updated: "scheduler.job.updated",  # type: ignore[attr-defined]
    Job.Enabled: "scheduler.job.enabled",  # type: ignore[attr-defined]
    Job.Disabled: "scheduler.job.disabled",  # type: ignore[attr-defined]
    Job.Deleted: "scheduler.job.deleted",  # type: ignore[attr-defined]
    Execution.Started: "scheduler.job.execution.started",
    Execution.AttemptFailed: "scheduler.job.execution.retrying",  # type: ignore[attr-defined]
    Execution.Succeeded: "scheduler.job.execution.succeeded",
    Execution.Failed: "scheduler.job.execution.failed",  # type: ignore[attr-defined]
    SkippedSlots.Skipped: "scheduler.job.execution.skipped",  # type: ignore[attr-defined]
    SkippedSlots.Extended: "scheduler.job.execution.skipped",  # type: ignore[attr-defined]
    Subscription.Created: "scheduler.webhook.created",  # type: ignore[attr-defined]
    Subscription.Updated: "scheduler.webhook.updated",  # type: ignore[attr-defined]
    Subscription.Enabled: "scheduler.webhook.enabled",  # type: ignore[attr-defined]
    Subscription.Disabled: "scheduler.webhook.disabled",  # type: ignore[attr-defined]
    Subscription.Deleted: "scheduler.webhook.deleted",  # type: ignore[attr-defined]
}
PUBLIC_TOPICS: dict[str, str] = {get_topic(cls): name for cls, name in PUBLIC_TYPES.items()}
ALL_TYPES: list[str] = sorted(set(PUBLIC_TYPES.values()))
#: Internal events read beside the public ones: they say whom later events belong to.
FIRST_EVENTS = (Job.Created, Execution.Scheduled, SkippedSlots.Skipped, Subscription.Created)  # type: ignore[attr-defined]
READ_TOPICS: list[str] = sorted(set(PUBLIC_TOPICS) | {get_topic(c) for c in FIRST_EVENTS})

SPEC_VERSION = "1.0"
SOURCE = "/_/scheduler"

_URL_FIELDS = ("url", "endpoint")  # a webhook's URL; an HTTP task's `url` or `endpoint`
_LIBRARY_FIELDS = {"originator_id", "originator_version", "timestamp", "originator_topic"}
_INTERNAL_FIELDS = {"tenant", "job_snapshot", "override", "secret"}
_CAMEL = {
    "job_id": "jobId",
    "job_version": "jobVersion",
    "job_snapshot": "jobSnapshot",
    "scheduled_for": "scheduledFor",
    "next_attempt_at": "nextAttemptAt",
    "duration_ms": "durationMs",
    "application_id": "applicationId",
    "event_types": "eventTypes",
    "start_after": "startAfter",
}


def public_type(event: object) -> str | None:
    """The public type of a stored event, or None for internal ones (name claims)."""
    return PUBLIC_TYPES.get(type(event))


def _plain(value: Any) -> Any:
    if hasattr(value, "isoformat") and hasattr(value, "tzinfo"):
        return iso_ms(value)
    if isinstance(value, UUID):
        return str(value)
    return value


def public_data(event: Any) -> dict[str, Any]:
    """An event's own fields as clients see them: camelCase, instants as text, secrets masked
    (URL passwords and secret query parameters too: a job's target, a webhook's URL)."""
    data: dict[str, Any] = {}
    for key, value in vars(event).items():
        if key in _LIBRARY_FIELDS:
            continue
        data[_CAMEL.get(key, key)] = _plain(value)
    data = mask_secrets(data)  # type: ignore[assignment]
    for holder in _url_holders(data):
        for key in _URL_FIELDS:
            if isinstance(holder.get(key), str):
                holder[key] = mask_url(holder[key])
    return data


def _url_holders(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The objects of an event's data that may hold a URL: the event itself (a webhook), its
    changes, and the task config of a job's definition or of its changes (masked copies:
    `mask_secrets` built them, so changing them changes no stored event)."""
    holders = [data]
    for part in ("definition", "changes"):
        if isinstance(data.get(part), dict):
            holders.append(data[part])
    for holder in list(holders[1:]):
        if isinstance(holder.get("taskConfig"), dict):
            holders.append(holder["taskConfig"])
    return holders


@dataclass(frozen=True, slots=True)
class Owner:
    """Whom the events of one aggregate belong to, from its first event."""

    tenant: str
    kind: str  # "job", "execution", "skip", "webhook"
    job_id: str | None
    application_id: str | None
    extra: dict[str, Any]


def owner_of_first(event: Any, job_application: dict[str, str]) -> Owner | None:
    """The owner an aggregate's first event names (None for internal aggregates).

    `job_application` maps job ids to application ids for events that carry only a job id.
    """
    if isinstance(event, Job.Created):  # type: ignore[attr-defined]
        job_id = str(event.originator_id)
        return Owner(event.tenant, "job", job_id, str(event.application["id"]), {})
    if isinstance(event, Execution.Scheduled):  # type: ignore[attr-defined]
        app = (event.job_snapshot.get("application") or {}).get("id")
        extra = {"trigger": event.trigger, "scheduledFor": iso_ms(event.scheduled_for),
                 "jobVersion": event.job_version}  # fmt: skip
        return Owner(event.tenant, "execution", str(event.job_id), app, extra)
    if isinstance(event, SkippedSlots.Skipped):  # type: ignore[attr-defined]
        job_id = str(event.job_id)
        extra = {"from": iso_ms(event.first), "reason": event.reason}
        return Owner(event.tenant, "skip", job_id, job_application.get(job_id), extra)
    if isinstance(event, Subscription.Created):  # type: ignore[attr-defined]
        return Owner(event.tenant, "webhook", None, None, {})
    return None


@dataclass(frozen=True, slots=True)
class PublicEvent:
    """One public event: its envelope (as JSON bytes, the exact body of a webhook) and what
    filters need, which the envelope does not show (the tenant)."""

    position: int
    id: str
    type: str
    tenant: str
    job_id: str | None
    application_id: str | None
    body: bytes

    @property
    def envelope(self) -> dict[str, Any]:
        """The envelope as a JSON object."""
        return orjson.loads(self.body)  # type: ignore[no-any-return]


def event_id(originator_id: UUID, version: int) -> str:
    """A public event's id: the same on every read, from the aggregate and its version."""
    return str(uuid5(NAMESPACE_URL, f"/events/{originator_id}/{version}"))


def envelope(event: Any, position: int, owner: Owner) -> PublicEvent | None:
    """The CloudEvents 1.0 envelope of a stored event, or None for an internal one."""
    kind = public_type(event)
    if kind is None:
        return None
    data = {k: v for k, v in public_data(event).items() if k not in _INTERNAL_FIELDS}
    own_id = str(event.originator_id)
    if owner.kind == "job":
        data = {"jobId": own_id, **data}
        source, subject = f"{SOURCE}/jobs/{own_id}", own_id
    elif owner.kind == "execution":
        data = {"executionId": own_id, "jobId": owner.job_id, **owner.extra, **data}
        source, subject = f"{SOURCE}/executions/{own_id}", owner.job_id
    elif owner.kind == "skip":
        data = {"skipId": own_id, **owner.extra, **data}
        data.pop("first", None)
        data["to"] = data.pop("last", None)
        source, subject = f"{SOURCE}/jobs/{owner.job_id}/slots", owner.job_id
    else:
        data = {"webhookId": own_id, **data}
        changes = data.get("changes")
        if isinstance(changes, dict):
            changes = {_CAMEL.get(k, k): v for k, v in changes.items() if k != "secret"}
            data["changes"] = changes
        source, subject = f"{SOURCE}/webhooks/{own_id}", own_id
    public_id = event_id(event.originator_id, event.originator_version)
    doc = {
        "specversion": SPEC_VERSION,
        "id": public_id,
        "source": source,
        "type": kind,
        "time": iso_ms(event.timestamp),
        "subject": subject,
        "datacontenttype": "application/json",
        "position": position,
        "data": data,
    }
    return PublicEvent(
        position,
        public_id,
        kind,
        owner.tenant,
        owner.job_id,
        owner.application_id,
        orjson.dumps(doc),
    )
