"""The `cronsource` command: each subcommand has --help, clear errors and exit codes.

Exit codes: 0 success; 1 `replay --verify` found differences; 2 bad usage or input;
3 the store could not be used.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from application.audit import job_history
from application.projection_runner import ProjectionRunner
from application.slot_ledger import slot_ledger
from application.verify import verify_projection
from domain.errors import DomainError
from domain.instants import iso_ms, parse_instant
from domain.schedule import Schedule
from infrastructure.logs import FORMATS, LEVELS, configure_logging
from infrastructure.sql import PostgresDatabase, SQLiteDatabase
from infrastructure.store import StoreConfigError
from infrastructure.store_errors import STORE_ERRORS, unavailable
from interfaces import doctor, log_transfer
from interfaces.composition import Core, Settings, engine_enabled
from interfaces.progress import Progress

OK, DIFFERENT, USAGE, STORE = 0, 1, 2, 3
MAX_PREVIEW = 1000


def _print_json(value: object) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def cmd_cron(args: argparse.Namespace) -> int:
    """Print the next fire instants of a pattern."""
    if not 1 <= args.next <= MAX_PREVIEW:
        raise DomainError(f"--next: must be between 1 and {MAX_PREVIEW}")
    schedule = Schedule(args.pattern, args.tz)
    after = parse_instant(args.after, "--after") if args.after else datetime.now(UTC)
    zone = ZoneInfo(schedule.timezone)
    for instant in schedule.next_n(after, args.next):
        line = iso_ms(instant) or ""
        if schedule.timezone != "UTC":
            line += f"  ({instant.astimezone(zone).isoformat()} {schedule.timezone})"
        sys.stdout.write(line + "\n")
    return OK


def cmd_history(args: argparse.Namespace) -> int:
    """Print a job's events, oldest first."""
    core = Core(Settings.from_env(data_dir=args.data_dir))
    try:
        entries = job_history(core.jobs, args.tenant, args.job_id)
    finally:
        core.close()
    if args.json:
        _print_json(entries)
        return OK
    for e in entries:
        sys.stdout.write(f"v{e['version']:<4} {e['time']}  {e['type']:<36} by {e['by']}\n")
        if e["data"]:
            sys.stdout.write("      " + orjson.dumps(e["data"]).decode() + "\n")
    return OK


def cmd_replay(args: argparse.Namespace) -> int:
    """Rebuild the read models from the log, or (--verify) check them against it."""
    core = Core(Settings.from_env(data_dir=args.data_dir))
    try:
        runners: list[ProjectionRunner] = list(core.projections.runners.values())
        if not args.verify:
            progress = Progress("rebuilding the read models", 0, "log positions")
            position = core.projections.rebuild_all(progress=progress.update)
            progress.finish()
            names = ", ".join(r.name for r in runners)
            sys.stdout.write(f"{names}: rebuilt to position {position}\n")
            return OK
        core.projections.catch_up()
        with tempfile.TemporaryDirectory(prefix="cronsource-verify-") as scratch_dir:
            scratch_db = _scratch_database(core, Path(scratch_dir))
            try:
                scratch = core.scratch_views(scratch_db)
                failed = False
                for runner in runners:
                    keep = None
                    if runner.name == "executions":  # pruned rows are the retention's, not a fault
                        keep = functools.partial(
                            core.settings.retention.kept, now=datetime.now(UTC)
                        )
                    progress = Progress(f"verifying {runner.name}", 0, "log positions")
                    position, differences = verify_projection(
                        core.jobs.recorder, core.jobs.mapper, runner.projection,
                        runner.store, scratch[runner.name], keep, progress.update,
                    )  # fmt: skip
                    progress.finish()
                    for difference in differences[: args.max_differences]:
                        sys.stdout.write(f"DIFFERENT {difference}\n")
                    if len(differences) > args.max_differences:
                        sys.stdout.write(f"… and {len(differences) - args.max_differences} more\n")
                    state = "OK" if not differences else f"{len(differences)} difference(s)"
                    sys.stdout.write(f"{runner.name}: {state} at position {position}\n")
                    failed = failed or bool(differences)
            finally:
                _drop_scratch(scratch_db)
        return DIFFERENT if failed else OK
    finally:
        core.close()


def _scratch_database(core: Core, folder: Path) -> SQLiteDatabase | PostgresDatabase:
    store = core.settings.store
    if store.kind == "sqlite":
        return SQLiteDatabase(folder / "scratch-views.db")
    assert store.conninfo is not None
    return PostgresDatabase(store.conninfo, schema=f"cronsource_verify_{folder.name[-8:].lower()}")


