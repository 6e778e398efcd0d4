"""Bootstrap folders: one sub-folder per application, each with its `jobs.json`."""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from application.bootstrap import BootstrapSummary, listing_problems, sync
from application.jobs import Jobs
from application.queries import Queries
from domain.errors import InvalidField
from domain.job_definition import application_id

JOBS_FILE = "jobs.json"


@dataclass(frozen=True, slots=True)
class FileProblem:
    """Why one application's `jobs.json` cannot be synced."""

    application: str
    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class BootstrapSet:
    """The job lists read from a bootstrap folder, and the files that could not be used."""

    applications: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    problems: list[FileProblem] = field(default_factory=list)

    @property
    def not_synced(self) -> dict[str, list[str]]:
        """Application → the problems of its file (such an application is not synced)."""
        out: dict[str, list[str]] = {}
        for problem in self.problems:
            out.setdefault(problem.application, []).append(str(problem))
        return out


def read_bootstrap_dir(root: Path) -> BootstrapSet:
    """Each sub-folder of `root` holding a `jobs.json` is an application named by the folder.

    A broken file is reported and its application left out, so it is not synced at all
    (a typo must not delete its jobs); the other applications are read as usual.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(errno.ENOENT, "bootstrap folder not found", str(root))
    if not root.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "bootstrap path is not a folder", str(root))
    applications: dict[str, list[dict[str, Any]]] = {}
    problems: list[FileProblem] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        path = folder / JOBS_FILE
        if not path.is_file():
            continue  # a folder for other bootstrap resources (roles, modules, ...)
        docs, reasons = _read_jobs_file(folder.name, path)
        if reasons:
            problems.extend(FileProblem(folder.name, path, r) for r in reasons)
        else:
            applications[folder.name] = docs
    return BootstrapSet(applications, problems)


def _read_jobs_file(app: str, path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The file's job documents, or why they cannot be used."""
    try:
        application_id(app)
    except InvalidField as e:
        return [], [f"folder name {app!r} is not a valid application id: {e.reason}"]
    try:
        data = orjson.loads(path.read_bytes())
    except OSError as e:
        return [], [f"cannot be read: {e.strerror or e}"]
    except orjson.JSONDecodeError as e:
        return [], [f"not valid JSON: {e}"]
    return data, listing_problems(data)


def bootstrap_from_dir(
    jobs: Jobs,
    queries: Queries,
    wait: Callable[[int], object],
    root: Path,
    *,
    tenant: str = "default",
    owner: str = "bootstrap",
) -> BootstrapSummary:
    """Read a bootstrap folder and sync it; broken files are named in the summary's `not_synced`."""
    found = read_bootstrap_dir(root)
    return sync(
        jobs,
        queries,
        wait,
        found.applications,
        tenant=tenant,
        owner=owner,
        not_synced=found.not_synced,
    )
