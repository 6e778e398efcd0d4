"""Webhook subscriptions: who hears which public events, and how each message is signed."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import DomainError, InvalidField

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES, MAX_SECRET_BYTES = 24, 64  # Standard Webhooks' bounds
MAX_URL = 2048
MAX_TYPES = 50
_GLOB = re.compile(r"^[a-z0-9.*-]{1,200}$")


class WebhookNotFound(DomainError):
    """No subscription with this id exists for the caller."""

    def __init__(self, webhook_id: object) -> None:
        super().__init__(f"webhook {webhook_id} not found")
        self.webhook_id = webhook_id


class WebhookDisabled(DomainError):
    """The subscription is disabled: nothing is delivered to it until it is enabled."""

    def __init__(self, webhook_id: object) -> None:
        super().__init__(f"webhook {webhook_id} is disabled; enable it first")
        self.webhook_id = webhook_id


def glob_regex(globs: list[str]) -> re.Pattern[str]:
    """One pattern for comma-separated `types=` globs: `*` matches anything, dots included."""
    parts = [".*".join(re.escape(piece) for piece in g.split("*")) for g in globs]
    return re.compile("^(?:" + "|".join(parts) + ")$")


def check_globs(field: str, globs: object, known: list[str]) -> list[str]:
    """Event type globs from a client: each well formed and matching some public type."""
    if not isinstance(globs, list) or not globs or len(globs) > MAX_TYPES:
        raise InvalidField(field, f"must be a list of 1 to {MAX_TYPES} type globs")
    for i, glob in enumerate(globs):
        if not isinstance(glob, str) or not _GLOB.match(glob):
            raise InvalidField(f"{field}[{i}]", "a glob of a-z 0-9 . - and *")
        if not any(glob_regex([glob]).match(t) for t in known):
            raise InvalidField(f"{field}[{i}]", f"{glob!r} matches no event type")
    return list(dict.fromkeys(globs))


def check_secret(secret: object) -> str:
    """A `whsec_` secret: base64 of 24 to 64 key bytes."""
    _key(secret)
    return secret  # type: ignore[return-value]


def _key(secret: object) -> bytes:
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise InvalidField("secret", f"must start with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidField("secret", "must be whsec_ followed by base64") from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise InvalidField(
            "secret", f"must hold {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes of key"
        )
    return key


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: `v1,` + base64 HMAC-SHA256 of `id.timestamp.body`.

    A secret `check_secret` would refuse raises `InvalidField`: never an empty or a
    truncated key (without validation, `whsec_***` decoded to no key at all)."""
    key = _key(secret)
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class Subscription(Aggregate):
    """A webhook subscription: a URL that gets the tenant's matching public events, signed."""

    @event("Created")
    def __init__(
        self,
        tenant: str,
        url: str,
        event_types: list[str],
        job_id: str | None,
        application_id: str | None,
        secret: str,
        enabled: bool,
        start_after: int,
        by: str,
    ) -> None:
        self.tenant, self.url, self.event_types = tenant, url, event_types
        self.job_id, self.application_id = job_id, application_id
        self.secret, self.enabled, self.start_after = secret, enabled, start_after
        self.deleted, self.disabled_reason = False, None
        self.created_by = self.updated_by = by

    def update(self, changes: dict[str, Any], by: str) -> None:
        """Record the changed fields only."""
        self._refuse_if_deleted()
        changes = {k: v for k, v in changes.items() if getattr(self, k) != v}
        if changes:
            self._updated(changes=changes, by=by)

    def enable(self, by: str) -> None:
        """Deliver again, from where delivery stopped."""
        self._refuse_if_deleted()
        if not self.enabled:
            self._enabled(by=by)

    def disable(self, by: str, reason: str | None = None) -> None:
        """Stop delivering (the reason says why, when the system does it)."""
        self._refuse_if_deleted()
        if self.enabled:
            self._disabled(by=by, reason=reason)

    def delete(self, by: str) -> None:
        """Delete the subscription; it accepts no further command."""
        self._refuse_if_deleted()
        self._deleted(by=by)

    def _refuse_if_deleted(self) -> None:
        if self.deleted:
            raise WebhookNotFound(self.id)

    @event("Updated")
    def _updated(self, changes: dict[str, Any], by: str) -> None:
        for key, value in changes.items():
            setattr(self, key, value)
        self.updated_by = by

    @event("Enabled")
    def _enabled(self, by: str) -> None:
        self.enabled, self.disabled_reason, self.updated_by = True, None, by

    @event("Disabled")
    def _disabled(self, by: str, reason: str | None) -> None:
        self.enabled, self.disabled_reason, self.updated_by = False, reason, by

    @event("Deleted")
    def _deleted(self, by: str) -> None:
        self.deleted, self.enabled, self.updated_by = True, False, by


def subscription_id(value: object) -> UUID:
    """A subscription id from a client; anything else names no subscription."""
    try:
        return value if isinstance(value, UUID) else UUID(str(value))
    except ValueError:
        raise WebhookNotFound(value) from None