def _drop_scratch(db: SQLiteDatabase | PostgresDatabase) -> None:
    if isinstance(db, PostgresDatabase) and db.schema:
        with db.write() as c:
            c.execute(f'DROP SCHEMA IF EXISTS "{db.schema}" CASCADE')
    db.close()


def cmd_backfill(args: argparse.Namespace) -> int:
    """Record each slot of [--from, --to) once; a running engine runs them."""
    start, end = parse_instant(args.start, "--from"), parse_instant(args.end, "--to")
    core = Core(Settings.from_env(data_dir=args.data_dir))
    try:
        recorded = core.jobs.backfill(args.tenant, args.job_id, start, end, by=args.by)
    finally:
        core.close()
    sys.stdout.write(
        f"{len(recorded)} slot(s) recorded for backfill (slots already run are not run again)\n"
    )
    return OK


def cmd_slots(args: argparse.Namespace) -> int:
    """What happened at each slot of a job in [--from, --to), and why."""
    start, end = parse_instant(args.start, "--from"), parse_instant(args.end, "--to")
    core = Core(Settings.from_env(data_dir=args.data_dir))
    try:
        core.projections.catch_up()
        ledger = slot_ledger(
            core.jobs, core.executions_view, core.skips_view, args.tenant, args.job_id,
            start, end, datetime.now(UTC),
        )  # fmt: skip
    finally:
        core.close()
    if args.json:
        _print_json(ledger)
        return OK
    for entry in ledger:
        why = (
            entry.get("reason")
            or (entry.get("error") or {}).get("code")
            or entry.get("trigger", "")
        )
        sys.stdout.write(f"{entry['slot']}  {entry['outcome']:<10} {why}\n")
    return OK


def cmd_jobs_add(args: argparse.Namespace) -> int:
    """Create a job from a JSON definition (the API's format)."""
    text = Path(args.file).read_text() if args.file != "-" else sys.stdin.read()
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise DomainError(f"body: not valid JSON ({e})") from None
    core = Core(Settings.from_env(data_dir=args.data_dir))
    try:
        written = core.jobs.create_job(args.tenant, doc, by=args.by)
        core.projections.wait_for(written.position)
        _print_json(core.queries.get_job(args.tenant, str(written.id)))
    finally:
        core.close()
    return OK


def cmd_jobs_list(args: argparse.Namespace) -> int:
    """List the tenant's jobs."""
    core = Core(Settings.from_env(data_dir=args.data_dir))
    try:
        core.projections.catch_up()
        page = core.queries.list_jobs(args.tenant, offset=0, limit=500)
    finally:
        core.close()
    for job in page.items:
        state = "enabled " if job["enabled"] else "disabled"
        sys.stdout.write(f"{job['id']}  {state}  {job['pattern']:<20} {job['name']}\n")
    sys.stdout.write(f"{page.total} job(s)\n")
    return OK


def _logging(default_format: str, **options: Any) -> str:
    """Logging as `CRONSOURCE_LOG_LEVEL` and `CRONSOURCE_LOG_FORMAT` say; returns the level."""
    level = os.environ.get("CRONSOURCE_LOG_LEVEL", "INFO").upper()
    fmt = os.environ.get("CRONSOURCE_LOG_FORMAT", default_format).lower()
    if level not in LEVELS:
        raise StoreConfigError(
            f"CRONSOURCE_LOG_LEVEL: {level!r} is not one of {', '.join(LEVELS)}"
        )
    if fmt not in FORMATS:
        raise StoreConfigError(f"CRONSOURCE_LOG_FORMAT: {fmt!r} is not json or text")
    configure_logging(level, fmt, **options)
    return level


