"""Apply the migration's indexes safely: dry run by default, CONCURRENTLY, one statement per own
autocommit session, lock/statement timeouts with retries, repair of failed builds, progress,
ANALYZE afterwards; idempotent (talks to PostgreSQL).

A concurrent build that gives up on a lock leaves an INVALID index behind; this run drops each
one it left (when the table lets it). When a session still blocks after the retries, the indexes
it would block next are not tried at all: a transaction holding a snapshot (a statement running
in it) blocks every concurrent build, one holding a lock on a table blocks that table's. The
step says which session (pid, state, statement) to end before running apply again.

Every apply holds the database's apply lock (:mod:`kit.safety.applylock`) from its first look to
its last statement; a caller that holds it already passes it down. Ctrl-C or SIGTERM during a
build cancels the build's backend (which would go on in the server otherwise), drops what it left
INVALID, then lets the exception go on. The build sessions ask the server to check that their
client is still there (``client_connection_check_interval``): when the process is killed, its
build stops within about a second instead of running on. Every index the kit builds carries a
marker comment (:data:`MARKER`), written as soon as the index exists, by which a later apply knows
an INVALID leftover of an interrupted build for its own (:mod:`kit.fixes.leftovers`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal

import pandas as pd
import psycopg
from psycopg import errors as pgerr
from psycopg import sql
from sqlalchemy import Engine

from kit import escape
from kit.db import sessions
from kit.db.engine import url_of
from kit.errors import IndexBuildError
from kit.indexes import partitioned
from kit.indexes.estimate import BuildEstimate, estimate
from kit.indexes.spec import IndexSpec, MigrationError
from kit.indexes.status import APPLIED, DIFFERS, INVALID, MISSING, NO_TABLE, IndexState, default_specs, index_status
from kit.safety import applylock, interrupts
from kit.safety import preflight as safety
from kit.safety.applylock import ApplyLock
from kit.sqltext import redact

ADVISORY_KEY = applylock.KEY  # one lock for every apply of the kit
BUILD_APP = "dbperf-kit-build"  # the application name of the sessions that run the kit's DDL
MARKER = "dbperf-kit build"  # the comment on every index the kit builds, followed by the UTC time
CANCEL_WAIT_S = 10.0  # how long an interrupted statement is cancelled and waited for
# what apply does with an index: create it, drop the invalid one and create it, nothing, leave another definition
Action = Literal["create", "rebuild", "none", "leave"]
StepStatus = Literal["planned", "applied", "unchanged", "failed", "left"]


@dataclass(frozen=True)
class Progress:
    """One phase change of a build, from pg_stat_progress_create_index."""

    name: str
    phase: str
    blocks_done: int
    blocks_total: int
    tuples_done: int
    tuples_total: int
    elapsed_s: float


def print_progress(event: Progress) -> None:
    done = f" {event.blocks_done}/{event.blocks_total} blocks" if event.blocks_total else ""
    print(escape.line(f"  {event.name}: {event.phase}{done} ({event.elapsed_s:.1f}s)"))


@dataclass(frozen=True)
class LockWait:
    """An attempt that gave up on a lock (lock_timeout), and who held things up."""

    name: str
    attempt: int
    error: str
    blocker_pids: tuple[int, ...]
    backoff_s: float


@dataclass(frozen=True)
class Step:
    name: str
    table: str
    state_before: IndexState
    action: Action
    status: StepStatus
    estimate: BuildEstimate | None = None
    attempts: int = 0
    seconds: float = 0.0
    phases: tuple[str, ...] = ()
    message: str = ""


@dataclass(frozen=True)
class ApplyResult:
    applied: bool  # False for a dry run
    steps: tuple[Step, ...]
    blockers: tuple[sessions.Backend, ...]
    lock_waits: tuple[LockWait, ...]
    seconds: float

    def to_frame(self) -> pd.DataFrame:
        rows = []
        for s in self.steps:
            p = s.estimate
            rows.append(
                {
                    "name": s.name,
                    "table": s.table,
                    "before": s.state_before,
                    "action": s.action,
                    "status": s.status,
                    "attempts": s.attempts,
                    "seconds": round(s.seconds, 3),
                    "est_mib": round(p.est_bytes / 2**20, 2) if p else None,
                    "size_from": p.est_source if p else None,
                    "free_gib": round(p.free_bytes / 2**30, 1) if p and p.free_bytes else None,
                    "writes_per_s": round(p.writes_per_s, 1) if p else None,
                    "note": "; ".join(x for x in (p.warning if p else "", s.message) if x),
                }
            )
        return pd.DataFrame(rows)

    def names(self, status: StepStatus) -> list[str]:
        return [s.name for s in self.steps if s.status == status]

    @property
    def failed(self) -> list[str]:
        return self.names("failed")


def plan(specs: tuple[IndexSpec, ...], states: dict[str, IndexState]) -> list[Step]:
    """What apply would do for each spec, given its current state."""
    action: dict[IndexState, tuple[Action, StepStatus, str]] = {
        APPLIED: ("none", "unchanged", ""),
        MISSING: ("create", "planned", ""),
        INVALID: ("rebuild", "planned", "invalid (failed concurrent build): drop and rebuild"),
        DIFFERS: ("leave", "left", "another definition under this name: not touched"),
    }
    steps = []
    for spec in specs:
        act, status, msg = action[states[spec.name]]
        steps.append(Step(spec.name, spec.table, states[spec.name], act, status, message=msg))
    return steps


INDEX_VALID = """SELECT /* kit */ x.indisvalid AND x.indisready FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_namespace n ON n.oid = i.relnamespace
WHERE n.nspname = %s AND i.relname = %s"""
# the build's progress, and its index (once the build has created it) and whether it has a comment yet
PROGRESS = """SELECT /* kit */ p.phase, p.blocks_done, p.blocks_total, p.tuples_done, p.tuples_total,
       n.nspname, c.relname, obj_description(c.oid, 'pg_class') IS NOT NULL
