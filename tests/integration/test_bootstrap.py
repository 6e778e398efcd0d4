"""Bootstrap sync on each store: the seed's six rules, from real `jobs.json` folders."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import pytest

from application.bootstrap import BootstrapSummary
from infrastructure.bootstrap_files import bootstrap_from_dir
from interfaces.composition import Core

# the seed's own jobs.json example
HEALTH_CHECK: dict[str, Any] = {
    "name": "crm-health-check",
    "description": "Periodic health check of the CRM service",
    "enabled": True,
    "pattern": "*/5 * * * *",
    "taskType": "HttpInvokerTask",
    "taskConfig": {"url": "http://crm-service/health", "method": "GET", "timeout": 5000},
}
DAILY_SYNC: dict[str, Any] = {
    "name": "crm-daily-sync",
    "description": "Synchronizes CRM data with the external source every day at 2 AM",
    "enabled": True,
    "pattern": "0 2 * * *",
    "taskType": "HttpInvokerTask",
    "taskConfig": {
        "url": "http://crm-service/api/sync",
        "method": "POST",
        "body": {"type": "full"},
        "headers": {"Content-Type": "application/json"},
        "auth": {"authMethod": "bearer", "token": "example-token"},
        "timeout": 30000,
    },
}


def write(root: Path, app: str, docs: object) -> Path:
    (root / app).mkdir(parents=True, exist_ok=True)
    path = root / app / "jobs.json"
    path.write_bytes(docs if isinstance(docs, bytes) else orjson.dumps(docs))
    return path


def bootstrap(core: Core, root: Path, tenant: str = "default") -> BootstrapSummary:
    return bootstrap_from_dir(
        core.jobs, core.queries, core.projections.wait_for, root, tenant=tenant
    )


def listed(core: Core, app: str, tenant: str = "default") -> dict[str, dict[str, Any]]:
    """The application's jobs as the read model shows them, by name."""
    page = core.queries.list_jobs(tenant, application_id=app, limit=500)
    return {row["name"]: row for row in page.items}


def by_user(core: Core, doc: dict[str, Any], app: str = "crm", user: str = "ana") -> str:
    """A job created through the API by someone other than the bootstrap."""
    return str(core.jobs.create_job("default", {**doc, "applicationId": app}, by=user).id)


def event_types(core: Core, job_id: str) -> list[str]:
    return [type(e).__name__ for e in core.jobs.events.get(UUID(job_id))]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "bootstrap"
    folder.mkdir()
    return folder


# -- the seed's sync table, row by row ---------------------------------------------------------


def test_a_listed_job_missing_from_the_store_is_created_by_the_bootstrap(
    core: Core, root: Path
) -> None:
    write(root, "crm", [HEALTH_CHECK])

    summary = bootstrap(core, root)

    assert summary["crm"].created == ["crm-health-check"]
    row = listed(core, "crm")["crm-health-check"]
    assert (row["createdBy"], row["updatedBy"]) == ("bootstrap", "bootstrap")
    assert row["application"] == {"id": "crm", "name": "crm", "displayName": "crm"}
    assert row["pattern"] == "*/5 * * * *"
    assert row["taskConfig"]["url"] == "http://crm-service/health"


def test_a_listed_owned_job_is_updated_with_only_the_changed_fields(
    core: Core, root: Path
) -> None:
    write(root, "crm", [HEALTH_CHECK])
    bootstrap(core, root)
    write(root, "crm", [{**HEALTH_CHECK, "pattern": "*/10 * * * *"}])

    summary = bootstrap(core, root)

    assert summary["crm"].updated == ["crm-health-check"]
    row = listed(core, "crm")["crm-health-check"]
    assert (row["pattern"], row["updatedBy"], row["version"]) == ("*/10 * * * *", "bootstrap", 2)
    last = list(core.jobs.events.get(UUID(row["id"])))[-1]
    assert last.changes == {"pattern": "*/10 * * * *"}


