"""Webhook subscriptions: commands, their read model, and redelivery requests.

Subscriptions live in the same log as jobs (their changes are public events too). The
secret is kept in the log only (encrypted at rest when the store is): the read model and
every response after the create show it masked.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from application.event_log import EventFilter, EventLog
from application.jobs import Jobs, Written
from application.projections import Projection, Row
from application.public_events import ALL_TYPES
from domain.errors import InvalidField, JobDeleted, JobNotFound, UrlBlocked, VersionConflict
from domain.instants import iso_ms
from domain.masking import MASK, mask_url
from domain.webhook import (
    MAX_URL,
    SECRET_PREFIX,
    Subscription,
    WebhookDisabled,
    WebhookNotFound,
    check_globs,
    check_secret,
    glob_regex,
    subscription_id,
)

MAX_REDELIVERIES = 1000
MAX_REDELIVER_SPAN = 100_000  # log positions one range may cover
_FIELDS = {
    "url": "url",
    "eventTypes": "event_types",
    "jobId": "job_id",
    "applicationId": "application_id",
    "secret": "secret",
}


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a subscription's delivery stands: every matching event up to `position` is
    delivered or given up on; `failures` in a row; when the next retry is due."""

    position: int
    failures: int = 0
    next_attempt_at: str | None = None


class DeliveryRecords(Protocol):
    """What commands need of the delivery store."""

    def add(
        self, subscription_id: str, tenant: str, start_after: int, rows: list[Row]
    ) -> None: ...

    def get_delivery(self, tenant: str, subscription_id: str, delivery_id: str) -> Row | None: ...


