"""Jobs through their whole life on each store: commands, read model, history."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from application.jobs import Fire
from domain.errors import (
    InvalidField,
    InvalidFields,
    JobDeleted,
    JobNotFound,
    NameTaken,
    VersionConflict,
)
from domain.job import Job
from interfaces.composition import Core


def nightly(name: str = "nightly-sync", **extra: object) -> dict[str, object]:
    return {
        "applicationId": 5,
        "name": name,
        "description": "Synchronizes data every day at 2 AM",
        "pattern": "0 2 * * *",
        "taskType": "HttpInvokerTask",
        "taskConfig": {
            "endpoint": "http://integration-service:4005",
            "method": "POST",
            "path": "/api/sync",
            "body": {"fromDate": "${T-1:YYYY-MM-DD}", "toDate": "${T:YYYY-MM-DD}"},
            "headers": {"X-Custom-Header": "value"},
            "auth": {"authMethod": "bearer", "token": "s3cr3t-token"},
        },
        **extra,
    }


def test_a_job_goes_through_create_update_disable_enable_delete(core: Core) -> None:
    # given
    created = core.jobs.create_job("acme", nightly(), by="ana")
    # when
    core.jobs.update_job("acme", created.id, {"pattern": "*/10 * * * *"}, by="bo")
    core.jobs.disable_job("acme", created.id, by="bo")
    core.jobs.enable_job("acme", created.id, by="cy")
    deleted = core.jobs.delete_job("acme", created.id, by="cy")
    core.projections.catch_up()
    # then
    assert deleted.version == 5
    types = [e.__class__.__name__ for e in core.jobs.events.get(created.id)]
    assert types == ["Created", "Updated", "Disabled", "Enabled", "Deleted"]
    with pytest.raises(JobNotFound):
        core.queries.get_job("acme", str(created.id))


def test_the_read_model_follows_each_command(core: Core) -> None:
    job_id = core.jobs.create_job("acme", nightly(), by="ana").id
    core.jobs.update_job("acme", job_id, {"description": "every 10 min"}, by="bo")
    core.jobs.disable_job("acme", job_id, by="bo")
    core.projections.catch_up()

    row = core.queries.get_job("acme", str(job_id))

    assert row["enabled"] is False
    assert row["description"] == "every 10 min"
    assert row["version"] == 3
    assert (row["createdBy"], row["updatedBy"]) == ("ana", "bo")
    assert row["application"] == {"id": "5", "name": "5", "displayName": "5"}
    assert row["taskConfig"]["auth"] == {"authMethod": "bearer", "token": "***"}
    assert "tenant" not in row


def test_an_update_records_only_the_changed_fields(core: Core) -> None:
    job_id = core.jobs.create_job("acme", nightly(), by="ana").id

    core.jobs.update_job(
        "acme", job_id, {"pattern": "0 3 * * *", "description": nightly()["description"]}, by="bo"
    )

    updated = list(core.jobs.events.get(job_id))[-1]
    assert updated.changes == {"pattern": "0 3 * * *"}


def test_an_update_that_changes_nothing_records_nothing(core: Core) -> None:
    job_id = core.jobs.create_job("acme", nightly(), by="ana").id

    written = core.jobs.update_job("acme", job_id, {"pattern": "0 2 * * *"}, by="bo")

    assert written.version == 1


def test_a_masked_secret_sent_back_keeps_the_stored_one(core: Core) -> None:
    job_id = core.jobs.create_job("acme", nightly(), by="ana").id
    core.projections.catch_up()
    shown = core.queries.get_job("acme", str(job_id))

    core.jobs.update_job(
        "acme", job_id, {"taskConfig": {**shown["taskConfig"], "method": "PUT"}}, by="bo"
    )

    job = core.jobs.get_job("acme", job_id)
    assert job.definition["taskConfig"]["auth"]["token"] == "s3cr3t-token"
    assert job.definition["taskConfig"]["method"] == "PUT"


def test_a_deleted_job_refuses_every_command(core: Core) -> None:
    job_id = core.jobs.create_job("acme", nightly(), by="ana").id
    core.jobs.delete_job("acme", job_id, by="ana")

    for command in (
        lambda: core.jobs.update_job("acme", job_id, {"pattern": "0 3 * * *"}, by="bo"),
        lambda: core.jobs.enable_job("acme", job_id, by="bo"),
        lambda: core.jobs.disable_job("acme", job_id, by="bo"),
        lambda: core.jobs.delete_job("acme", job_id, by="bo"),
        lambda: core.jobs.trigger_job("acme", job_id, by="bo"),
    ):
        with pytest.raises(JobDeleted):
            command()


def test_the_deleted_aggregate_itself_refuses_commands(core: Core) -> None:
    job_id = core.jobs.create_job("acme", nightly(), by="ana").id
    core.jobs.delete_job("acme", job_id, by="ana")
    job = core.jobs.get_job("acme", job_id, include_deleted=True)

    with pytest.raises(JobDeleted):
        job.enable(by="bo")
    assert isinstance(job, Job)


def test_another_tenant_cannot_see_or_change_a_job(core: Core) -> None:
    job_id = core.jobs.create_job("acme", nightly(), by="ana").id
    core.projections.catch_up()

    with pytest.raises(JobNotFound):
        core.jobs.update_job("globex", job_id, {"pattern": "0 3 * * *"}, by="eve")
    with pytest.raises(JobNotFound):
        core.queries.get_job("globex", str(job_id))
    assert core.queries.list_jobs("globex").total == 0


def test_a_duplicate_name_in_the_same_application_is_refused(core: Core) -> None:
    core.jobs.create_job("acme", nightly(), by="ana")

    with pytest.raises(NameTaken):
        core.jobs.create_job("acme", nightly(), by="bo")


def test_the_same_name_is_free_in_another_application_and_tenant(core: Core) -> None:
    core.jobs.create_job("acme", nightly(), by="ana")

    core.jobs.create_job("acme", nightly(applicationId="other"), by="ana")
    core.jobs.create_job("globex", nightly(), by="ana")


def test_a_deleted_jobs_name_can_be_used_again(core: Core) -> None:
    first = core.jobs.create_job("acme", nightly(), by="ana").id
    core.jobs.delete_job("acme", first, by="ana")

    second = core.jobs.create_job("acme", nightly(), by="ana").id

    assert second != first


def test_a_rename_frees_the_old_name_and_claims_the_new(core: Core) -> None:
    job_id = core.jobs.create_job("acme", nightly("old"), by="ana").id
    core.jobs.create_job("acme", nightly("taken"), by="ana")

    with pytest.raises(NameTaken):
        core.jobs.update_job("acme", job_id, {"name": "taken"}, by="ana")
    core.jobs.update_job("acme", job_id, {"name": "new"}, by="ana")
    core.jobs.create_job("acme", nightly("old"), by="ana")

    with pytest.raises(NameTaken):
        core.jobs.create_job("acme", nightly("new"), by="ana")


def test_a_stale_expected_version_is_refused(core: Core) -> None:
    job_id = core.jobs.create_job("acme", nightly(), by="ana").id
    core.jobs.update_job("acme", job_id, {"pattern": "0 3 * * *"}, by="ana", expected_version=1)

    with pytest.raises(VersionConflict):
        core.jobs.update_job("acme", job_id, {"pattern": "0 4 * * *"}, by="bo", expected_version=1)


def test_bad_input_changes_nothing_and_names_every_bad_field(core: Core) -> None:
    doc = nightly(pattern="61 * * * *", timezone="Mars/Base", concurrencyPolicy="often")

    with pytest.raises(InvalidFields) as caught:
        core.jobs.create_job("acme", doc, by="ana")

    fields = {e.field for e in caught.value.errors}
    assert {"pattern", "timezone", "concurrencyPolicy"} <= fields
    assert core.jobs.recorder.max_notification_id() in (None, 0)


def test_an_unknown_field_is_refused(core: Core) -> None:
    with pytest.raises(InvalidField) as caught:
        core.jobs.create_job("acme", nightly(colour="blue"), by="ana")
    assert caught.value.field == "colour"


def test_the_seeds_flat_fields_are_accepted_as_aliases(core: Core) -> None:
    doc = nightly(maxRetries=3, retryDelaySeconds=5, timeoutSeconds=7, catchUp=True)

    job_id = core.jobs.create_job("acme", doc, by="ana").id

    definition = core.jobs.get_job("acme", job_id).definition
    assert definition["retry"]["maxRetries"] == 3
    assert definition["retry"]["retryDelaySeconds"] == 5
    assert definition["taskConfig"]["timeout"] == 7000
    assert definition["misfirePolicy"] == "runOnce"


def test_jobs_are_listed_with_filters_and_paging(core: Core) -> None:
    for i in range(7):
        doc = nightly(f"job-{i}", enabled=i % 2 == 0, description=f"sync number {i}")
        core.jobs.create_job("acme", doc, by="ana")
    core.jobs.create_job("acme", {**nightly("fn"), "taskType": "FunctionTask",
                                  "taskConfig": {"function": "noop"}}, by="ana")  # fmt: skip
    core.projections.catch_up()

    assert core.queries.list_jobs("acme").total == 8
    assert core.queries.list_jobs("acme", enabled=True).total == 5
    assert core.queries.list_jobs("acme", task_type="FunctionTask").total == 1
    assert [j["name"] for j in core.queries.list_jobs("acme", q="NUMBER 3").items] == ["job-3"]
    page = core.queries.list_jobs("acme", offset=2, limit=3)
    assert [j["name"] for j in page.items] == ["job-2", "job-3", "job-4"]
    assert page.total == 8
    assert core.queries.list_jobs("acme", q="100%").total == 0


def test_many_jobs_load_together_as_each_loads_alone(core: Core) -> None:
    ids = [core.jobs.create_job("acme", nightly(f"job-{i}"), by="ana").id for i in range(7)]
    core.jobs.update_job("acme", ids[1], {"pattern": "5 3 * * *"}, by="bo")
    core.jobs.disable_job("acme", ids[2], by="bo")
    core.jobs.enable_job("acme", ids[2], by="bo")
    core.jobs.delete_job("acme", ids[3], by="bo")
    nobody = uuid4()

    together = core.jobs.load_jobs([*ids, nobody])

    alone = [core.jobs.load_job(i) for i in ids]
    key = lambda loaded: (str(loaded[0].id), loaded[0].version, loaded[1])  # noqa: E731
    assert sorted(map(key, together)) == sorted(map(key, alone))
    by_id = {job.id: job for job, _ in together}
    assert by_id[ids[1]].definition["pattern"] == "5 3 * * *"
    assert by_id[ids[3]].deleted


@pytest.mark.parametrize("bulk", [True, False])
def test_many_executions_load_together_as_each_loads_alone(
    core: Core, bulk: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not bulk:  # a store read one aggregate at a time
        monkeypatch.setattr(core.jobs, "_select_events_of", None)
    job_id = core.jobs.create_job("acme", nightly(), by="ana").id
    job = core.jobs.get_job("acme", job_id)
    slots = [datetime(2026, 1, d, 2, tzinfo=UTC) for d in range(1, 5)]
    pending, running, retried, failed = core.jobs.record_fires(
        [job], [Fire(job_id, s) for s in slots]
    )
    for execution in (running, retried, failed):
        execution.start("node-a", slots[0])
    retried.fail_attempt({"code": "INTERRUPTED"}, slots[0], slots[1])
    failed.fail({"code": "INTERRUPTED"}, slots[0])
    core.jobs.record(running, retried, failed)
    ids = [e.id for e in (pending, running, retried, failed)]

    together = core.jobs.load_executions([*ids, uuid4(), job_id])  # no execution: left out

    state = lambda e: (e.version, e.status, e.attempt, e.node, e.error, e.next_attempt_at)  # noqa: E731
    assert {i: state(e) for i, e in together.items()} == {
        i: state(core.jobs.repository.get(i)) for i in ids
    }
    assert [together[i].status.value for i in ids] == ["pending", "running", "pending", "failed"]
