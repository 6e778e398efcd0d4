"""`cronsource export` and `import`: the log moves to a fresh store whole, or not at all."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from application.jobs import Fire
from domain.execution import ErrorCode
from infrastructure.auth import AuthSettings, TokenVerifier, mint_token
from infrastructure.event_table import count_events
from interfaces.cli import main
from interfaces.composition import Core, Settings
from interfaces.http.app import PREFIX, build_app
from tests.integration.test_cli import cronsource
from tests.integration.test_executions import SLOT
from tests.integration.test_job_lifecycle import nightly

SECRET = "transfer-secret-" + "x" * 40
HOOK = {"url": "https://93.184.215.14/hooks", "eventTypes": ["scheduler.job.*"]}


def fresh_store_like(database_url: str, tmp_path: Path) -> str:
    """Another empty store of the same kind."""
    if database_url.startswith("sqlite"):
        return f"sqlite:///{(tmp_path / 'copy' / 'cronsource.db').as_posix()}"
    return database_url.split("?", maxsplit=1)[0] + f"?schema=c_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def open_core(tmp_path: Path) -> Iterator[Callable[..., Core]]:
    cores: list[Core] = []

    def make(url: str, **settings: Any) -> Core:
        cores.append(Core(Settings(data_dir=tmp_path, database_url=url, **settings)))
        return cores[-1]

    yield make
    for core in cores:
        core.close()


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., int]:
    """The command run in this process on a store named, as for a real one, by the
    environment; its exit status."""

    def run(url: str, *args: str) -> int:
        monkeypatch.setenv("CRONSOURCE_DATABASE_URL", url)
        monkeypatch.setenv("CRONSOURCE_DATA_DIR", str(tmp_path))
        return main(list(args))

    return run


def fill(core: Core) -> uuid.UUID:
    """A log with every kind of history: job changes, executions to their end, a webhook."""
    job_id = core.jobs.create_job("acme", nightly(), by="ana").id
    core.jobs.update_job("acme", job_id, {"pattern": "*/5 * * * *"}, by="bo")
    core.jobs.create_job("acme", nightly("second"), by="ana")
    core.jobs.disable_job("acme", job_id, by="bo")
    job = core.jobs.get_job("acme", job_id)
    core.jobs.record_fires([job], [Fire(job_id, SLOT + timedelta(days=d)) for d in range(3)])
    written = core.jobs.trigger_job("acme", job_id, by="ana")
    execution = core.jobs.get_execution("acme", written.id)
    execution.start("node-a", at=SLOT)
    execution.fail_attempt({"message": "503", "code": ErrorCode.HTTP_STATUS.value}, at=SLOT,
                           next_attempt_at=SLOT + timedelta(seconds=60))  # fmt: skip
    execution.start("node-a", at=SLOT + timedelta(seconds=60))
    execution.succeed({"status": 200, "data": {"ok": True}}, at=SLOT + timedelta(seconds=61))
    core.jobs.record(execution)
    core.webhooks.create("acme", HOOK, by="ana")
    core.projections.catch_up()
    return job_id


def stored(core: Core) -> list[tuple[Any, ...]]:
    return [
        (n.id, n.originator_id, n.originator_version, n.topic, bytes(n.state))
        for n in core.jobs.recorder.select_notifications(start=1, limit=100_000)
    ]


def api_state(core: Core, job_id: uuid.UUID) -> dict[str, Any]:
    """What clients see: the same requests against each store."""
    auth = AuthSettings(secret=SECRET)
    token = mint_token(auth, SECRET, subject="ana", tenant="acme")
    paths = ("/jobs", f"/jobs/{job_id}", f"/jobs/{job_id}/history", "/executions", "/webhooks",
             "/events?after=0&limit=1000")  # fmt: skip

    async def get_all() -> dict[str, Any]:
        transport = httpx.ASGITransport(build_app(core, TokenVerifier(auth)))
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            responses = {path: await client.get(PREFIX + path, headers=headers) for path in paths}
        assert all(r.status_code == 200 for r in responses.values()), responses
        return {path: r.json() for path, r in responses.items()}

    state = asyncio.run(get_all())
    for hook in state["/webhooks"]:
        hook.pop("delivery", None)  # delivery state is the store's, not the log's
    return state


def test_an_export_imported_into_a_fresh_store_gives_the_same_events_and_api_state(
    database_url: str, tmp_path: Path, open_core: Callable[..., Core]
) -> None:
    source = open_core(database_url)
    job_id = fill(source)
    export = tmp_path / "log.jsonl.gz"
    copy_url = fresh_store_like(database_url, tmp_path)

    exported = cronsource("export", "-o", str(export), database_url=database_url)
    imported = cronsource("import", str(export), database_url=copy_url)

    assert exported.returncode == 0, exported.stderr
    assert imported.returncode == 0, imported.stderr
    assert "read models rebuilt" in imported.stdout
    copy = open_core(copy_url)
    assert stored(copy) == stored(source)
    assert api_state(copy, job_id) == api_state(source, job_id)
    verify = cronsource("replay", "--verify", database_url=copy_url)
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.postgres
def test_an_export_from_sqlite_loads_into_postgresql(
    postgres_database: str, tmp_path: Path, open_core: Callable[..., Core]
) -> None:
    sqlite_url = f"sqlite:///{(tmp_path / 'cronsource.db').as_posix()}"
    postgres_url = f"{postgres_database}?schema=m_{uuid.uuid4().hex[:12]}"
    source = open_core(sqlite_url)
    job_id = fill(source)
    export = tmp_path / "log.jsonl"
    assert cronsource("export", "-o", str(export), database_url=sqlite_url).returncode == 0

    result = cronsource("import", str(export), database_url=postgres_url)

    assert result.returncode == 0, result.stderr
    copy = open_core(postgres_url)
    assert stored(copy) == stored(source)
    assert api_state(copy, job_id) == api_state(source, job_id)


def test_writes_after_an_import_follow_the_imported_positions(
    database_url: str, tmp_path: Path, open_core: Callable[..., Core]
) -> None:
    source = open_core(database_url)
    fill(source)
    export, copy_url = tmp_path / "log.jsonl", fresh_store_like(database_url, tmp_path)
    assert cronsource("export", "-o", str(export), database_url=database_url).returncode == 0
    assert cronsource("import", str(export), database_url=copy_url).returncode == 0
    copy = open_core(copy_url)
    head = copy.jobs.recorder.max_notification_id()

    written = copy.jobs.create_job("acme", nightly("after-import"), by="ana")

    assert written.position > head
    copy.projections.catch_up()
    assert copy.queries.get_job("acme", str(written.id))["name"] == "after-import"


def test_a_webhook_resumes_after_the_imported_log(
    database_url: str, tmp_path: Path, open_core: Callable[..., Core]
) -> None:
    source = open_core(database_url)
    fill(source)
    export, copy_url = tmp_path / "log.jsonl", fresh_store_like(database_url, tmp_path)
    assert cronsource("export", "-o", str(export), database_url=database_url).returncode == 0

    result = cronsource("import", str(export), database_url=copy_url)

    assert "1 webhook subscription(s) deliver from position" in result.stdout
    copy = open_core(copy_url)
    (hook_id,) = copy.webhooks_view.enabled_versions()
    state = copy.deliveries.state(hook_id)
    assert state is not None
    assert state["position"] == copy.jobs.recorder.max_notification_id()


def test_an_encrypted_log_is_exported_as_stored_and_imported_with_its_key(
    database_url: str,
    tmp_path: Path,
    open_core: Callable[..., Core],
    cli: Callable[..., int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    source = open_core(database_url, cipher_key=key)
    job_id = fill(source)
    export, copy_url = tmp_path / "log.jsonl", fresh_store_like(database_url, tmp_path)
    monkeypatch.setenv("CRONSOURCE_CIPHER_KEY", key)

    assert cli(database_url, "export", "-o", str(export)) == 0
    assert cli(copy_url, "import", str(export)) == 0

    header = orjson.loads(export.read_bytes().splitlines()[0])
    assert header["encoding"] == "encrypted"
    assert b"nightly-sync" not in export.read_bytes()
    copy = open_core(copy_url, cipher_key=key)
    assert stored(copy) == stored(source)
    assert copy.queries.get_job("acme", str(job_id))["name"] == "nightly-sync"


def test_a_plain_export_moves_the_log_to_a_new_cipher_key(
    database_url: str,
    tmp_path: Path,
    open_core: Callable[..., Core],
    cli: Callable[..., int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old, new = (base64.b64encode(os.urandom(32)).decode() for _ in range(2))
    job_id = fill(open_core(database_url, cipher_key=old))
    export, copy_url = tmp_path / "log.jsonl", fresh_store_like(database_url, tmp_path)
    monkeypatch.setenv("CRONSOURCE_CIPHER_KEY", old)
    assert cli(database_url, "export", "--plain", "-o", str(export)) == 0
    monkeypatch.setenv("CRONSOURCE_CIPHER_KEY", new)

    assert cli(copy_url, "import", str(export)) == 0

    copy = open_core(copy_url, cipher_key=new)
    assert all(b"nightly-sync" not in state for *_, state in stored(copy))
    assert copy.jobs.get_job("acme", job_id).name == "nightly-sync"
    assert copy.queries.get_job("acme", str(job_id))["name"] == "nightly-sync"


def test_an_encrypted_export_is_refused_by_a_store_with_another_key(
    database_url: str,
    tmp_path: Path,
    open_core: Callable[..., Core],
    cli: Callable[..., int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    old, other = (base64.b64encode(os.urandom(32)).decode() for _ in range(2))
    fill(open_core(database_url, cipher_key=old))
    export, copy_url = tmp_path / "log.jsonl", fresh_store_like(database_url, tmp_path)
    monkeypatch.setenv("CRONSOURCE_CIPHER_KEY", old)
    assert cli(database_url, "export", "-o", str(export)) == 0
    monkeypatch.setenv("CRONSOURCE_CIPHER_KEY", other)

    assert cli(copy_url, "import", str(export)) == 2

    assert "line 2: the event cannot be read" in capsys.readouterr().err
    assert _events_in(copy_url, open_core, cipher_key=other) == 0


def test_an_export_after_a_position_holds_only_the_later_events(
    core: Core, database_url: str, tmp_path: Path, cli: Callable[..., int]
) -> None:
    fill(core)
    export = tmp_path / "tail.jsonl"

    assert cli(database_url, "export", "--after", "4", "-o", str(export)) == 0

    lines = [orjson.loads(line) for line in export.read_bytes().splitlines()]
    assert lines[0]["after"] == 4
    assert [e["position"] for e in lines[1:-1]] == [n[0] for n in stored(core) if n[0] > 4]
    assert lines[0]["count"] == lines[-1]["count"] == len(lines) - 2


# -- refusals: each names the line, and the store stays empty ------------------------------


def _swap(lines: list[bytes]) -> list[bytes]:
    return [lines[0], lines[2], lines[1], *lines[3:]]


def _repeat_a_version(lines: list[bytes]) -> list[bytes]:
    """The job's first event again, at a later position: the positions are in order."""
    event = orjson.loads(lines[1])
    event["position"] = orjson.loads(lines[-2])["position"] + 1
    return [*lines[:-1], orjson.dumps(event) + b"\n", lines[-1]]


