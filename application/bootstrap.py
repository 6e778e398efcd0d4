"""Bootstrap sync: make each application's jobs match its `jobs.json`, touching owned jobs only.

Ownership follows the seed: a job is the bootstrap's while both `createdBy` and `updatedBy`
are its identity (`owner`, the seed's `scopedTo`). For each application:

1. listed, not stored: create it (by the owner);
2. listed, stored, owned: update it to match the list (nothing recorded when nothing changed);
3. listed, created by the owner but since changed by someone else: skip, log a WARNING;
4. listed, created by another source: skip (DEBUG log);
5. not listed, stored, owned: delete it;
6. not listed, not owned: leave it alone.

Ownership is judged on the job aggregate, not the read model: the log is the authority, and
the aggregate holds secrets in clear, so a changed token in the list is seen as a change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from application.jobs import Jobs
from application.queries import Queries
from domain.errors import DomainError, InvalidField, JobDeleted, JobNotFound
from domain.job import Job
from domain.job_definition import application_id, parse_new_job

log = logging.getLogger("cronsource.bootstrap")

_PAGE = 500


def listing_problems(docs: object) -> list[str]:
    """What makes a list of job documents unusable as a whole (empty when it is usable).

    Each job needs a name to be matched with the store, and a name listed twice would be
    synced twice; a list with such a problem is not synced at all, so that no stored job is
    deleted for a typo.
    """
    if not isinstance(docs, list):
        return [f"must be a JSON array of job objects, not {_json_type(docs)}"]
    problems: list[str] = []
    seen: set[str] = set()
    for index, doc in enumerate(docs):
        if not isinstance(doc, Mapping):
            problems.append(f"element {index}: must be a job object, not {_json_type(doc)}")
            continue
        name = doc.get("name")
        if not isinstance(name, str) or not name:
            problems.append(f"element {index}: has no name (a string)")
        elif name in seen:
            problems.append(f"element {index}: job name {name!r} is listed twice")
        else:
            seen.add(name)
    return problems


def _json_type(value: object) -> str:
    kinds = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    for kind, shown in kinds.items():
        if isinstance(value, kind):
            return shown
    return "a number" if isinstance(value, int | float) else type(value).__name__


@dataclass
class ApplicationSync:
    """What one application's sync did, as job names per outcome."""

    application: str
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped_modified: list[str] = field(default_factory=list)
    skipped_foreign: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    #: job name → why it was not synced (its document is invalid, or a write was refused)
    invalid: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        parts = [
            f"{len(self.created)} created",
            f"{len(self.updated)} updated",
            f"{len(self.deleted)} deleted",
        ]
        if self.unchanged:
            parts.append(f"{len(self.unchanged)} unchanged")
        if self.skipped_modified:
            names = ", ".join(self.skipped_modified)
            parts.append(f"{len(self.skipped_modified)} skipped (manually modified): {names}")
        if self.skipped_foreign:
            names = ", ".join(self.skipped_foreign)
            parts.append(f"{len(self.skipped_foreign)} skipped (other source): {names}")
        if self.invalid:
            names = ", ".join(f"{n} ({reason})" for n, reason in self.invalid.items())
            parts.append(f"{len(self.invalid)} invalid: {names}")
        return f"app {self.application}: " + ", ".join(parts)