def generate_secret() -> str:
    """A fresh `whsec_` secret: 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def subscription_filter(sub: Subscription) -> EventFilter:
    """The public events a subscription gets."""
    return EventFilter(sub.tenant, glob_regex(sub.event_types), sub.job_id, sub.application_id)


class WebhooksProjection(Projection):
    """One row per live subscription, as the API shows it (secret masked, URL masked)."""

    name = "webhooks"
    event_classes = (
        Subscription.Created,  # type: ignore[attr-defined]
        Subscription.Updated,  # type: ignore[attr-defined]
        Subscription.Enabled,  # type: ignore[attr-defined]
        Subscription.Disabled,  # type: ignore[attr-defined]
        Subscription.Deleted,  # type: ignore[attr-defined]
    )

    def key(self, event: Any) -> str:
        return str(event.originator_id)

    def apply(self, row: Row | None, event: Any) -> Row | None:
        at = iso_ms(event.timestamp)
        if isinstance(event, Subscription.Created):  # type: ignore[attr-defined]
            return {
                "id": str(event.originator_id),
                "tenant": event.tenant,
                "url": mask_url(event.url),
                "eventTypes": event.event_types,
                "jobId": event.job_id,
                "applicationId": event.application_id,
                "secret": f"{SECRET_PREFIX}{MASK}",
                "enabled": event.enabled,
                "disabledReason": None,
                "startAfter": event.start_after,
                "createdAt": at,
                "createdBy": event.by,
                "updatedAt": at,
                "updatedBy": event.by,
                "version": event.originator_version,
            }
        if row is None or isinstance(event, Subscription.Deleted):  # type: ignore[attr-defined]
            return None
        row = dict(row)
        if isinstance(event, Subscription.Updated):  # type: ignore[attr-defined]
            shown = {v: k for k, v in _FIELDS.items()}
            for key, value in event.changes.items():
                if key == "url":
                    value = mask_url(value)
                if key != "secret":
                    row[shown.get(key, key)] = value
        elif isinstance(event, Subscription.Enabled):  # type: ignore[attr-defined]
            row.update(enabled=True, disabledReason=None)
        elif isinstance(event, Subscription.Disabled):  # type: ignore[attr-defined]
            row.update(enabled=False, disabledReason=event.reason)
        row.update(updatedAt=at, updatedBy=event.by, version=event.originator_version)
        return row


class Webhooks:
    """Commands on webhook subscriptions, recorded in the jobs' log."""

    def __init__(
        self,
        jobs: Jobs,
        events: EventLog,
        deliveries: DeliveryRecords,
        check_url: Callable[[str], None] | None = None,
    ) -> None:
        self.jobs, self.events, self.deliveries = jobs, events, deliveries
        self._check_url = check_url

    def create(self, tenant: str, doc: Mapping[str, Any], by: str) -> tuple[Written, str]:
        """A new subscription; returns it and its secret (shown this once)."""
        if not isinstance(doc, Mapping):
            raise InvalidField("body", "must be a JSON object")
        for required in ("url", "eventTypes"):
            if required not in doc:
                raise InvalidField(required, "required")
        fields = self._parse(tenant, doc)  # a masked `whsec_***` is refused: no key in it
        secret = fields.pop("secret", None) or generate_secret()
        head = self.events.head()
        start_after = doc.get("startAfter", head)
        if not isinstance(start_after, int) or isinstance(start_after, bool) or start_after < 0:
            raise InvalidField("startAfter", "must be a log position (an integer ≥ 0)")
        enabled = doc.get("enabled", True)
        if not isinstance(enabled, bool):
            raise InvalidField("enabled", "must be true or false")
        sub = Subscription(
            tenant=tenant,
            url=fields["url"],
            event_types=fields["event_types"],
            job_id=fields.get("job_id"),
            application_id=fields.get("application_id"),
            secret=secret,
            enabled=enabled,
            start_after=min(start_after, head),
            by=by,
        )
        position = self.jobs.record(sub)
        return Written(sub.id, sub.version, position), secret

    def update(
        self, tenant: str, webhook_id: object, doc: Mapping[str, Any], by: str,
        expected_version: int | None = None,
    ) -> Written:  # fmt: skip
        """Change the given fields (`enabled` enables or disables)."""
        if not isinstance(doc, Mapping):
            raise InvalidField("body", "must be a JSON object")
        sub = self.get(tenant, webhook_id)
        loaded = sub.version
        if expected_version is not None and expected_version != loaded:
            raise VersionConflict(expected_version, loaded)
        doc = _unchanged_if_masked(doc, sub)
        changes = self._parse(tenant, doc)
        sub.update(changes, by=by)
        enabled = doc.get("enabled")
        if enabled is True:
            sub.enable(by=by)
        elif enabled is False:
            sub.disable(by=by)
        elif enabled is not None:
            raise InvalidField("enabled", "must be true or false")
        return self._record(loaded, sub)

    def disable(self, tenant: str, webhook_id: object, by: str, reason: str | None) -> Written:
        """Stop deliveries (the dispatcher does it after a run of failures, saying why)."""
        sub = self.get(tenant, webhook_id)
        loaded = sub.version
        sub.disable(by=by, reason=reason)
        return self._record(loaded, sub)

    def delete(self, tenant: str, webhook_id: object, by: str) -> Written:
        """Delete the subscription; its delivery records stay until the tenant's data goes."""
        sub = self.get(tenant, webhook_id)
        loaded = sub.version
        sub.delete(by=by)
        return self._record(loaded, sub)

    def get(self, tenant: str, webhook_id: object) -> Subscription:
        """The subscription from the log; another tenant's or a deleted one is not found."""
        uuid = subscription_id(webhook_id)
        try:
            sub = self.jobs.repository.get(uuid)
        except AggregateNotFoundError:
            raise WebhookNotFound(webhook_id) from None
        if not isinstance(sub, Subscription) or sub.tenant != tenant or sub.deleted:
            raise WebhookNotFound(webhook_id)
        return sub

    def redeliver(self, tenant: str, webhook_id: object, doc: Mapping[str, Any]) -> list[str]:
        """Queue one delivery again (`position` or `deliveryId`), or every matching event of
        `after` < position ≤ `until`; returns the new delivery ids."""
        sub = self.get(tenant, webhook_id)
        if not sub.enabled:  # queued, they would wait unseen until someone enables it
            raise WebhookDisabled(webhook_id)
        wanted = subscription_filter(sub)
        if not isinstance(doc, Mapping):
            raise InvalidField("body", "must be a JSON object")
        if "deliveryId" in doc:
            row = self.deliveries.get_delivery(tenant, str(sub.id), str(doc["deliveryId"]))
            if row is None:
                raise InvalidField("deliveryId", "no such delivery of this webhook")
            doc = {"position": row["position"]}
        if "position" in doc:
            position = _position(doc, "position")
            event = self.events.at(position)
            if event is None or not wanted.matches(event):
                raise InvalidField("position", f"no event of this webhook at position {position}")
            events = [event]
        elif "after" in doc and "until" in doc:
            after, until = _position(doc, "after"), _position(doc, "until")
            if until <= after:
                raise InvalidField("until", "must be greater than after")
            if until - after > MAX_REDELIVER_SPAN:  # one request decodes at most this much log
                raise InvalidField(
                    "until", f"must be at most {MAX_REDELIVER_SPAN} positions after after"
                )
            page = self.events.read(
                wanted, after, MAX_REDELIVERIES + 1, scan=until - after, stop=until
            )
            if len(page.events) > MAX_REDELIVERIES:
                raise InvalidField("until", f"the range holds more than {MAX_REDELIVERIES} events")
            events = page.events
        else:
            raise InvalidField("body", "give position, deliveryId, or after and until")
        now = iso_ms(datetime.now(UTC)) or ""
        rows = [redelivery_row(sub.id, e.position, e.type, now) for e in events]
        if rows:
            self.deliveries.add(str(sub.id), tenant, sub.start_after, rows)
        return [r["id"] for r in rows]

    def _parse(self, tenant: str, doc: Mapping[str, Any]) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if "url" in doc:
            fields["url"] = self._parse_url(doc["url"])
        if "eventTypes" in doc:
            fields["event_types"] = check_globs("eventTypes", doc["eventTypes"], ALL_TYPES)
        if "jobId" in doc:
            fields["job_id"] = self._parse_job(tenant, doc["jobId"])
        if "applicationId" in doc:
            app = doc["applicationId"]
            if app is not None and (isinstance(app, bool) or not isinstance(app, str | int)):
                raise InvalidField("applicationId", "must be a string, an integer or null")
            fields["application_id"] = None if app is None else str(app)
        if "secret" in doc and doc["secret"] is not None:
            fields["secret"] = check_secret(doc["secret"])
        return fields

    def _parse_url(self, url: object) -> str:
        if not isinstance(url, str) or not url or len(url) > MAX_URL:
            raise InvalidField(
                "url", f"must be an http or https URL of at most {MAX_URL} characters"
            )
        if not url.lower().startswith(("http://", "https://")):
            raise InvalidField("url", "must be an http or https URL")
        if self._check_url is not None:
            try:
                self._check_url(url)
            except UrlBlocked as e:
                raise InvalidField("url", f"blocked: {e.reason}") from None
        return url

    def _parse_job(self, tenant: str, job_id: object) -> str | None:
        if job_id is None:
            return None
        try:
            return str(self.jobs.get_job(tenant, job_id).id)
        except (JobNotFound, JobDeleted):
            raise InvalidField("jobId", "no such job") from None

    def _record(self, loaded: int, sub: Subscription) -> Written:
        try:
            position = self.jobs.record(sub)
        except IntegrityError:
            current = self.jobs.repository.get(sub.id)
            raise VersionConflict(loaded, current.version) from None
        return Written(sub.id, sub.version, position)


