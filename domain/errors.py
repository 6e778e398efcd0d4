"""The domain's refusals: each message is safe to show a client and names what was wrong."""

from __future__ import annotations

from collections.abc import Iterable


class DomainError(Exception):
    """A request the domain refuses; the message is safe to show a client."""


class InvalidField(DomainError):
    """One field holds a value the domain cannot accept."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class InvalidFields(DomainError):
    """Several fields are wrong at once; each is named, so a client can fix all in one go."""

    def __init__(self, errors: Iterable[InvalidField]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors))

    @staticmethod
    def collect(errors: list[InvalidField]) -> None:
        """Raise the single error, or all of them together, if there are any."""
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise InvalidFields(errors)


class JobNotFound(DomainError):
    """No job with this id exists for the caller."""

    def __init__(self, job_id: object) -> None:
        super().__init__(f"job {job_id} not found")
        self.job_id = job_id


class JobDeleted(DomainError):
    """The job was deleted and accepts no further command."""

    def __init__(self, job_id: object) -> None:
        super().__init__(f"job {job_id} is deleted")
        self.job_id = job_id


class NameTaken(DomainError):
    """Another job of the same tenant and application already has this name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"name: a job named {name!r} already exists")
        self.field = "name"
        self.name = name


class VersionConflict(DomainError):
    """The caller expected another version of the aggregate than the stored one."""

    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(f"version {expected} expected, but the job is at version {actual}")
        self.expected = expected
        self.actual = actual


class ExecutionNotFound(DomainError):
    """No execution with this id exists for the caller."""

    def __init__(self, execution_id: object) -> None:
        super().__init__(f"execution {execution_id} not found")
        self.execution_id = execution_id


class ExecutionAlreadyRecorded(DomainError):
    """Another engine recorded this scheduled fire first."""

    def __init__(self, execution_id: object) -> None:
        super().__init__(f"execution {execution_id} was already recorded")
        self.execution_id = execution_id


class IllegalTransition(DomainError):
    """An execution was asked to move to a status its current status does not allow."""


class UrlBlocked(DomainError):
    """An outgoing call would reach an address the URL guard does not admit."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason
