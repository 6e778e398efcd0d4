"""The SQLite store's disk full or turned read-only, for real: a small tmpfs mounted for the
test, an ext4 image the kernel remounts read-only. Writes through the API are refused with a
503 problem (no stack), nothing is half-written (the log's transactions are whole and the
read models agree with it), and writes succeed again once there is space, without a restart.

Mounting needs root; without it (or where the kernel refuses) these tests skip, saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from application.verify import verify_projection
from infrastructure.auth import AuthSettings, TokenVerifier, mint_token
from infrastructure.sql import SQLiteDatabase
from interfaces.composition import Core, Settings
from interfaces.http.app import PREFIX, build_app
from tests.integration.test_cli import cronsource
from tests.integration.test_job_lifecycle import nightly

SECRET = "faults-secret-" + "x" * 40


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def _unmount(where: Path) -> None:
    if _run("umount", str(where)).returncode != 0:
        _run("umount", "-l", str(where))  # something still holds it: detach it anyway


@contextlib.contextmanager
def _mounted(where: Path, *mount_args: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system for the store needs root")
    where.mkdir(parents=True, exist_ok=True)
    result = _run("mount", *mount_args, str(where))
    if result.returncode != 0:
        pytest.skip(f"cannot mount a file system here: {result.stderr.strip()}")
    try:
        yield where
    finally:
        _unmount(where)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of this test's own."""
    with _mounted(tmp_path / "disk", "-t", "tmpfs", "-o", "size=4m", "tmpfs") as where:
        yield where


@contextlib.contextmanager
def full(disk: Path) -> Iterator[None]:
    """`disk` filled to the last byte; the space comes back on leaving."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        with contextlib.suppress(OSError):  # written until the disk is full
            while True:
                os.write(fd, b"\0" * 65536)
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 512)
    finally:
        os.close(fd)
    try:
        yield
    finally:
        filler.unlink()


class Api:
    """The HTTP API of a core whose projections follow the log in threads, as `serve` runs."""

    def __init__(self, core: Core) -> None:
        auth = AuthSettings(secret=SECRET)
        self.app = build_app(core, TokenVerifier(auth))
        token = mint_token(auth, SECRET, subject="ana", tenant="acme")
        self.headers = {"Authorization": f"Bearer {token}"}

    def __call__(self, method: str, path: str, body: Any = None) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return await client.request(method, PREFIX + path, json=body, headers=self.headers)

        return asyncio.run(call())


class Serving:
    """Cores serving the API in this process; each closed once, by the test or after it."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir, self.cores = data_dir, list[Core]()

    def start(self, database_url: str) -> tuple[Core, Api]:
        core = Core(Settings(data_dir=self.data_dir, database_url=database_url, poll_seconds=0.1))
        core.start()
        self.cores.append(core)
        return core, Api(core)

    def stop(self, core: Core) -> None:
        self.cores.remove(core)
        core.close()


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[Serving]:
    serving = Serving(tmp_path)
    yield serving
    for core in list(serving.cores):
        serving.stop(core)


def differences(core: Core, scratch: Path) -> list[str]:
    """Where the read models disagree with the log, and aggregates written in part: a job
    without its name claim (they are recorded in one transaction)."""
    found = []
    scratch.mkdir(exist_ok=True)
    db = SQLiteDatabase(scratch / f"verify-{time.monotonic_ns()}.db")
    views = core.scratch_views(db)
    for runner in core.projections.runners.values():
        _, diffs = verify_projection(
            core.jobs.recorder, core.jobs.mapper, runner.projection, runner.store,
            views[runner.name],
        )  # fmt: skip
        found += [str(d) for d in diffs]
    db.close()
    topics = [n.topic for n in core.jobs.recorder.select_notifications(start=1, limit=10_000)]
    if topics.count("domain.job:Job.Created") != topics.count("domain.job:JobName.Claimed"):
        found.append("a job was stored without its name claim")
    return found


def no_stack_logged(caplog: pytest.LogCaptureFixture) -> bool:
    return not [r for r in caplog.records if r.name == "cronsource.http" and r.exc_info]


