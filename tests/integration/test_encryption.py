"""Encryption at rest: with a key, the stored log holds no plaintext, and reads back whole."""

from __future__ import annotations

import base64
import os

import pytest

from infrastructure.store import StoreConfigError, StoreUrl
from interfaces.composition import Core
from tests.integration.test_job_lifecycle import nightly


def test_a_configured_key_encrypts_every_stored_event(make_core) -> None:  # type: ignore[no-untyped-def]
    key = base64.b64encode(os.urandom(32)).decode()
    core: Core = make_core(cipher_key=key)

    job_id = core.jobs.create_job("acme", nightly("very-visible-name"), by="ana").id

    stored = core.jobs.recorder.select_notifications(start=1, limit=10)
    assert stored and all(b"very-visible-name" not in bytes(n.state) for n in stored)
    assert core.jobs.get_job("acme", job_id).name == "very-visible-name"
    core.projections.catch_up()
    assert core.queries.get_job("acme", str(job_id))["name"] == "very-visible-name"


def test_without_a_key_the_log_is_plain_json(core: Core) -> None:
    core.jobs.create_job("acme", nightly("very-visible-name"), by="ana")

    stored = core.jobs.recorder.select_notifications(start=1, limit=10)
    assert any(b"very-visible-name" in bytes(n.state) for n in stored)


@pytest.mark.parametrize("key", ["not base64!", base64.b64encode(b"short").decode()])
def test_a_bad_key_is_refused_naming_the_setting(key: str) -> None:
    with pytest.raises(StoreConfigError, match="CRONSOURCE_CIPHER_KEY"):
        StoreUrl.parse("sqlite:///x.db").event_store_env(key)
