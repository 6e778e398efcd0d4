"""`cronsource doctor`: can this node run as configured? One line per check, `ok`, `warn` or
`fail`; the command exits 1 if any check failed.

Nothing is created or changed: the store is probed read-only first, and the checks that need
the wired core (the log readable with the cipher key, projections' lag) run only on a store
that exists.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from eventsourcing.utils import TopicError

from domain.instants import parse_instant
from infrastructure.auth import (
    ENV_JWKS_URL,
    ENV_PUBLIC_KEY,
    ENV_SECRET,
    SECRET_FILE,
    AuthSettings,
    TokenVerifier,
)
from infrastructure.store import StoreConfigError, StoreUrl, check_cipher_key
from infrastructure.store_errors import STORE_ERRORS, unavailable
from infrastructure.store_probe import StoreProbe, probe_store
from interfaces.composition import Core, Settings

OK, WARN, FAIL = "ok", "warn", "fail"
SKEW_WARN_SECONDS = 1.0  # NTP keeps hosts within milliseconds
# past this a node fires its slots this much early or late, and (with more) looks dead to
# the others, which take over what it runs
SKEW_FAIL_SECONDS = 5.0
SILENT_SECONDS = 60.0  # the engine's takeover delay
SWITCHES = ("on", "off", "1", "0", "true", "false", "yes", "no")

#: every variable the README documents (a test keeps the two alike)
KNOWN = frozenset({
    "CRONSOURCE_ALLOW_TARGETS", "CRONSOURCE_BOOTSTRAP_DIR", "CRONSOURCE_BOOTSTRAP_OWNER",
    "CRONSOURCE_BOOTSTRAP_TENANT", "CRONSOURCE_CIPHER_KEY", "CRONSOURCE_DATABASE_URL",
    "CRONSOURCE_DATA_DIR", "CRONSOURCE_DECIDE_AHEAD_SECONDS", "CRONSOURCE_ENGINE",
    "CRONSOURCE_EVENTS_OWNER_CACHE", "CRONSOURCE_EVENTS_RING", "CRONSOURCE_EVENTS_RING_BYTES",
    "CRONSOURCE_FUNCTIONS", "CRONSOURCE_HOST", "CRONSOURCE_JWKS_URL", "CRONSOURCE_JWT_AUDIENCE",
    "CRONSOURCE_JWT_ISSUER", "CRONSOURCE_JWT_PUBLIC_KEY", "CRONSOURCE_JWT_SECRET",
    "CRONSOURCE_LOG_FORMAT", "CRONSOURCE_LOG_LEVEL", "CRONSOURCE_MISFIRE_GRACE_SECONDS", "CRONSOURCE_NODE",
    "CRONSOURCE_PORT", "CRONSOURCE_PROJECTIONS", "CRONSOURCE_PROJECTION_POLL_SECONDS", "CRONSOURCE_READY_MAX_LAG",
    "CRONSOURCE_SHUTDOWN_GRACE_SECONDS",
    "CRONSOURCE_SSE_BUFFER", "CRONSOURCE_SSE_BUFFER_BYTES", "CRONSOURCE_SSE_HEARTBEAT_SECONDS",
    "CRONSOURCE_TEST_POSTGRES_URL", "CRONSOURCE_UI_SECURE_COOKIE", "CRONSOURCE_WEBHOOKS",
    "CRONSOURCE_WEBHOOK_DELIVERY_RETENTION_DAYS", "CRONSOURCE_WEBHOOK_DISABLE_AFTER",
    "CRONSOURCE_WEBHOOK_LEASE_SECONDS", "CRONSOURCE_WEBHOOK_RETRY_SCHEDULE",
    "CRONSOURCE_WEBHOOK_TIMEOUT_SECONDS", "SCHEDULER_FAILED_RETENTION_DAYS",
    "SCHEDULER_LOG_RETENTION_DAYS", "SCHEDULER_MAX_CONCURRENCY",
})  # fmt: skip


@dataclass(frozen=True, slots=True)
class Check:
    """One finding."""

    status: str
    name: str
    detail: str

    def __str__(self) -> str:
        return f"{self.status:<5} {self.name:<12} {self.detail}"


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check the configuration, the store, the keys, the clocks and the projections."""
    failed = False
    for check in run_checks(os.environ, args.data_dir):
        sys.stdout.write(f"{check}\n")
        sys.stdout.flush()
        failed = failed or check.status == FAIL
    return 1 if failed else 0