def _unchanged_if_masked(doc: Mapping[str, Any], sub: Subscription) -> Mapping[str, Any]:
    """`doc` without the fields that repeat what GET shows: the masked secret and the masked
    URL mean "unchanged" (a PUT of a GET's answer must not store `***` as the key or the
    URL's token)."""
    same = set()
    if sub.secret and doc.get("secret") == f"{SECRET_PREFIX}{MASK}":
        same.add("secret")
    if (
        isinstance(doc.get("url"), str)
        and doc["url"] != sub.url
        and doc["url"] == mask_url(sub.url)
    ):
        same.add("url")
    return {k: v for k, v in doc.items() if k not in same} if same else doc


def _position(doc: Mapping[str, Any], field: str) -> int:
    value = doc[field]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidField(field, "must be a log position (an integer ≥ 0)")
    return value


def delivery_id(subscription: UUID | str, position: int, redelivery: str | None = None) -> str:
    """A delivery's id: the subscription and the position (and a redelivery's own suffix)."""
    base = f"{subscription}:{position}"
    return f"{base}:{redelivery}" if redelivery else base


def new_row(
    subscription: UUID | str, position: int, kind: str, now: str, *, redelivery: bool = False
) -> Row:
    """A delivery record before its first attempt."""
    suffix = secrets.token_hex(4) if redelivery else None
    return {
        "id": delivery_id(subscription, position, suffix),
        "webhookId": str(subscription),
        "position": position,
        "type": kind,
        "status": "pending",
        "redelivery": redelivery,
        "attempts": [],
        "nextAttemptAt": None,
        "createdAt": now,
        "updatedAt": now,
    }


def redelivery_row(subscription: UUID | str, position: int, kind: str, now: str) -> Row:
    """A queued redelivery of the event at `position`."""
    return new_row(subscription, position, kind, now, redelivery=True)
