"""The `cronsource` command as a user runs it: a real process on each store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from interfaces.composition import Core
from tests.integration.test_job_lifecycle import nightly

ROOT = Path(__file__).resolve().parents[2]


def cronsource(
    *args: str, database_url: str | None = None, stdin: str | None = None, **variables: str
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **variables}
    if database_url:
        env["CRONSOURCE_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "interfaces.cli", *args],
        capture_output=True, text=True, env=env, cwd=ROOT, input=stdin, timeout=120,
    )  # fmt: skip


def test_replay_verify_passes_on_a_healthy_store(core: Core, database_url: str) -> None:
    job_id = core.jobs.create_job("acme", nightly(), by="ana").id
    core.jobs.trigger_job("acme", job_id, by="ana")

    result = cronsource("replay", "--verify", database_url=database_url)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "jobs: OK" in result.stdout
    assert "executions: OK" in result.stdout


def test_replay_verify_names_a_row_altered_behind_its_back(core: Core, database_url: str) -> None:
    job_id = core.jobs.create_job("acme", nightly(), by="ana").id
    core.projections.catch_up()
    with core.views_db.write() as c:
        c.execute("SELECT doc FROM cronsource_jobs WHERE id=?", (str(job_id),))
        doc = orjson.loads(c.fetchone()[0])
        doc["pattern"] = "* * * * *"
        c.execute(
            "UPDATE cronsource_jobs SET doc=? WHERE id=?",
            (orjson.dumps(doc).decode(), str(job_id)),
        )

    result = cronsource("replay", "--verify", database_url=database_url)

    assert result.returncode == 1
    assert f"jobs row {job_id} field 'pattern'" in result.stdout


def test_replay_rebuilds_the_read_models(core: Core, database_url: str) -> None:
    job_id = core.jobs.create_job("acme", nightly(), by="ana").id
    core.projections.catch_up()
    with core.views_db.write() as c:
        c.execute("DELETE FROM cronsource_jobs")

    assert cronsource("replay", database_url=database_url).returncode == 0

    assert core.queries.get_job("acme", str(job_id))["name"] == "nightly-sync"


def test_history_prints_a_jobs_events(core: Core, database_url: str) -> None:
    job_id = core.jobs.create_job("acme", nightly(), by="ana").id
    core.jobs.disable_job("acme", job_id, by="bo")

    result = cronsource(
        "history", str(job_id), "--tenant", "acme", "--json", database_url=database_url
    )

    assert result.returncode == 0, result.stderr
    assert [e["type"] for e in json.loads(result.stdout)] == [
        "scheduler.job.created",
        "scheduler.job.disabled",
    ]


def test_history_of_an_unknown_job_fails_clearly(database_url: str) -> None:
    result = cronsource(
        "history", "00000000-0000-0000-0000-000000000000", database_url=database_url
    )

    assert result.returncode == 2
    assert "not found" in result.stderr


def test_jobs_add_and_list(database_url: str) -> None:
    added = cronsource("jobs", "add", "-", database_url=database_url, stdin=json.dumps(nightly()))
    listed = cronsource("jobs", "list", database_url=database_url)

    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["taskConfig"]["auth"]["token"] == "***"
    assert "nightly-sync" in listed.stdout and "1 job(s)" in listed.stdout


def test_jobs_add_refuses_bad_input_naming_the_field(database_url: str) -> None:
    result = cronsource(
        "jobs",
        "add",
        "-",
        database_url=database_url,
        stdin=json.dumps(nightly(pattern="0 25 * * *")),
    )

    assert result.returncode == 2
    assert "pattern" in result.stderr and "hour" in result.stderr


def test_cron_prints_the_next_instants() -> None:
    result = cronsource("cron", "*/15 * * * *", "--next", "3", "--after", "2026-02-04T14:31:00Z")

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "2026-02-04T14:45:00.000Z", "2026-02-04T15:00:00.000Z", "2026-02-04T15:15:00.000Z",
    ]  # fmt: skip


def test_cron_refuses_a_bad_pattern_naming_the_field() -> None:
    result = cronsource("cron", "* * 32 * *")

    assert result.returncode == 2
    assert "day-of-month" in result.stderr


def test_a_bad_store_url_fails_with_exit_3() -> None:
    result = cronsource("jobs", "list", database_url="mysql://nope")

    assert result.returncode == 3
    assert "CRONSOURCE_DATABASE_URL" in result.stderr


@pytest.mark.parametrize(
    ("variable", "value"), [("CRONSOURCE_LOG_LEVEL", "LOUD"), ("CRONSOURCE_LOG_FORMAT", "xml")]
)
def test_a_bad_log_setting_fails_with_exit_3_naming_it(
    variable: str, value: str, tmp_path: Path
) -> None:
    result = cronsource("engine", "--data-dir", str(tmp_path), **{variable: value})

    assert result.returncode == 3
    assert variable in result.stderr and value in result.stderr


def test_bootstrap_syncs_a_folder_and_says_what_it_did(database_url: str, tmp_path: Path) -> None:
    app = tmp_path / "boot" / "crm"
    app.mkdir(parents=True)
    (app / "jobs.json").write_text(json.dumps([{"name": "crm-health-check", "pattern": "*/5 * * * *",
        "taskType": "HttpInvokerTask", "taskConfig": {"url": "http://crm-service/health", "timeout": 5000}}]))  # fmt: skip

    first = cronsource("bootstrap", str(tmp_path / "boot"), database_url=database_url)
    second = cronsource("bootstrap", str(tmp_path / "boot"), database_url=database_url)

    assert first.returncode == 0, first.stderr
    assert "app crm: 1 created" in first.stdout
    assert "0 created" in second.stdout and second.returncode == 0


def test_bootstrap_of_a_missing_folder_fails_clearly(database_url: str, tmp_path: Path) -> None:
    result = cronsource("bootstrap", str(tmp_path / "nowhere"), database_url=database_url)

    assert result.returncode == 2
    assert "nowhere" in result.stderr