FROM pg_stat_progress_create_index p
LEFT JOIN pg_class c ON c.oid = p.index_relid LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE p.pid = %s"""
COMMENTED = (
    """SELECT /* kit */ obj_description(to_regclass(format('%%I.%%I', %s::text, %s::text)), 'pg_class') IS NOT NULL"""
)
SET_TIMEOUTS = "SELECT /* kit */ set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false)"
BLOCKING = "SELECT /* kit */ pg_blocking_pids(%s)"
# does session %(pid)s block a concurrent build on %(table)s: its snapshot blocks every build (the
# build waits for older snapshots), a lock stronger than ROW SHARE on the table blocks that table's
WOULD_BLOCK = """SELECT /* kit */ a.pid, a.state, left(a.query, 120) AS query,
       a.backend_xmin IS NOT NULL OR EXISTS (
           SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.relation = %(table)s AND l.granted
             AND l.mode NOT IN ('AccessShareLock', 'RowShareLock')) AS blocks
FROM pg_stat_activity a WHERE a.pid = ANY(%(pids)s) AND a.xact_start IS NOT NULL"""


def _index_state(conn: psycopg.Connection, spec: IndexSpec) -> IndexState:
    row = conn.execute(INDEX_VALID, [spec.schema, spec.name]).fetchone()
    return MISSING if row is None else (APPLIED if row[0] else INVALID)


def _blocking_pids(conn: psycopg.Connection, pid: int) -> list[int]:
    row = conn.execute(BLOCKING, [pid]).fetchone()
    assert row is not None, "BLOCKING returns one row"
    return row[0] or []


def _commented(conn: psycopg.Connection, spec: IndexSpec) -> bool:
    """Whether index ``spec`` has a comment (the kit's marker, put there during the build)."""
    row = conn.execute(COMMENTED, [spec.schema, spec.name]).fetchone()
    assert row is not None, "COMMENTED returns one row"
    return bool(row[0])


def _mark(conn: psycopg.Connection, schema: str, name: str) -> bool:
    """Put the kit's marker on index ``schema.name``; False when it could not (yet): a short lock
    timeout, so that the build's monitor never waits on it."""
    text = f"{MARKER} {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}"
    stmt = sql.SQL("COMMENT ON INDEX {} IS {}").format(sql.Identifier(schema, name), sql.Literal(text))
    try:
        with conn.transaction():
            conn.execute("SET /* kit */ LOCAL lock_timeout = '200ms'")
            conn.execute(stmt)
    except psycopg.Error:
        return False
    return True


def _stop(box: dict, done: threading.Event, *, wait_s: float = CANCEL_WAIT_S) -> None:
    """Cancel the worker's statement and wait for the worker to end. The server goes on with a
    statement whose client stopped waiting — a concurrent build for minutes — so it is cancelled,
    again and again until the worker ends: the worker may be between connecting and sending its
    statement when the first cancel arrives (the server ignores a cancel for an idle session)."""
    box["stop"] = True
    deadline = time.monotonic() + wait_s
    while not done.is_set() and time.monotonic() < deadline:
        conn = box.get("conn")
        if conn is not None:
            try:
                conn.cancel_safe(timeout=2.0)  # safe from another thread: its own connection to the server
            except Exception:
                pass
        done.wait(0.2)


def _run_statement(
    url: str,
    stmt: str | sql.SQL | sql.Composed,
    *,
    timeouts: tuple[str, str],
    monitor: psycopg.Connection | None,
    name: str,
    poll_s: float,
    progress: Callable[[Progress], None] | None,
    blockers: set[int] | None = None,
    mark: bool = False,
) -> list[str]:
    """Run one statement on its own autocommit session in a thread; poll its progress meanwhile
    (given ``blockers``, add the pids it waits for; with ``mark``, put the kit's marker on the index
    it builds as soon as that exists). Interrupted here (Ctrl-C, SIGTERM: the main thread), it
    cancels the statement before the exception goes on."""
    box: dict = {}
    # Waited for with an Event, not Thread.join: a KeyboardInterrupt that lands inside join() makes
    # CPython (3.11, bpo-45274's fix) release the running thread's state lock and mark it stopped,
    # and is_alive() then says False while the statement runs on — it would never be cancelled.
    done = threading.Event()

    def work() -> None:
        try:
            with sessions.connect(url, app=BUILD_APP) as conn:
                conn.execute(SET_TIMEOUTS, list(timeouts))
                sessions.watch_client(conn)  # a killed process's build stops in the server too
                box["conn"], box["pid"] = conn, conn.info.backend_pid
                if box.get("stop"):
                    return  # interrupted while connecting
                conn.execute(stmt)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc
        finally:
            done.set()

    started, marked = time.monotonic(), False
    phases: list[str] = []
    threading.Thread(target=work, name=f"kit-build-{name}", daemon=True).start()
    try:
        while not done.wait(poll_s):
            if monitor is None or "pid" not in box:
                continue
            row = monitor.execute(PROGRESS, [box["pid"]]).fetchone()
            if blockers is not None:
                blockers.update(_blocking_pids(monitor, box["pid"]))
            if mark and row and row[6] is not None and not marked:  # the build has created its index
                marked = row[7] or _mark(monitor, row[5], row[6])
            if row and (not phases or phases[-1] != row[0]):
                phases.append(row[0])
                if progress:
                    phase, blocks_done, blocks_total, tuples_done, tuples_total = row[:5]
                    elapsed_s = time.monotonic() - started
                    progress(Progress(name, phase, blocks_done, blocks_total, tuples_done, tuples_total, elapsed_s))
    except BaseException:
        _stop(box, done)
        raise
    if "error" in box:
        raise box["error"]
    return phases


def _build_one(
    url: str,
    spec: IndexSpec,
    step: Step,
    monitor: psycopg.Connection,
    *,
    timeouts: tuple[str, str],
    retries: int,
    backoff_s: float,
    poll_s: float,
    progress,
    sleep,
    waits: list[LockWait],
    tables: list[int],
) -> Step:
    """Steps: 1. drop a leftover invalid index; 2. create (marked as the kit's as soon as it exists);
    3. check it is valid, and marked. Retry on lock timeout; after a failed attempt, drop the invalid
    index it left; interrupted, drop it too, then let the interrupt go on."""
    started, phases, attempt = time.monotonic(), [], 0
    args = dict(
        url=url,
        monitor=monitor,
        timeouts=timeouts,
        retries=retries,
        backoff_s=backoff_s,
        poll_s=poll_s,
        progress=progress,
        sleep=sleep,
        waits=waits,
        tables=tables,
    )
    while True:
        attempt += 1
        seen: set[int] = set()
        try:
            if _index_state(monitor, spec) == INVALID:  # 1. a failed build, ours or earlier
                _drop(url, spec, timeouts=timeouts, poll_s=poll_s)
            if partitioned.is_partitioned(monitor, spec.schema, spec.table):  # 2. partition by partition
                phases += partitioned.build(
                    spec,
                    monitor,
                    build_child=lambda child: _child(child, args),
                    run=lambda stmt: _run_statement(
                        url, stmt, timeouts=timeouts, monitor=None, name=spec.name, poll_s=poll_s, progress=None
                    ),
                )
            else:
                phases += _run_statement(
                    url,
                    spec.create_sql,
                    timeouts=timeouts,
                    monitor=monitor,
                    name=spec.name,
                    poll_s=poll_s,
                    progress=progress,
                    blockers=seen,
                    mark=True,
                )
            if _index_state(monitor, spec) != APPLIED:  # 3. IF NOT EXISTS accepts an invalid one
                raise IndexBuildError(f"{spec.name} exists but is not valid after the build")
            if not _commented(monitor, spec):  # built before a look
                _mark(monitor, spec.schema, spec.name)
            return replace(
                step, status="applied", attempts=attempt, phases=tuple(phases), seconds=time.monotonic() - started
            )
        except pgerr.LockNotAvailable as exc:
            left = _drop_left_invalid(url, spec, monitor, timeouts=timeouts, poll_s=poll_s)
            pids = tuple(sorted(seen)) or tuple(b.pid for b in sessions.open_transactions(monitor, tables=tables))
            wait = backoff_s * 2 ** (attempt - 1)
            waits.append(
                LockWait(
                    spec.name, attempt, str(exc).strip().splitlines()[0], pids, wait if attempt <= retries else 0.0
                )
            )
            if attempt > retries:
                named = ", ".join(map(str, pids)) or "none left"
                return replace(
                    step,
                    status="failed",
                    attempts=attempt,
                    seconds=time.monotonic() - started,
                    message=f"lock_timeout {attempt} times; blocking pids: {named}; "
                    f"end those transactions and run apply again{left}",
                )
            sleep(wait)
        except (psycopg.Error, IndexBuildError) as exc:
            left = _drop_left_invalid(url, spec, monitor, timeouts=timeouts, poll_s=poll_s)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return replace(
                step,
                status="failed",
                attempts=attempt,
                seconds=time.monotonic() - started,
                message=f"{type(exc).__name__}: {first}; run apply again to repair{left}",
            )
        except BaseException:  # Ctrl-C, SIGTERM: _run_statement cancelled the build; drop what it left
            _drop_after_interrupt(url, spec, monitor, lock_timeout=timeouts[0], poll_s=poll_s)
            raise


def _child(child: IndexSpec, args: dict) -> list[str]:
    """One partition's index of a partitioned one, built on the same safe path (retries included);
    a failure stops the parent's sequence with its reason."""
    step = _build_one(
        args["url"],
        child,
        Step(child.name, child.table, MISSING, "create", "planned"),
        args["monitor"],
        **{k: v for k, v in args.items() if k not in ("url", "monitor")},
    )
    if step.status != "applied":
        raise IndexBuildError(f"the index of partition {child.table} ({child.name}): {step.message}")
    return list(step.phases)


def _drop_after_interrupt(
    url: str, spec: IndexSpec, monitor: psycopg.Connection, *, lock_timeout: str, poll_s: float
) -> None:
    """Best effort, with a short statement timeout: the process is on its way out. What is left
    INVALID here (the drop waits for the same transactions the build waited for) is the kit's,
    and the next apply drops it (kit.fixes.leftovers)."""
    try:
        _drop_left_invalid(url, spec, monitor, timeouts=(lock_timeout, "10s"), poll_s=poll_s)
    except Exception:
        pass


PARTITIONED_INDEX = (
    """SELECT /* kit */ relkind = 'I' FROM pg_class WHERE oid = to_regclass(format('%%I.%%I', %s::text, %s::text))"""
)


def drop_index(
    url: str, schema: str, name: str, *, timeouts: tuple[str, str] = ("2s", "10min"), poll_s: float = 0.2
) -> None:
    """DROP INDEX CONCURRENTLY IF EXISTS ``schema.name`` on a session of its own (cancelled when
    interrupted); a partitioned table's index with a plain DROP INDEX (PostgreSQL refuses CONCURRENTLY
    there), which drops its partitions' indexes too — under the lock timeout."""
    with sessions.connect(url) as conn:
        row = conn.execute(PARTITIONED_INDEX, [schema, name]).fetchone()
    verb = "DROP INDEX IF EXISTS {}" if row and row[0] else "DROP INDEX CONCURRENTLY IF EXISTS {}"
    drop = sql.SQL(verb).format(sql.Identifier(schema, name))
    _run_statement(url, drop, timeouts=timeouts, monitor=None, name=name, poll_s=poll_s, progress=None)


def _drop(url: str, spec: IndexSpec, *, timeouts: tuple[str, str], poll_s: float) -> None:
    drop_index(url, spec.schema, spec.name, timeouts=timeouts, poll_s=poll_s)


def _drop_left_invalid(
    url: str, spec: IndexSpec, monitor: psycopg.Connection, *, timeouts: tuple[str, str], poll_s: float
) -> str:
    """Drop the INVALID index a failed attempt left; '' when none is left, else a note for the step."""
    if _index_state(monitor, spec) != INVALID:
        return ""
    try:
        _drop(url, spec, timeouts=timeouts, poll_s=poll_s)
    except psycopg.Error as exc:  # the drop waits for the same lockers as the build did
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"; {spec.name} is left INVALID (dropping it failed too: {first}); apply again rebuilds it"
    return ""


def _still_blocking(monitor: psycopg.Connection, pids: set[int], table: int | None) -> list[tuple[int, str, str]]:
    """(pid, state, statement) of the sessions among ``pids`` that would block a build on table OID ``table``."""
    if not pids:
        return []
    rows = monitor.execute(WOULD_BLOCK, {"pids": sorted(pids), "table": table}).fetchall()
    return [(pid, state, redact.statement(query) or "") for pid, state, query, blocks in rows if blocks]


def _not_tried(blocking: list[tuple[int, str, str]]) -> str:
    pid, state, query = blocking[0]
    return (
        f"not tried: session {pid} ({state}: {query!r}) blocked the previous index through every retry "
        f"and would block this one; end it (SELECT pg_terminate_backend({pid})) or wait for it, then run "
        "apply again"
    )


def _check_tables(specs: tuple[IndexSpec, ...], states: dict[str, IndexState]) -> None:
    missing = [s for s in specs if states[s.name] == NO_TABLE]
    if missing:
        s = missing[0]
        raise MigrationError(
            f"{s.source}:{s.line}: table {s.qualified_table} of index {s.name} does not "
            "exist; create the schema first or fix the migration — nothing was applied"
        )


def apply_indexes(
    engine: Engine,
    specs: tuple[IndexSpec, ...] | list[IndexSpec] | None = None,
    *,
    apply: bool = False,
    lock: ApplyLock | None = None,
    checked: bool = False,
    lock_timeout_ms: int = 2_000,
    statement_timeout_ms: int = 3_600_000,
    retries: int = 3,
    backoff_s: float = 1.0,
    sample_s: float = 0.5,
    poll_s: float = 0.2,
    progress: Callable[[Progress], None] | None = print_progress,
    out: Callable[[str], None] | None = print,
    sleep: Callable[[float], None] = time.sleep,
) -> ApplyResult:
    """Bring the database to the migration's indexes; with ``apply=False`` only print the plan.

    With ``apply``, the database's apply lock is held from the first look to the last statement:
    ``lock``, held by the caller, else taken here (ApplyInProgress at once when another session
    holds it). SIGTERM raises as Ctrl-C does meanwhile (kit.safety.interrupts): either cancels the
    running build and drops what it left INVALID before it goes on. ``checked``: the caller ran the
    pre-flight on these tables under ``lock`` already (kit.fixes does, once for all its fixes)."""
    if lock_timeout_ms <= 0 or statement_timeout_ms <= 0 or retries < 0:
        raise ValueError("lock_timeout_ms and statement_timeout_ms must be > 0, retries >= 0")
    with contextlib.ExitStack() as stack:
        if apply:
            stack.enter_context(interrupts.sigterm_raises())
            lock = lock or stack.enter_context(applylock.hold(url_of(engine)))
        return _apply(
            engine,
            specs,
            apply=apply,
            lock=lock,
            checked=checked,
            lock_timeout_ms=lock_timeout_ms,
            statement_timeout_ms=statement_timeout_ms,
            retries=retries,
            backoff_s=backoff_s,
            sample_s=sample_s,
            poll_s=poll_s,
            progress=progress,
            out=out,
            sleep=sleep,
        )


def _apply(
    engine: Engine,
    specs,
    *,
    apply: bool,
    lock: ApplyLock | None,
    checked: bool,
    lock_timeout_ms: int,
    statement_timeout_ms: int,
    retries: int,
    backoff_s: float,
    sample_s: float,
    poll_s: float,
    progress,
    out,
    sleep,
) -> ApplyResult:
    started = time.monotonic()
    specs = tuple(specs) if specs is not None else default_specs(engine)
    status = index_status(engine, specs)
    states = {r.name: r.state for r in status.rows}
    _check_tables(specs, states)
    steps = plan(specs, states)
    todo = [s for s in steps if s.action in ("create", "rebuild")]
    by_name = {s.name: s for s in specs}
    tables = sorted({(by_name[s.name].schema, by_name[s.name].table) for s in todo})
    url = url_of(engine)
    say = escape.lines_to(out)
    with sessions.connect(url) as monitor:
        estimates = estimate(monitor, [by_name[s.name] for s in todo], sample_s=sample_s if todo else 0, sleep=sleep)
        steps = [replace(s, estimate=estimates.get(s.name)) for s in steps]
        oids = sessions.table_oids(monitor, tables)
        blockers = sessions.open_transactions(monitor, tables=list(oids.values())) if todo else []
        if not apply or not todo:
            for s in steps:
                say(
                    f"{'would ' if not apply and s.action != 'none' else ''}{s.action:8} {s.name}"
                    + (f"  ({s.message})" if s.message else "")
                )
            return ApplyResult(
                False if not apply else True, tuple(steps), tuple(blockers), (), time.monotonic() - started
            )
        assert lock is not None, "apply_indexes holds the apply lock whenever it applies"
        if not checked:  # the one gate: role, replica, open transactions (a caller under ``lock`` may have run it)
            safety.check(engine, tables=tables).require_safe()
        for b in blockers:
            say(
                f"session {b.pid} ({b.application or b.user}, {b.state}) has a transaction open for "
                f"{b.xact_age_s or 0:.0f}s: concurrent builds wait for it"
            )
        timeouts = (f"{lock_timeout_ms}ms", f"{statement_timeout_ms}ms")
        waits = _build_all(
            url,
            steps,
            by_name,
            monitor,
            lock=lock,
            oids=oids,
            timeouts=timeouts,
            retries=retries,
            backoff_s=backoff_s,
            poll_s=poll_s,
            progress=progress,
            sleep=sleep,
            say=say,
        )
        for schema, name in sorted(
            {(by_name[s.name].schema, by_name[s.name].table) for s in steps if s.status == "applied"}
        ):
            _run_statement(
                url,
                sql.SQL("ANALYZE {}").format(sql.Identifier(schema, name)),
                timeouts=timeouts,
                monitor=None,
                name=name,
                poll_s=poll_s,
                progress=None,
            )
    return ApplyResult(True, tuple(steps), tuple(blockers), tuple(waits), time.monotonic() - started)


def _build_all(
    url: str,
    steps: list[Step],
    by_name: dict[str, IndexSpec],
    monitor: psycopg.Connection,
    *,
    lock: ApplyLock,
    oids: dict,
    timeouts: tuple[str, str],
    retries: int,
    backoff_s: float,
    poll_s: float,
    progress,
    sleep,
    say,
) -> list[LockWait]:
    """Build each planned index in order (``steps`` updated in place); the lock waits met."""
    waits: list[LockWait] = []
    blocked_by: set[int] = set()  # sessions that outlasted every retry of an earlier index
    for i, step in enumerate(steps):
        if step.action not in ("create", "rebuild"):
            continue
        spec = by_name[step.name]
        lock.require(monitor)  # its session may have been ended since: then another apply may be running
        if still := _still_blocking(monitor, blocked_by, oids.get((spec.schema, spec.table))):
            steps[i] = replace(step, status="failed", message=_not_tried(still))
            say(f"not tried {step.name}: session {still[0][0]} still blocks it")
            continue
        say(f"{step.action} {step.name}")
        steps[i] = _build_one(
            url,
            spec,
            step,
            monitor,
            timeouts=timeouts,
            retries=retries,
            backoff_s=backoff_s,
            poll_s=poll_s,
            progress=progress,
            sleep=sleep,
            waits=waits,
            tables=list(oids.values()),
        )
        if steps[i].status == "failed" and waits and waits[-1].name == step.name:
            blocked_by.update(waits[-1].blocker_pids)
    return waits


def drop_indexes(
    engine: Engine, specs: tuple[IndexSpec, ...] | list[IndexSpec] | None = None, *, lock: ApplyLock | None = None
) -> list[str]:
    """Drop the migration's indexes that exist (concurrently, one autocommit session each) so a
    demo starts from the audit's "before" state; returns the names dropped. The caller checks
    that the database is the kit's own. Under the apply lock, as any change (``lock``: the caller's)."""
    specs = tuple(specs) if specs is not None else default_specs(engine)
    url = url_of(engine)
    with contextlib.ExitStack() as stack:
        stack.enter_context(interrupts.sigterm_raises())
        lock = lock or stack.enter_context(applylock.hold(url))
        live = {r.name for r in index_status(engine, specs).rows if r.state != MISSING}
        dropped = []
        for spec in specs:
            if spec.name in live:
                drop_index(url, spec.schema, spec.name, timeouts=("10s", "10min"))
                dropped.append(spec.name)
    return dropped
