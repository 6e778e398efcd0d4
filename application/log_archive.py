"""The event log as JSON lines, to back it up or move it to another store.

An export is a header line (format, version, how many events, from which position, how the
states are written), one line per stored event in log order, and a final line with the
count again and the SHA-256 of every line before it, so a damaged, cut or edited file is
found out. An import reads it back into an empty store only if every line checks out: it
is written in one transaction, committed after the final line is checked, so a bad file
writes nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import ApplicationRecorder, Mapper, Notification
from eventsourcing.utils import TopicError

from application.ports import LogLoader
from domain.errors import DomainError

FORMAT = "cronsource-events"
VERSION = 1
JSON, ENCRYPTED = "json", "encrypted"  # how event states are written
BATCH = 1000

Progress = Callable[[int, int], None]  # told how many events are done, and of how many


class InvalidExport(DomainError):
    """An export that cannot be imported; the message names the line and what is wrong."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line


class StoreNotEmpty(DomainError):
    """An import was aimed at a store that already holds events."""


@dataclass(frozen=True, slots=True)
class Imported:
    """What an import wrote: how many events, and the last log position."""

    count: int
    head: int
    encoding: str


def export_lines(
    recorder: ApplicationRecorder,
    mapper: Mapper[Any],
    count_events: Callable[[int, int], int],
    *,
    after: int = 0,
    plain: bool = False,
    exported_at: str = "",
    progress: Progress | None = None,
) -> Iterator[bytes]:
    """The log after position `after`, up to its head when the export starts, as lines.

    States are the stored JSON, or, when the store is encrypted, the stored bytes in
    base64 (`plain` decrypts them with the configured key instead).
    """
    head = recorder.max_notification_id() or 0
    encoding = ENCRYPTED if mapper.cipher is not None and not plain else JSON
    digest = hashlib.sha256()
    header = {
        "format": FORMAT, "version": VERSION, "count": count_events(after, head),
        "after": after, "head": head, "encoding": encoding, "exportedAt": exported_at,
    }  # fmt: skip
    line = orjson.dumps(header) + b"\n"
    digest.update(line)
    yield line
    count, position = 0, after
    while position < head:
        notifications = recorder.select_notifications(
            start=position, limit=BATCH, stop=head, inclusive_of_start=False
        )
        if not notifications:
            break
        for n in notifications:
            event: dict[str, Any] = {
                "position": n.id, "originatorId": str(n.originator_id),
                "version": n.originator_version, "topic": n.topic,
            }  # fmt: skip
            if encoding == JSON:  # the transcoder's JSON as it is
                event["state"] = orjson.Fragment(_plain(mapper, n.state))
            else:
                event["stateBase64"] = base64.b64encode(n.state).decode()
            line = orjson.dumps(event) + b"\n"
            digest.update(line)
            yield line
        count += len(notifications)
        position = notifications[-1].id
        if progress is not None:
            progress(count, header["count"])
    yield orjson.dumps({"end": FORMAT, "count": count, "sha256": digest.hexdigest()}) + b"\n"


def _plain(mapper: Mapper[Any], state: bytes) -> bytes:
    if mapper.cipher is not None:
        state = mapper.cipher.decrypt(state)
    if mapper.compressor is not None:
        state = mapper.compressor.decompress(state)
    return state


def import_log(
    lines: Iterable[bytes],
    mapper: Mapper[Any],
    loader: LogLoader,
    progress: Progress | None = None,
) -> Imported:
    """Write a whole-log export into an empty store, or nothing if any line is wrong."""
    reader = _Reader(mapper, progress)
    loader.load(reader.batches(lines))
    return Imported(reader.count, reader.position, reader.encoding)


