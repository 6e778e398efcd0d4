"""`cronsource export` and `cronsource import`: the event log to and from JSON lines."""

from __future__ import annotations

import argparse
import contextlib
import functools
import gzip
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import orjson

from application.log_archive import export_lines, import_log
from domain.errors import DomainError
from domain.instants import iso_ms
from infrastructure.event_table import SqlLogLoader, count_events
from interfaces.composition import Core, Settings
from interfaces.progress import Progress

OK = 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write the event log as JSON lines to a file or stdout."""
    if args.after < 0:
        raise DomainError("--after: must be a log position (0 or more)")
    core = Core(Settings.from_env(data_dir=args.data_dir))
    try:
        recorder, mapper = core.jobs.recorder, core.jobs.mapper
        progress = Progress("exporting", 0)
        lines = export_lines(
            recorder, mapper, functools.partial(count_events, recorder), after=args.after,
            plain=args.plain, exported_at=iso_ms(datetime.now(UTC)) or "",
            progress=progress.update,
        )  # fmt: skip
        with _output(args.output) as out:
            last = b""
            for line in lines:
                out.write(line)
                last = line
        progress.finish()
    finally:
        core.close()
    trailer = orjson.loads(last)
    where = "stdout" if args.output == "-" else args.output
    report = sys.stderr if args.output == "-" else sys.stdout  # stdout may carry the export
    report.write(
        f"exported {trailer['count']} events after position {args.after} to {where} "
        f"(SHA-256 {trailer['sha256']})\n"
    )
    if core.jobs.mapper.cipher is not None and args.plain:
        report.write("the export holds the states decrypted: keep it as safe as the key\n")
    return OK


def cmd_import(args: argparse.Namespace) -> int:
    """Load an export into an empty store, then rebuild the read models from it."""
    core = Core(Settings.from_env(data_dir=args.data_dir))
    try:
        progress = Progress("importing", 0)
        with _input(args.file) as lines:
            imported = import_log(
                lines, core.jobs.mapper, SqlLogLoader(core.jobs.recorder), progress.update
            )
        progress.finish()
        rebuild = Progress("rebuilding the read models", imported.head, "log positions")
        core.projections.rebuild_all(progress=rebuild.update)
        rebuild.finish()
        resumed = core.deliveries.start_all_at(imported.head)
    finally:
        core.close()
    sys.stdout.write(
        f"imported {imported.count} events (up to position {imported.head}); read models rebuilt\n"
    )
    if imported.encoding == "json" and core.jobs.mapper.cipher is not None:
        sys.stdout.write(
            "the events were encrypted with CRONSOURCE_CIPHER_KEY as they were stored\n"
        )
    if resumed:
        sys.stdout.write(
            f"{resumed} webhook subscription(s) deliver from position {imported.head + 1} on "
            "(what the old store had not delivered yet is not sent: POST "
            "/webhooks/{id}/redeliver with after/until sends a range)\n"
        )
    return OK


@contextlib.contextmanager
def _output(name: str) -> Iterator[IO[bytes]]:
    """stdout, or a file written beside its name and renamed when complete (gzip for .gz),
    so an export that fails leaves no file that looks whole."""
    if name == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    path = Path(name)
    partial = path.with_name(path.name + ".partial")
    try:
        with _open(partial, "wb") as out:
            yield out
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


@contextlib.contextmanager
def _input(name: str) -> Iterator[IO[bytes]]:
    if name == "-":
        yield sys.stdin.buffer
        return
    try:
        with _open(Path(name), "rb") as f:
            yield f
    except FileNotFoundError:
        raise DomainError(f"import: {name}: no such file") from None


def _open(path: Path, mode: str) -> IO[bytes]:
    if path.name.endswith(".gz") or path.name.endswith(".gz.partial"):
        return gzip.open(path, mode)  # type: ignore[return-value]
    return path.open(mode)


def add_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    """The `export` and `import` commands."""
    export = sub.add_parser(
        "export", parents=[common], help="write the event log as JSON lines (a backup)"
    )
    export.add_argument(
        "-o", "--output", default="-",
        help="a file (.gz: compressed), or - for stdout (default)",
    )  # fmt: skip
    export.add_argument(
        "--after", type=int, default=0,
        help="only events after this log position (default 0: the whole log)",
    )  # fmt: skip
    export.add_argument(
        "--plain", action="store_true",
        help="with CRONSOURCE_CIPHER_KEY set: write decrypted states, not the stored bytes",
    )  # fmt: skip
    export.set_defaults(run=cmd_export)

    load = sub.add_parser(
        "import", parents=[common],
        help="load an export into an empty store and rebuild the read models",
    )  # fmt: skip
    load.add_argument("file", help="an export (.gz: compressed), or - for stdin")
    load.set_defaults(run=cmd_import)