def test_a_listed_job_modified_by_a_user_is_skipped_with_a_warning(
    core: Core, root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(root, "crm", [HEALTH_CHECK])
    bootstrap(core, root)
    job_id = listed(core, "crm")["crm-health-check"]["id"]
    core.jobs.update_job("default", job_id, {"pattern": "0 * * * *"}, by="ana")
    write(root, "crm", [{**HEALTH_CHECK, "pattern": "*/10 * * * *"}])

    with caplog.at_level(logging.WARNING, logger="cronsource.bootstrap"):
        summary = bootstrap(core, root)

    assert summary["crm"].skipped_modified == ["crm-health-check"]
    assert core.jobs.get_job("default", job_id).definition["pattern"] == "0 * * * *"
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.name == "cronsource.bootstrap"
    message = warning.getMessage()
    assert "manually modified" in message
    assert all(word in message for word in ("crm-health-check", "crm", "ana"))


def test_a_listed_job_created_by_another_source_is_skipped_silently(
    core: Core, root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    job_id = by_user(core, HEALTH_CHECK)
    write(root, "crm", [{**HEALTH_CHECK, "pattern": "*/10 * * * *"}])

    with caplog.at_level(logging.DEBUG, logger="cronsource.bootstrap"):
        summary = bootstrap(core, root)

    assert summary["crm"].skipped_foreign == ["crm-health-check"]
    assert event_types(core, job_id) == ["Created"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("crm-health-check" in r.getMessage() for r in caplog.records)


def test_an_owned_job_no_longer_listed_is_deleted(core: Core, root: Path) -> None:
    write(root, "crm", [HEALTH_CHECK, DAILY_SYNC])
    bootstrap(core, root)
    write(root, "crm", [HEALTH_CHECK])

    summary = bootstrap(core, root)

    assert summary["crm"].deleted == ["crm-daily-sync"]
    assert list(listed(core, "crm")) == ["crm-health-check"]


def test_a_job_of_another_source_not_listed_is_left_alone(core: Core, root: Path) -> None:
    job_id = by_user(core, DAILY_SYNC)
    write(root, "crm", [HEALTH_CHECK])

    summary = bootstrap(core, root)

    assert summary["crm"].deleted == []
    assert event_types(core, job_id) == ["Created"]
    assert set(listed(core, "crm")) == {"crm-health-check", "crm-daily-sync"}


def test_a_bootstrap_job_a_user_modified_is_not_deleted_when_unlisted(
    core: Core, root: Path
) -> None:
    write(root, "crm", [HEALTH_CHECK, DAILY_SYNC])
    bootstrap(core, root)
    job_id = listed(core, "crm")["crm-daily-sync"]["id"]
    core.jobs.disable_job("default", job_id, by="ana")
    write(root, "crm", [HEALTH_CHECK])

    summary = bootstrap(core, root)

    assert summary["crm"].deleted == []
    assert listed(core, "crm")["crm-daily-sync"]["updatedBy"] == "ana"


# -- beyond the table --------------------------------------------------------------------------


def test_a_second_sync_of_the_same_files_changes_nothing(core: Core, root: Path) -> None:
    write(root, "crm", [HEALTH_CHECK, DAILY_SYNC])
    write(root, "billing", [{**HEALTH_CHECK, "name": "billing-health-check"}])
    bootstrap(core, root)
    head = core.jobs.recorder.max_notification_id()

    summary = bootstrap(core, root)

    assert summary["crm"].unchanged == ["crm-health-check", "crm-daily-sync"]
    assert summary["billing"].unchanged == ["billing-health-check"]
    for app in summary.applications.values():
        assert app.created == app.updated == app.deleted == []
    assert core.jobs.recorder.max_notification_id() == head


def test_the_seed_example_syncs_with_its_secret_kept_and_masked(core: Core, root: Path) -> None:
    write(root, "crm", [HEALTH_CHECK, DAILY_SYNC])

    summary = bootstrap(core, root)

    assert summary.ok
    assert summary["crm"].created == ["crm-health-check", "crm-daily-sync"]
    rows = listed(core, "crm")
    assert rows["crm-health-check"]["taskConfig"]["timeout"] == 5000
    assert rows["crm-daily-sync"]["taskConfig"]["auth"]["token"] == "***"
    job = core.jobs.get_job("default", rows["crm-daily-sync"]["id"])
    assert job.definition["taskConfig"]["auth"]["token"] == "example-token"


def test_a_changed_secret_in_the_file_updates_the_owned_job(core: Core, root: Path) -> None:
    write(root, "crm", [DAILY_SYNC])
    bootstrap(core, root)
    config = DAILY_SYNC["taskConfig"]
    rotated = {**config, "auth": {"authMethod": "bearer", "token": "rotated-token"}}
    write(root, "crm", [{**DAILY_SYNC, "taskConfig": rotated}])

    summary = bootstrap(core, root)

    assert summary["crm"].updated == ["crm-daily-sync"]
    job = core.jobs.get_job("default", listed(core, "crm")["crm-daily-sync"]["id"])
    assert job.definition["taskConfig"]["auth"]["token"] == "rotated-token"


def test_a_field_dropped_from_the_file_returns_to_its_default(core: Core, root: Path) -> None:
    write(root, "crm", [{**HEALTH_CHECK, "timezone": "Europe/Berlin"}])
    bootstrap(core, root)
    write(root, "crm", [HEALTH_CHECK])

    summary = bootstrap(core, root)

    assert summary["crm"].updated == ["crm-health-check"]
    assert listed(core, "crm")["crm-health-check"]["timezone"] == "UTC"


def test_a_broken_file_keeps_its_jobs_and_the_other_applications_sync(
    core: Core, root: Path
) -> None:
    write(root, "crm", [HEALTH_CHECK, DAILY_SYNC])
    bootstrap(core, root)
    broken = write(root, "crm", b'[{"name": "crm-health-check",')
    write(root, "billing", [{**HEALTH_CHECK, "name": "billing-health-check"}])

    summary = bootstrap(core, root)

    assert "crm" not in summary.applications
    assert summary.not_synced["crm"][0].startswith(f"{broken}: not valid JSON")
    assert not summary.ok
    assert set(listed(core, "crm")) == {"crm-health-check", "crm-daily-sync"}
    assert summary["billing"].created == ["billing-health-check"]
    assert f"app crm: not synced: {broken}" in str(summary)


def test_an_invalid_job_is_reported_and_the_others_sync(core: Core, root: Path) -> None:
    bad = {**DAILY_SYNC, "pattern": "every day at two"}
    write(root, "crm", [HEALTH_CHECK, bad])

    summary = bootstrap(core, root)

    assert summary["crm"].created == ["crm-health-check"]
    assert list(summary["crm"].invalid) == ["crm-daily-sync"]
    assert summary["crm"].invalid["crm-daily-sync"].startswith("pattern:")
    assert not summary.ok
    assert list(listed(core, "crm")) == ["crm-health-check"]


def test_an_owned_job_that_became_invalid_in_the_file_is_kept(core: Core, root: Path) -> None:
    write(root, "crm", [HEALTH_CHECK])
    bootstrap(core, root)
    write(root, "crm", [{**HEALTH_CHECK, "taskConfig": {"method": "GET"}}])

    summary = bootstrap(core, root)

    assert list(summary["crm"].invalid) == ["crm-health-check"]
    assert summary["crm"].deleted == []
    assert list(listed(core, "crm")) == ["crm-health-check"]


def test_enabled_false_in_the_file_disables_an_owned_job(core: Core, root: Path) -> None:
    write(root, "crm", [HEALTH_CHECK])
    bootstrap(core, root)
    write(root, "crm", [{**HEALTH_CHECK, "enabled": False}])

    summary = bootstrap(core, root)

    assert summary["crm"].updated == ["crm-health-check"]
    row = listed(core, "crm")["crm-health-check"]
    assert (row["enabled"], row["updatedBy"]) == (False, "bootstrap")
    assert event_types(core, row["id"]) == ["Created", "Disabled"]


def test_a_job_of_another_tenant_with_the_same_name_is_untouched(core: Core, root: Path) -> None:
    doc = {**HEALTH_CHECK, "applicationId": "crm"}
    other = core.jobs.create_job("acme", doc, by="bootstrap").id
    stale = core.jobs.create_job("acme", {**DAILY_SYNC, "applicationId": "crm"}, by="bootstrap").id
    write(root, "crm", [{**HEALTH_CHECK, "pattern": "*/10 * * * *"}])

    summary = bootstrap(core, root)

    assert summary["crm"].created == ["crm-health-check"]
    assert summary["crm"].deleted == []
    assert core.jobs.get_job("acme", other).version == 1
    assert core.jobs.get_job("acme", stale).version == 1
    assert set(listed(core, "crm", tenant="acme")) == {"crm-health-check", "crm-daily-sync"}


def test_the_summary_reads_as_one_line_per_application(core: Core, root: Path) -> None:
    write(root, "crm", [HEALTH_CHECK, DAILY_SYNC])
    bootstrap(core, root)
    job_id = listed(core, "crm")["crm-daily-sync"]["id"]
    core.jobs.update_job("default", job_id, {"description": "mine now"}, by="ana")
    write(root, "crm", [{**HEALTH_CHECK, "pattern": "*/10 * * * *"}, DAILY_SYNC])

    summary = bootstrap(core, root)

    assert str(summary) == (
        "app crm: 0 created, 1 updated, 0 deleted, 1 skipped (manually modified): crm-daily-sync"
    )