@dataclass(frozen=True)
class BootstrapSummary:
    """What a sync did per application, and which applications it could not sync at all."""

    applications: dict[str, ApplicationSync]
    #: application → why its list was not synced (e.g. its file is broken)
    not_synced: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether every application and every job was synced."""
        return not self.not_synced and not any(a.invalid for a in self.applications.values())

    def __getitem__(self, application: str) -> ApplicationSync:
        return self.applications[application]

    def __str__(self) -> str:
        lines = [str(a) for a in self.applications.values()]
        for application, reasons in self.not_synced.items():
            lines.append(f"app {application}: not synced: {'; '.join(reasons)}")
        return "\n".join(lines)


def sync(
    jobs: Jobs,
    queries: Queries,
    wait: Callable[[int], object],
    applications: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    tenant: str = "default",
    owner: str = "bootstrap",
    not_synced: Mapping[str, Sequence[str]] | None = None,
) -> BootstrapSummary:
    """Make each application's jobs match its list of job documents (rules: module docstring).

    `wait(position)` brings the read model up to a log position; `not_synced` carries the
    applications a reader could not read, so the summary names them too.
    """
    refused = {app: list(reasons) for app, reasons in (not_synced or {}).items()}
    wait(jobs.recorder.max_notification_id() or 0)  # the listing must see every earlier write
    results: dict[str, ApplicationSync] = {}
    last = 0
    for app, docs in applications.items():
        problems = _application_problems(app) + listing_problems(docs)
        if problems:
            refused[app] = problems
            continue
        run = _ApplicationRun(jobs, queries, tenant, owner, app)
        results[app] = run.sync(docs)
        last = max(last, run.position)
    for app, reasons in refused.items():
        log.warning("application %s not synced: %s", app, "; ".join(reasons))
    if last:
        wait(last)  # the caller reads its own writes
    return BootstrapSummary(results, refused)


def _application_problems(app: str) -> list[str]:
    try:
        application_id(app)
    except InvalidField as e:
        return [f"not a valid application id: {e.reason}"]
    return []


class _ApplicationRun:
    """One application's sync: the listed jobs first, then the owned ones no longer listed."""

    def __init__(self, jobs: Jobs, queries: Queries, tenant: str, owner: str, app: str) -> None:
        self.jobs, self.queries = jobs, queries
        self.tenant, self.owner, self.app = tenant, owner, app
        self.result = ApplicationSync(app)
        self.position = 0

    def sync(self, docs: Sequence[Mapping[str, Any]]) -> ApplicationSync:
        stored = self._stored_ids()
        for doc in docs:
            name = doc["name"]
            try:
                self._sync_listed(name, doc, stored.get(name))
            except DomainError as e:  # one bad job must not stop the others
                self.result.invalid[name] = str(e)
                log.warning("job %s of application %s not synced: %s", name, self.app, e)
        listed = {doc["name"] for doc in docs}
        for name, job_id in stored.items():
            if name not in listed:
                try:
                    self._sync_unlisted(name, job_id)
                except DomainError as e:
                    self.result.invalid[name] = str(e)
                    log.warning("job %s of application %s not deleted: %s", name, self.app, e)
        return self.result

    def _stored_ids(self) -> dict[str, str]:
        """Job name → id of the application's live jobs, as the read model lists them."""
        ids: dict[str, str] = {}
        offset = 0
        while True:
            page = self.queries.list_jobs(
                self.tenant, offset=offset, limit=_PAGE, application_id=self.app
            )
            ids.update({row["name"]: row["id"] for row in page.items})
            offset += len(page.items)
            if not page.items or offset >= page.total:
                return ids

    def _load(self, job_id: str | None) -> Job | None:
        """The job as the log has it; one the read model still shows may be gone by now."""
        if job_id is None:
            return None
        try:
            return self.jobs.get_job(self.tenant, job_id)
        except (JobNotFound, JobDeleted):
            return None

    def _sync_listed(self, name: str, doc: Mapping[str, Any], job_id: str | None) -> None:
        if str(doc.get("applicationId", self.app)) != self.app:
            raise InvalidField(
                "applicationId", f"must be omitted or {self.app!r}: the folder names it"
            )
        doc = {**doc, "applicationId": self.app}
        definition, enabled, _ = parse_new_job(doc)  # a bad document is reported, even if skipped
        job = self._load(job_id)
        if job is None:
            names = {"name": self.app, "displayName": self.app}
            written = self.jobs.create_job(self.tenant, doc, self.owner, application_names=names)
            self._wrote(written.position)
            self.result.created.append(name)
            log.info("job %s of application %s created", name, self.app)
        elif job.created_by != self.owner:
            self.result.skipped_foreign.append(name)
            log.debug(
                "job %s of application %s skipped: created by %s, not %s",
                name, self.app, job.created_by, self.owner,
            )  # fmt: skip
        elif job.updated_by != self.owner:
            self.result.skipped_modified.append(name)
            log.warning(
                "job %s of application %s skipped: manually modified by %s since %s created "
                "it; bootstrap no longer overwrites it",
                name, self.app, job.updated_by, self.owner, extra={"job_id": job.id},
            )  # fmt: skip
        else:
            # the whole definition, defaults included: a field dropped from the list resets;
            # the expected version refuses an edit made since the ownership check
            written = self.jobs.update_job(
                self.tenant,
                job.id,
                {**definition, "enabled": enabled},
                self.owner,
                expected_version=job.version,
            )
            if written.version == job.version:
                self.result.unchanged.append(name)
            else:
                self._wrote(written.position)
                self.result.updated.append(name)
                log.info("job %s of application %s updated", name, self.app)

    def _sync_unlisted(self, name: str, job_id: str) -> None:
        job = self._load(job_id)
        if job is None or job.created_by != self.owner or job.updated_by != self.owner:
            return  # not the bootstrap's to delete
        self._wrote(self.jobs.delete_job(self.tenant, job.id, self.owner).position)
        self.result.deleted.append(name)
        log.info("job %s of application %s deleted: no longer listed", name, self.app)

    def _wrote(self, position: int) -> None:
        self.position = max(self.position, position)