def _edit_a_state(lines: list[bytes]) -> list[bytes]:
    return [lines[0], lines[1].replace(b"nightly-sync", b"nightly-sink"), *lines[2:]]


DAMAGE: dict[str, tuple[Callable[[list[bytes]], list[bytes]], Callable[[int], int], str]] = {
    # name: (damage, the line named given the undamaged file's line count, words in the error)
    "a corrupted line": (
        lambda ls: [ls[0], b"#" + ls[1][1:], *ls[2:]],
        lambda n: 2, "not valid JSON",
    ),
    "an edited state (bad checksum)": (_edit_a_state, lambda n: n, "SHA-256"),
    "no final line": (lambda ls: ls[:-1], lambda n: n, "cut short"),
    "cut in the middle of a line": (
        lambda ls: [*ls[:-3], ls[-3][:30]], lambda n: n - 2, "not valid JSON (the line is cut short)",
    ),
    "a missing event (count mismatch)": (
        lambda ls: [*ls[:-2], ls[-1]], lambda n: n - 1, "holds",
    ),
    "lines out of order": (_swap, lambda n: 3, "out of order or repeated"),
    "a repeated (originator, version)": (_repeat_a_version, lambda n: n, "repeated or out of order"),
    "not an export": (lambda ls: [b"hello\n"], lambda n: 1, "not valid JSON"),
}  # fmt: skip


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_export_is_refused_naming_the_line_and_writes_nothing(
    damage: str,
    database_url: str,
    tmp_path: Path,
    open_core: Callable[..., Core],
    cli: Callable[..., int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    fill(open_core(database_url))
    export, copy_url = tmp_path / "log.jsonl", fresh_store_like(database_url, tmp_path)
    assert cli(database_url, "export", "-o", str(export)) == 0
    lines = export.read_bytes().splitlines(keepends=True)
    change, line, words = DAMAGE[damage]
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_bytes(b"".join(change(lines)))
    capsys.readouterr()

    status = cli(copy_url, "import", str(damaged))

    error = capsys.readouterr().err
    assert status == 2
    assert f"line {line(len(lines))}:" in error and words in error, error
    assert _events_in(copy_url, open_core) == 0
    assert cli(copy_url, "import", str(export)) == 0  # nothing in the way


def test_an_import_into_a_store_with_events_is_refused(
    database_url: str,
    tmp_path: Path,
    open_core: Callable[..., Core],
    cli: Callable[..., int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = open_core(database_url)
    fill(source)
    before = stored(source)
    export = tmp_path / "log.jsonl"
    assert cli(database_url, "export", "-o", str(export)) == 0
    capsys.readouterr()

    status = cli(database_url, "import", str(export))

    assert status == 2
    assert "already holds events" in capsys.readouterr().err
    assert stored(source) == before


def _events_in(url: str, open_core: Callable[..., Core], **settings: Any) -> int:
    recorder = open_core(url, **settings).jobs.recorder
    return count_events(recorder, 0, recorder.max_notification_id() or 0)