def test_a_full_disk_refuses_writes_with_503_and_they_succeed_again_when_space_returns(
    small_disk: Path, tmp_path: Path, serving: Serving,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    url = f"sqlite:///{(small_disk / 'cronsource.db').as_posix()}"
    core, api = serving.start(url)
    assert api("POST", "/jobs", nightly("before")).status_code == 201

    with full(small_disk):
        for i in range(50):  # the log's write-ahead file may still have room for a few
            refused = api("POST", "/jobs", nightly(f"while-full-{i}"))
            if refused.status_code != 201:
                break
        listed = api("GET", "/jobs")
        found = differences(core, tmp_path / "scratch")
        command = cronsource(
            "jobs", "add", "-", database_url=url, stdin=orjson.dumps(nightly("cli")).decode()
        )

    assert refused.status_code == 503, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert "disk is full" in refused.json()["detail"]
    assert refused.headers["retry-after"] == "10"
    assert listed.status_code == 200
    assert found == []
    assert command.returncode == 3, command.stderr
    assert "disk is full" in command.stderr and "Traceback" not in command.stderr
    assert no_stack_logged(caplog)
    after = api("POST", "/jobs", nightly("after"))  # the same process: no restart
    assert after.status_code == 201, after.text
    assert api("GET", f"/jobs/{after.json()['id']}").json()["name"] == "after"
    serving.stop(core)
    verify = cronsource("replay", "--verify", database_url=url)
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.slow
def test_a_write_whose_read_model_cannot_follow_is_answered_from_the_log(
    small_disk: Path, tmp_path: Path, serving: Serving
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    # the log on a disk with room, the read models (a file of their own) on the small one
    (store / "cronsource-views.db").symlink_to(small_disk / "views.db")
    core, api = serving.start(f"sqlite:///{(store / 'cronsource.db').as_posix()}")
    assert api("POST", "/jobs", nightly("before")).status_code == 201

    with full(small_disk):
        created = api("POST", "/jobs", nightly("while-views-full"))  # waits 5 s for the views
        assert core.projections["jobs"].position < core.jobs.recorder.max_notification_id()

    assert created.status_code == 201, created.text
    assert created.json()["name"] == "while-views-full"
    assert created.headers["etag"] == '"1"'
    head = core.jobs.recorder.max_notification_id()
    assert core.projections.wait_for(head, timeout=60)  # they follow once there is room
    assert api("GET", f"/jobs/{created.json()['id']}").status_code == 200
    assert differences(core, tmp_path / "scratch") == []


@pytest.fixture
def ext4_disk(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A 32 MiB ext4 image, mounted so that the kernel remounts it read-only on an error
    (as after a failing disk's I/O errors); yields the mount point and the image."""
    if not (shutil.which("mkfs.ext4") and shutil.which("e2fsck")):
        pytest.skip("needs mkfs.ext4 and e2fsck (e2fsprogs)")
    image = tmp_path / "ext4.img"
    with image.open("wb") as f:
        f.truncate(32 * 1024 * 1024)
    made = _run("mkfs.ext4", "-q", "-F", str(image))
    if made.returncode != 0:
        pytest.skip(f"mkfs.ext4 failed: {made.stderr.strip()}")
    with _mounted(tmp_path / "ext4", "-o", "loop,errors=remount-ro", str(image)) as where:
        yield where, image


def remount_read_only_on_error(where: Path) -> None:
    """What the kernel does when the disk under an ext4 file system fails (its test knob)."""
    device = Path(_run("findmnt", "-no", "SOURCE", str(where)).stdout.strip()).name
    knob = Path("/sys/fs/ext4") / device / "trigger_fs_error"
    try:
        knob.write_text("cronsource test: the disk turns read-only\n")
    except OSError as e:
        pytest.skip(f"cannot make the kernel remount the file system read-only: {e}")
    options = _run("findmnt", "-no", "OPTIONS", str(where)).stdout
    if "ro" not in options.split(",") and "emergency_ro" not in options:
        pytest.skip(f"the file system stayed writable ({options.strip()})")


def test_a_file_system_turned_read_only_refuses_writes_with_503_and_keeps_the_log_whole(
    ext4_disk: tuple[Path, Path], tmp_path: Path, serving: Serving,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    where, image = ext4_disk
    url = f"sqlite:///{(where / 'cronsource.db').as_posix()}"
    core, api = serving.start(url)
    assert api("POST", "/jobs", nightly("before")).status_code == 201

    remount_read_only_on_error(where)
    refused = api("POST", "/jobs", nightly("while-read-only"))

    assert refused.status_code == 503, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert "I/O error" in refused.json()["detail"]
    assert api("GET", "/jobs").status_code == 200
    assert differences(core, tmp_path / "scratch") == []
    assert no_stack_logged(caplog)
    # repaired as an operator would: stop, check the file system, mount it again, start
    serving.stop(core)
    _unmount(where)
    _run("e2fsck", "-fy", str(image))
    assert _run("mount", "-o", "loop", str(image), str(where)).returncode == 0
    verify = cronsource("replay", "--verify", database_url=url)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    _, api = serving.start(url)
    assert api("POST", "/jobs", nightly("after")).status_code == 201
    assert [j["name"] for j in api("GET", "/jobs").json()] == ["before", "after"]


@pytest.fixture(autouse=True)
def _warnings_are_enough(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