def run_checks(env: Mapping[str, str], data_dir: Path | None = None) -> Iterator[Check]:
    """Every check, in order; later ones are skipped (with a warning) when what they need
    is missing."""
    try:
        settings = Settings.from_env(env, data_dir=data_dir)
        store = settings.store
    except (StoreConfigError, ValueError) as e:
        yield Check(FAIL, "config", str(e))
        return
    yield from _config(env)
    yield from _jwt(env, settings.data_dir)
    cipher = _cipher_key(settings)
    yield cipher
    probe = probe_store(store)
    yield _store(store, probe)
    yield from _host_clock(probe)
    reason = (
        "the store cannot be read" if probe.error
        else "there is no store yet" if not probe.exists
        else "the cipher key is unusable" if cipher.status == FAIL
        else None
    )  # fmt: skip
    if reason is not None:
        for name in ("log", "nodes", "projections"):
            yield Check(WARN, name, f"not checked: {reason}")
        return
    try:
        core = Core(settings)
    except STORE_ERRORS as e:
        yield Check(FAIL, "store", f"cannot be opened: {unavailable(e) or e}")
        return
    try:
        yield _log(core)
        yield from _nodes(core)
        yield _projections(core)
    except STORE_ERRORS as e:
        yield Check(FAIL, "store", f"failed while checked: {unavailable(e) or e}")
    finally:
        core.close()


def _config(env: Mapping[str, str]) -> Iterator[Check]:
    """Variables read outside `Settings` (by `serve`, the page, bootstrap), and names that
    nothing reads."""
    problems = []
    port = env.get("CRONSOURCE_PORT")
    if port and not (port.isdigit() and 1 <= int(port) <= 65535):
        problems.append(f"CRONSOURCE_PORT: {port!r} is not a port (1-65535)")
    level = env.get("CRONSOURCE_LOG_LEVEL")
    if level and not isinstance(logging.getLevelName(level.upper()), int):
        problems.append(f"CRONSOURCE_LOG_LEVEL: {level!r} is not a level (DEBUG … CRITICAL)")
    for variable in ("CRONSOURCE_ENGINE", "CRONSOURCE_WEBHOOKS"):
        value = env.get(variable)
        if value and value.lower() not in SWITCHES:
            problems.append(f"{variable}: {value!r} must be on or off")
    cookie = env.get("CRONSOURCE_UI_SECURE_COOKIE")
    if cookie and cookie.lower() not in ("auto", "on", "off"):
        problems.append(f"CRONSOURCE_UI_SECURE_COOKIE: {cookie!r} must be auto, on or off")
    for problem in problems:
        yield Check(FAIL, "config", problem)
    folder = env.get("CRONSOURCE_BOOTSTRAP_DIR")
    if folder and not Path(folder).is_dir():
        yield Check(WARN, "config", f"CRONSOURCE_BOOTSTRAP_DIR: {folder} is not a folder")
    unknown = sorted(
        k for k in env if k.startswith(("CRONSOURCE_", "SCHEDULER_")) and k not in KNOWN
    )
    for name in unknown:
        yield Check(WARN, "config", f"{name} is not a documented setting (a typo?)")
    if not problems:
        read = sum(1 for k in env if k in KNOWN)
        yield Check(OK, "config", f"{read} setting(s) from the environment parse")


def _jwt(env: Mapping[str, str], data_dir: Path) -> Iterator[Check]:
    given = [n for n in (ENV_SECRET, ENV_PUBLIC_KEY, ENV_JWKS_URL) if env.get(n)]
    if not given and not (data_dir / SECRET_FILE).exists():
        yield Check(
            WARN, "jwt", f"no key yet: the first `serve` generates one into "
            f"{data_dir / SECRET_FILE}; nodes that share tokens need the same "
            f"{ENV_SECRET} (or key)",
        )  # fmt: skip
        return
    try:
        auth, _ = AuthSettings.from_env(env, data_dir)  # reads the file; creates nothing here
        described = TokenVerifier(auth).self_check()
    except ValueError as e:
        yield Check(FAIL, "jwt", str(e))
        return
    where = given[0] if given else str(data_dir / SECRET_FILE)
    yield Check(OK, "jwt", f"{described} ({where})")


def _cipher_key(settings: Settings) -> Check:
    if not settings.cipher_key:
        return Check(OK, "cipher", "CRONSOURCE_CIPHER_KEY not set: events are stored in clear")
    try:
        check_cipher_key(settings.cipher_key)
    except StoreConfigError as e:
        return Check(FAIL, "cipher", str(e))
    return Check(OK, "cipher", "CRONSOURCE_CIPHER_KEY is a valid AES key")


def _store(store: StoreUrl, probe: StoreProbe) -> Check:
    where = _where(store)
    if probe.error:
        return Check(FAIL, "store", f"{where}: cannot be reached: {probe.error}")
    if not probe.exists:
        return Check(
            WARN, "store", f"{where}: no store yet (the first `serve` or `engine` makes it)"
        )
    if probe.missing:
        return Check(
            WARN, "store", f"{where}: reachable; missing {', '.join(probe.missing)} (made "
            "at the next start: a store from an older release, or one never started)",
        )  # fmt: skip
    return Check(OK, "store", f"{where}: reachable, every table present")


