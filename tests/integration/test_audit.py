"""A job's history and its past states, straight from the log, on each store."""

from __future__ import annotations

import pytest

from application.audit import job_as_of, job_history
from domain.errors import InvalidField, JobNotFound
from interfaces.composition import Core
from tests.integration.test_job_lifecycle import nightly


def test_history_lists_every_event_with_its_public_type_and_author(core: Core) -> None:
    job_id = core.jobs.create_job("acme", nightly(), by="ana").id
    core.jobs.update_job("acme", job_id, {"pattern": "0 3 * * *"}, by="bo")
    core.jobs.disable_job("acme", job_id, by="cy")

    history = job_history(core.jobs, "acme", job_id)

    assert [(h["version"], h["type"], h["by"]) for h in history] == [
        (1, "scheduler.job.created", "ana"),
        (2, "scheduler.job.updated", "bo"),
        (3, "scheduler.job.disabled", "cy"),
    ]
    assert history[1]["data"] == {"changes": {"pattern": "0 3 * * *"}}
    assert history[0]["data"]["definition"]["taskConfig"]["auth"]["token"] == "***"
    assert history[0]["time"].endswith("Z")


def test_a_past_version_is_the_job_as_it_was(core: Core) -> None:
    job_id = core.jobs.create_job("acme", nightly(), by="ana").id
    core.jobs.update_job("acme", job_id, {"pattern": "0 3 * * *"}, by="bo")

    first = job_as_of(core.jobs, "acme", job_id, version=1)
    latest = job_as_of(core.jobs, "acme", job_id)

    assert (first["pattern"], first["version"], first["updatedBy"]) == ("0 2 * * *", 1, "ana")
    assert (latest["pattern"], latest["version"]) == ("0 3 * * *", 2)


def test_the_state_at_an_instant_is_the_last_version_before_it(core: Core) -> None:
    job_id = core.jobs.create_job("acme", nightly(), by="ana").id
    core.jobs.update_job("acme", job_id, {"pattern": "0 3 * * *"}, by="bo")
    events = list(core.jobs.events.get(job_id))

    between = job_as_of(core.jobs, "acme", job_id, at=events[0].timestamp)

    assert between["pattern"] == "0 2 * * *"
    with pytest.raises(InvalidField):
        job_as_of(core.jobs, "acme", job_id, at=events[0].timestamp.replace(year=2000))


def test_the_latest_state_equals_the_read_model_row(core: Core) -> None:
    job_id = core.jobs.create_job("acme", nightly(), by="ana").id
    core.jobs.update_job("acme", job_id, {"description": "changed"}, by="bo")
    core.jobs.disable_job("acme", job_id, by="bo")
    core.projections.catch_up()

    assert job_as_of(core.jobs, "acme", job_id) == core.queries.get_job("acme", str(job_id))


def test_a_deleted_jobs_history_and_last_state_stay_readable(core: Core) -> None:
    job_id = core.jobs.create_job("acme", nightly(), by="ana").id
    core.jobs.delete_job("acme", job_id, by="bo")

    assert job_history(core.jobs, "acme", job_id)[-1]["type"] == "scheduler.job.deleted"
    assert job_as_of(core.jobs, "acme", job_id)["deleted"] is True


def test_another_tenants_history_is_not_found(core: Core) -> None:
    job_id = core.jobs.create_job("acme", nightly(), by="ana").id

    with pytest.raises(JobNotFound):
        job_history(core.jobs, "globex", job_id)
    with pytest.raises(JobNotFound):
        job_history(core.jobs, "acme", "not-a-uuid")


def test_a_version_out_of_range_is_refused(core: Core) -> None:
    job_id = core.jobs.create_job("acme", nightly(), by="ana").id

    with pytest.raises(InvalidField) as caught:
        job_as_of(core.jobs, "acme", job_id, version=9)
    assert caught.value.field == "version"