class _Reader:
    """Checks an export line by line and hands its events over in batches; raises
    `InvalidExport` naming the first bad line (the loader then rolls back)."""

    def __init__(self, mapper: Mapper[Any], progress: Progress | None) -> None:
        self.mapper, self.progress = mapper, progress
        self.digest = hashlib.sha256()
        self.count = self.position = 0
        self.declared = 0
        self.encoding = JSON
        self.versions: dict[UUID, int] = {}  # each aggregate's last version so far

    def batches(self, lines: Iterable[bytes]) -> Iterator[Sequence[Notification]]:
        number, batch, ended = 0, [], False
        for number, raw in enumerate(lines, start=1):
            if ended:
                raise InvalidExport(number, "a line after the final line")
            doc = _json(raw, number)
            if number == 1:
                self._header(doc, number)
            elif "end" in doc:
                self._trailer(doc, number)
                ended = True
                continue
            else:
                batch.append(self._event(doc, number))
                if len(batch) >= BATCH:
                    yield batch
                    batch = []
                    if self.progress is not None:
                        self.progress(self.count, self.declared)
            self.digest.update(raw)
        if number == 0:
            raise InvalidExport(1, "the file is empty")
        if not ended:
            raise InvalidExport(
                number + 1,
                f"missing: the file ends after line {number} without its final line (count "
                "and checksum), so it was cut short",
            )
        if batch:
            yield batch

    def _header(self, doc: dict[str, Any], number: int) -> None:
        if doc.get("format") != FORMAT:
            raise InvalidExport(number, f'not a cronsource export (no "format": "{FORMAT}")')
        if doc.get("version") != VERSION:
            raise InvalidExport(
                number, f"format version {doc.get('version')!r}: this release reads {VERSION}"
            )
        if doc.get("after") != 0:
            raise InvalidExport(
                number,
                f"the export starts after position {doc.get('after')!r}: only a whole-log "
                "export (without --after) can be imported into an empty store",
            )
        if doc.get("encoding") not in (JSON, ENCRYPTED):
            raise InvalidExport(number, f"unknown encoding {doc.get('encoding')!r}")
        if not _is_count(doc.get("count")):
            raise InvalidExport(number, "count: must be an integer ≥ 0")
        self.encoding, self.declared = doc["encoding"], doc["count"]
        if self.encoding == ENCRYPTED and self.mapper.cipher is None:
            raise InvalidExport(
                number,
                "the events are encrypted: set CRONSOURCE_CIPHER_KEY to the key they were "
                "written with (or export them with --plain)",
            )

    def _event(self, doc: dict[str, Any], number: int) -> Notification:
        state_key = "state" if self.encoding == JSON else "stateBase64"
        expected = {"position", "originatorId", "version", "topic", state_key}
        if set(doc) != expected:
            raise InvalidExport(
                number, f"an event line has the fields {', '.join(sorted(expected))}"
            )
        position, version, topic = doc["position"], doc["version"], doc["topic"]
        if not _is_count(position) or position <= self.position:
            raise InvalidExport(
                number,
                f"position {position!r} does not follow position {self.position}: the lines "
                "are out of order or repeated",
            )
        try:
            originator = UUID(doc["originatorId"])
        except (TypeError, ValueError, AttributeError):
            raise InvalidExport(number, "originatorId: not a UUID") from None
        last = self.versions.get(originator, 0)
        if not _is_count(version) or version != last + 1:
            reason = (
                "repeated or out of order" if _is_count(version) and version <= last
                else "an event before it is missing"
            )  # fmt: skip
            raise InvalidExport(
                number,
                f"version {version!r} of {originator} follows version {last}: {reason}",
            )
        if not isinstance(topic, str):
            raise InvalidExport(number, "topic: must be a string")
        notification = Notification(
            id=position, originator_id=originator, originator_version=version,
            topic=topic, state=self._state(doc[state_key], number),
        )  # fmt: skip
        try:  # the event must be readable by this release, with this store's key
            self.mapper.to_domain_event(notification)
        except TopicError:
            raise InvalidExport(number, f"unknown topic {topic!r}") from None
        except ValueError as e:
            hint = " (is CRONSOURCE_CIPHER_KEY the key it was written with?)"
            hint = hint if self.encoding == ENCRYPTED else ""
            raise InvalidExport(number, f"the event cannot be read: {_short(e)}{hint}") from None
        self.versions[originator] = version
        self.position = position
        self.count += 1
        return notification

    def _state(self, value: Any, number: int) -> bytes:
        """The bytes to store: the JSON as the transcoder wrote it (encrypted if this store
        is), or the stored bytes as they were exported."""
        if self.encoding == ENCRYPTED:
            try:
                return base64.b64decode(value, validate=True)
            except (TypeError, ValueError, binascii.Error):
                raise InvalidExport(number, "stateBase64: not base64") from None
        if not isinstance(value, dict):
            raise InvalidExport(number, "state: must be a JSON object")
        state = orjson.dumps(value)
        if self.mapper.compressor is not None:
            state = self.mapper.compressor.compress(state)
        if self.mapper.cipher is not None:
            state = self.mapper.cipher.encrypt(state)
        return state

    def _trailer(self, doc: dict[str, Any], number: int) -> None:
        if doc.get("end") != FORMAT or not _is_count(doc.get("count")):
            raise InvalidExport(number, "the final line is damaged")
        if doc["count"] != self.count or self.declared != self.count:
            raise InvalidExport(
                number,
                f"the file holds {self.count} events; its header says {self.declared} and "
                f"its final line {doc['count']}",
            )
        if doc.get("sha256") != self.digest.hexdigest():
            raise InvalidExport(
                number,
                "the SHA-256 of the lines before the final line does not match it: the file "
                "was changed or damaged",
            )


def _json(raw: bytes, number: int) -> dict[str, Any]:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        what = "cut short" if not raw.endswith(b"\n") else "damaged"
        raise InvalidExport(number, f"not valid JSON (the line is {what})") from None
    if not isinstance(doc, dict):
        raise InvalidExport(number, "not a JSON object")
    return doc


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _short(error: Exception) -> str:
    """The reason, without the library's repetition of the event's ids."""
    cause = error.__cause__ or error
    return f"{type(cause).__name__}: {cause}"[:200]