def _where(store: StoreUrl) -> str:
    """The store, without its password."""
    if store.kind == "sqlite":
        return f"SQLite {store.sqlite_path}"
    schema = f" schema {store.schema}" if store.schema else ""
    return f"PostgreSQL {store.user}@{store.host}:{store.port}/{store.dbname}{schema}"


def _host_clock(probe: StoreProbe) -> Iterator[Check]:
    if probe.database_now is None or probe.local_now is None:
        return  # SQLite: the database's clock is this host's
    offset = (probe.local_now - probe.database_now).total_seconds()
    detail = (
        f"this host's clock is {_signed(offset)} the database server's "
        f"(± {probe.round_trip_seconds / 2:.3f} s)"
    )
    yield Check(_skew_status(abs(offset) - probe.round_trip_seconds / 2), "clock", detail)


def _log(core: Core) -> Check:
    """The first and last events decode: the log is readable with this key (or none)."""
    recorder, mapper = core.jobs.recorder, core.jobs.mapper
    head = recorder.max_notification_id() or 0
    if not head:
        return Check(OK, "log", "empty")
    ends = [*recorder.select_notifications(start=1, limit=1),
            *recorder.select_notifications(start=head, limit=1)]  # fmt: skip
    for n in ends:
        try:
            mapper.to_domain_event(n)
        except (ValueError, TopicError) as e:
            if mapper.cipher is not None:
                why = "does not decrypt with CRONSOURCE_CIPHER_KEY (another key?)"
            elif not bytes(n.state).startswith(b"{"):
                why = "is encrypted: set CRONSOURCE_CIPHER_KEY"
            else:
                why = f"cannot be read by this release: {e}"
            return Check(FAIL, "log", f"the event at position {n.id} {why}")
    keyed = " with the cipher key" if mapper.cipher is not None else ""
    return Check(OK, "log", f"{head} positions; the first and last events read back{keyed}")


def _nodes(core: Core) -> Iterator[Check]:
    """Engine nodes' clocks: each heartbeat holds the node's time and the database's."""
    db_now, clocks = core.nodes.clocks()
    now = parse_instant(db_now, "now")
    if not clocks:
        yield Check(WARN, "nodes", "no engine has run on this store yet")
        return
    alive = []
    for node, (seen, db_seen) in sorted(clocks.items()):
        if db_seen is None:
            yield Check(OK, "nodes", f"{node}: last beat {seen} (from before clocks were kept)")
            continue
        at, db_at = parse_instant(seen, "seen"), parse_instant(db_seen, "db seen")
        skew = (at - db_at).total_seconds()
        age = (now - db_at).total_seconds()
        if age <= SILENT_SECONDS:
            alive.append(node)
        state = "beating" if age <= SILENT_SECONDS else "silent"
        detail = (
            f"{node}: {state}, last beat {age:.0f} s ago; its clock was {_signed(skew)} the "
            "database's"
        )
        yield Check(_skew_status(abs(skew)), "nodes", detail)
    if not alive:
        yield Check(WARN, "nodes", f"no engine node has beaten in the last {SILENT_SECONDS:.0f} s")


def _projections(core: Core) -> Check:
    """Events of each projection's topics not yet applied (a projection that had nothing to
    apply need not have stored the head as its position)."""
    recorder = core.jobs.recorder
    head = recorder.max_notification_id() or 0
    cap = core.settings.ready_max_lag + 1
    behind = {}
    for name, runner in core.projections.runners.items():
        pending = recorder.select_notifications(
            start=runner.position, limit=cap, stop=head,
            topics=sorted(runner.projection.topics), inclusive_of_start=False,
        )  # fmt: skip
        if pending:
            behind[name] = len(pending)
    if not behind:
        return Check(OK, "projections", f"every read model has applied the log ({head} positions)")
    far = max(behind.values()) == cap  # readiness fails this far behind
    listed = ", ".join(
        f"{name} {f'over {cap - 1}' if n == cap else n}" for name, n in behind.items()
    )
    status = WARN if far else OK
    return Check(status, "projections", f"events not yet applied: {listed} (a running node "
                 "catches up; `replay` rebuilds)")  # fmt: skip


def _skew_status(seconds: float) -> str:
    if seconds > SKEW_FAIL_SECONDS:
        return FAIL
    return WARN if seconds > SKEW_WARN_SECONDS else OK


def _signed(seconds: float) -> str:
    return f"{abs(seconds):.3f} s {'ahead of' if seconds >= 0 else 'behind'}"


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    """The `doctor` command."""
    doctor = sub.add_parser(
        "doctor", parents=[common],
        help="check the configuration, the store, keys, clocks and projections; exit 1 on a failure",
    )  # fmt: skip
    doctor.set_defaults(run=cmd_doctor)