def cmd_engine(args: argparse.Namespace) -> int:
    """Run the scheduling engine until SIGTERM or SIGINT (then finish within the grace)."""
    _logging("json")
    core = Core(Settings.from_env(data_dir=args.data_dir))
    try:
        core.start()
        engine = core.engine()

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, engine.stop)
            task = asyncio.create_task(engine.run())
            ready = asyncio.create_task(engine.started.wait())
            await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
            if engine.started.is_set():
                sys.stdout.write(
                    f"engine {engine.node} running with {engine.scheduled_jobs} job(s)\n"
                )
                sys.stdout.flush()
            try:
                await task
            finally:
                await engine.runner.close()

        asyncio.run(main())
    finally:
        core.close()
    return OK


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the API (and run the engine unless CRONSOURCE_ENGINE=off) until SIGTERM/SIGINT."""
    import uvicorn

    from infrastructure.auth import AuthSettings, TokenVerifier, mint_token
    from interfaces.http.app import PREFIX, begin_shutdown, build_app

    if args.port is None:  # read here, not when the parser is built: a bad value is named
        args.port = _port(os.environ.get("CRONSOURCE_PORT", "3000"))
    level = _logging("json")
    settings = Settings.from_env(data_dir=args.data_dir)
    auth, created = AuthSettings.from_env(os.environ, settings.data_dir)
    run_engine = engine_enabled(os.environ)
    core = Core(settings)
    try:
        core.start()
        _bootstrap_at_start(core)
        engine = core.engine() if run_engine else None
        app = build_app(core, TokenVerifier(auth), engine, run_engine=run_engine)
        base = f"http://{args.host}:{args.port}{PREFIX}"
        if created is not None and auth.secret:
            token = mint_token(auth, auth.secret, subject="admin", ttl_seconds=30 * 24 * 3600)
            sys.stdout.write(
                f"cronsource: generated a signing key in {created} (keep it private)\n"
                f"admin token (30 days): {token}\n"
                f"try: curl -H 'Authorization: Bearer {token}' {base}/jobs\n"
                f"admin page (signs you in): {base}/ui#token={token}\n"
            )
        else:
            sys.stdout.write("cronsource: mint a token with `cronsource token --sub NAME`\n")
            sys.stdout.write(f"cronsource: admin page on {base}/ui (sign in with a token)\n")
        mode = "API and engine" if run_engine else "API only (CRONSOURCE_ENGINE=off)"
        sys.stdout.write(f"cronsource: serving {mode} on {base}\n")
        sys.stdout.flush()
        config = uvicorn.Config(
            # uvicorn's own lines (access log included) go through our handler, as JSON too
            app, host=args.host, port=args.port, log_level=level.lower(), log_config=None,
            lifespan="on",
            timeout_graceful_shutdown=int(settings.shutdown_grace_seconds) + 5,
        )  # fmt: skip
        _stream_ending_server(config, lambda: begin_shutdown(app)).run()
    finally:
        core.close()
    return OK


def _port(value: str) -> int:
    if not (value.isdigit() and 1 <= int(value) <= 65535):
        raise DomainError(f"CRONSOURCE_PORT: {value!r} is not a port (1-65535)")
    return int(value)


def _stream_ending_server(config: Any, on_exit: Callable[[], None]) -> Any:
    """A uvicorn server that, asked to exit, first tells the app to end its open streams (it
    would wait for them before the app's shutdown), and exits 0 after a graceful stop
    (uvicorn would raise the signal again once done)."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True  # a second Ctrl-C: stop waiting
            self.should_exit = True
            on_exit()

    return Server(config)


def _bootstrap_at_start(core: Core) -> None:
    folder = os.environ.get("CRONSOURCE_BOOTSTRAP_DIR")
    if not folder:
        return
    from interfaces.bootstrap import run_bootstrap

    summary = run_bootstrap(core, Path(folder))
    sys.stdout.write(f"cronsource: bootstrap {folder}:\n{summary}\n")


def cmd_bootstrap(args: argparse.Namespace) -> int:
    """Sync jobs from a folder of application folders, each with a jobs.json."""
    from interfaces.bootstrap import run_bootstrap

    _logging("text", text="%(levelname)s %(name)s: %(message)s")
    core = Core(Settings.from_env(data_dir=args.data_dir))
    try:
        summary = run_bootstrap(core, Path(args.path))
    except (FileNotFoundError, NotADirectoryError) as e:
        raise DomainError(f"bootstrap: {e}") from None
    finally:
        core.close()
    sys.stdout.write(f"{summary}\n")
    return OK if summary.ok else USAGE  # an invalid job or a broken file is bad input


def cmd_token(args: argparse.Namespace) -> int:
    """Print a JWT signed with the configured HS256 key."""
    from infrastructure.auth import SCOPES, AuthSettings, mint_token

    settings = Settings.from_env(data_dir=args.data_dir)
    auth, _ = AuthSettings.from_env(os.environ, settings.data_dir)
    if not auth.secret:
        raise DomainError(
            "token: the service verifies RS256 tokens; mint them with your identity provider"
        )
    scopes = args.scopes.split() if args.scopes is not None else list(SCOPES)
    try:
        token = mint_token(auth, auth.secret, subject=args.sub, tenant=args.tenant, scopes=scopes,
                           ttl_seconds=args.ttl, issuer=auth.issuer)  # fmt: skip
    except ValueError as e:
        raise DomainError(f"token: {e}") from None
    sys.stdout.write(token + "\n")
    return OK


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(prog="cronsource", description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir", type=Path, default=None,
        help="where the SQLite store lives (CRONSOURCE_DATA_DIR; default ./cronsource-data)",
    )  # fmt: skip
    common.add_argument("--tenant", default="default", help="the tenant (default: default)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    cron = sub.add_parser("cron", help="preview a cron pattern's next fire instants")
    cron.add_argument("pattern", help="5 fields, or 6 with seconds first, or a macro (@daily)")
    cron.add_argument("--tz", default="UTC", help="IANA time zone (default UTC)")
    cron.add_argument("--next", type=int, default=5, help="how many instants (default 5)")
    cron.add_argument("--after", help="start after this ISO 8601 instant (default: now)")
    cron.set_defaults(run=cmd_cron)

    history = sub.add_parser("history", parents=[common], help="a job's events, oldest first")
    history.add_argument("job_id")
    history.add_argument("--json", action="store_true", help="print JSON")
    history.set_defaults(run=cmd_history)

    replay = sub.add_parser(
        "replay", parents=[common], help="rebuild the read models from the log"
    )
    replay.add_argument(
        "--verify", action="store_true",
        help="rebuild in a scratch store and compare with the live read models; change nothing",
    )  # fmt: skip
    replay.add_argument("--max-differences", type=int, default=20, help=argparse.SUPPRESS)
    replay.set_defaults(run=cmd_replay)

    serve = sub.add_parser("serve", parents=[common], help="serve the API and run the engine")
    serve.add_argument("--host", default=os.environ.get("CRONSOURCE_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=None, help="default: CRONSOURCE_PORT or 3000")
    serve.set_defaults(run=cmd_serve)

    token = sub.add_parser("token", parents=[common], help="print a JWT for the configured key")
    token.add_argument("--sub", required=True, help="the user (becomes createdBy/updatedBy)")
    token.add_argument(
        "--scopes", default=None, help='space-separated (default: all), e.g. "jobs:read"'
    )
    token.add_argument("--ttl", type=int, default=3600, help="seconds (default 3600)")
    token.set_defaults(run=cmd_token)

    bootstrap = sub.add_parser(
        "bootstrap", parents=[common], help="sync jobs from application folders with jobs.json"
    )
    bootstrap.add_argument("path")
    bootstrap.set_defaults(run=cmd_bootstrap)

    engine = sub.add_parser(
        "engine", parents=[common], help="run the scheduling engine (stops on SIGTERM/SIGINT)"
    )
    engine.set_defaults(run=cmd_engine)

    backfill = sub.add_parser(
        "backfill", parents=[common], help="run each slot of a past range once"
    )
    backfill.add_argument("job_id")
    backfill.add_argument(
        "--from", dest="start", required=True, help="ISO 8601 instant (included)"
    )
    backfill.add_argument("--to", dest="end", required=True, help="ISO 8601 instant (excluded)")
    backfill.add_argument("--by", default="cli", help="who asks (default: cli)")
    backfill.set_defaults(run=cmd_backfill)

    slots = sub.add_parser(
        "slots", parents=[common], help="each slot of a job in a range: run or skipped, and why"
    )
    slots.add_argument("job_id")
    slots.add_argument("--from", dest="start", required=True, help="ISO 8601 instant (included)")
    slots.add_argument("--to", dest="end", required=True, help="ISO 8601 instant (excluded)")
    slots.add_argument("--json", action="store_true", help="print JSON")
    slots.set_defaults(run=cmd_slots)

    log_transfer.add_parsers(sub, common)
    doctor.add_parser(sub, common)

    jobs = sub.add_parser("jobs", help="create and list jobs from the command line")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    add = jobs_sub.add_parser(
        "add", parents=[common], help="create a job from a JSON file (- = stdin)"
    )
    add.add_argument("file")
    add.add_argument("--by", default="cli", help="who creates it (default: cli)")
    add.set_defaults(run=cmd_jobs_add)
    listing = jobs_sub.add_parser("list", parents=[common], help="list jobs")
    listing.set_defaults(run=cmd_jobs_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; errors go to stderr with a non-zero exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except DomainError as e:
        sys.stderr.write(f"cronsource: {e}\n")
        return USAGE
    except (StoreConfigError, ValueError) as e:  # a setting that cannot be used
        sys.stderr.write(f"cronsource: {e}\n")
        return STORE
    except OSError as e:
        sys.stderr.write(f"cronsource: the store could not be used: {e}\n")
        return STORE
    except STORE_ERRORS as e:
        reason = unavailable(e)
        if reason is None:  # a bug: its stack is worth seeing
            raise
        sys.stderr.write(f"cronsource: the store could not be used: {reason} ({e})\n")
        return STORE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
