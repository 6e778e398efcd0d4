"""`cronsource doctor`: every check passes on a sound node; each broken setting fails by name."""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from domain.instants import iso_ms
from interfaces.cli import main
from interfaces.composition import Core, Settings
from interfaces.doctor import KNOWN
from tests.integration.test_job_lifecycle import nightly

ROOT = Path(__file__).resolve().parents[2]
KEY = base64.b64encode(b"k" * 32).decode()
SECRET = "doctor-secret-" + "x" * 40


@pytest.fixture
def node(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Core]:
    """A store in use, as `serve` leaves it: a job, read models applied, an engine's beat;
    the environment configured for it."""
    for name in [n for n in os.environ if n.startswith(("CRONSOURCE_", "SCHEDULER_"))]:
        monkeypatch.delenv(name)
    env = {"CRONSOURCE_DATABASE_URL": database_url, "CRONSOURCE_DATA_DIR": str(tmp_path),
           "CRONSOURCE_JWT_SECRET": SECRET, "CRONSOURCE_CIPHER_KEY": KEY,
           "SCHEDULER_MAX_CONCURRENCY": "8", "CRONSOURCE_PORT": "3001"}  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    core = Core(Settings(data_dir=tmp_path, database_url=database_url, cipher_key=KEY))
    core.jobs.create_job("acme", nightly(), by="ana")
    core.projections.catch_up()
    core.nodes.beat("engine-a", iso_ms(datetime.now(UTC)) or "")
    yield core
    core.close()


def doctor(capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    status = main(["doctor"])
    return status, capsys.readouterr().out.splitlines()


def test_a_sound_node_passes_every_check(
    node: Core, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, lines = doctor(capsys)

    assert status == 0, lines
    clock = [] if database_url.startswith("sqlite") else ["clock"]  # this host against the server
    checks = ["config", "jwt", "cipher", "store", *clock, "log", "nodes", "projections"]
    assert [line.split()[1] for line in lines] == checks
    assert all(line.startswith("ok ") for line in lines), lines


BROKEN: dict[str, tuple[dict[str, str], str, str]] = {
    # what is broken: (variables, the failing check, words of its line)
    "a number that is not one": ({"SCHEDULER_MAX_CONCURRENCY": "many"}, "config", "SCHEDULER_MAX_CONCURRENCY"),
    "a port that is not one": ({"CRONSOURCE_PORT": "http"}, "config", "CRONSOURCE_PORT"),
    "a switch that is neither on nor off": ({"CRONSOURCE_ENGINE": "sometimes"}, "config", "CRONSOURCE_ENGINE"),
    "a store URL of another kind": ({"CRONSOURCE_DATABASE_URL": "mysql://db/x"}, "config", "CRONSOURCE_DATABASE_URL"),
    "a JWT secret too short": ({"CRONSOURCE_JWT_SECRET": "short"}, "jwt", "at least 32 bytes"),
    "two JWT keys": ({"CRONSOURCE_JWKS_URL": "https://idp.example/jwks"}, "jwt", "set only one"),
    "a cipher key that is not base64": ({"CRONSOURCE_CIPHER_KEY": "not base64!"}, "cipher", "base64"),
    "another cipher key than the log's": (
        {"CRONSOURCE_CIPHER_KEY": base64.b64encode(b"o" * 32).decode()}, "log", "does not decrypt",
    ),
    "no cipher key for an encrypted log": ({"CRONSOURCE_CIPHER_KEY": ""}, "log", "is encrypted"),
    "a store that cannot be reached": (
        {"CRONSOURCE_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nowhere"}, "store", "cannot be reached",
    ),
}  # fmt: skip


@pytest.mark.parametrize("broken", BROKEN)
def test_a_broken_setting_fails_its_check_by_name_and_the_command(
    broken: str, node: Core, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    variables, check, words = BROKEN[broken]
    for name, value in variables.items():
        monkeypatch.setenv(name, value)

    status, lines = doctor(capsys)

    assert status == 1
    failed = [line for line in lines if line.startswith("fail ")]
    assert any(line.split()[1] == check and words in line for line in failed), lines


def test_an_engine_node_whose_clock_is_off_fails_the_nodes_check(
    node: Core, capsys: pytest.CaptureFixture[str]
) -> None:
    node.nodes.beat("engine-fast", iso_ms(datetime.now(UTC) + timedelta(seconds=30)) or "")

    status, lines = doctor(capsys)

    assert status == 1
    (line,) = [line for line in lines if "engine-fast" in line]
    assert line.startswith("fail  nodes")
    skew = re.search(r"clock was ([0-9.]+) s ahead of the database's", line)
    assert skew is not None and 29 < float(skew.group(1)) < 31, line


def test_events_the_read_models_have_not_applied_are_counted(
    node: Core, capsys: pytest.CaptureFixture[str]
) -> None:
    node.jobs.create_job("acme", nightly("unapplied"), by="ana")

    status, lines = doctor(capsys)

    assert status == 0
    (line,) = [line for line in lines if line.split()[1] == "projections"]
    assert line.startswith("ok ") and "events not yet applied: jobs 1" in line


def test_a_misspelt_variable_is_a_warning_naming_it(
    node: Core, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CRONSOURCE_ENGNE", "off")

    status, lines = doctor(capsys)

    assert status == 0
    assert "warn  config       CRONSOURCE_ENGNE is not a documented setting (a typo?)" in lines


def test_a_node_with_no_store_yet_is_warned_not_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [n for n in os.environ if n.startswith(("CRONSOURCE_", "SCHEDULER_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CRONSOURCE_DATA_DIR", str(tmp_path / "new"))

    status, lines = doctor(capsys)

    assert status == 0
    assert any(line.startswith("warn  store") and "no store yet" in line for line in lines)
    assert not (tmp_path / "new").exists()  # the doctor created nothing


def test_the_doctor_knows_every_variable_the_readme_documents() -> None:
    table = (ROOT / "README.md").read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `((?:CRONSOURCE|SCHEDULER)_[A-Z_]+)`", table, re.M))
    documented |= set(re.findall(r"`, `((?:CRONSOURCE|SCHEDULER)_[A-Z_]+)`", table))

    assert documented == KNOWN
