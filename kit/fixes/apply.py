"""Apply a plan of fixes through the kit's safe paths, and undo one (talks to PostgreSQL).

Only when the caller asked to apply, and only after the safety pre-flight on every table the
plan touches (replica, read-only role, ownership, open transactions): ``ANALYZE``, extended
statistics, a role's setting and ``VACUUM`` each on its own session with timeouts; new indexes through :func:`kit.indexes.apply_indexes` (CONCURRENTLY, one
autocommit session each, lock/statement timeouts with retries, repair of invalid builds); drops
through :func:`kit.indexes.drop_indexes`. A fix that fails is marked failed with the reason; the
others go on. All of it under the database's apply lock (:mod:`kit.safety.applylock`): the
caller's (``lock=``), else taken for the call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import psycopg
from psycopg import sql
from sqlalchemy import Engine

from kit.db import sessions
from kit.db.engine import url_of
from kit.fixes.beyond import role_setting, statistics_sql
from kit.fixes.model import ANALYZE, APPLIED, CREATE, DROP, FAILED, STATISTICS, VACUUM, WORK_MEM, Fix
from kit.indexes import partitioned
from kit.indexes.apply import apply_indexes, drop_indexes
from kit.indexes.spec import IndexSpec, parse_indexdef
from kit.safety import applylock, interrupts, preflight
from kit.safety.applylock import ApplyLock

SET_TIMEOUTS = "SELECT /* kit */ set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false)"


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _statements(fix: Fix, database: str) -> list[sql.Composed]:
    """What an ANALYZE, extended statistics, a setting or a VACUUM runs, built from the fix's names
    (never from its ``sql`` text, which a reviewed plan read back from a file)."""
    table = sql.Identifier(fix.schema, fix.table)
    if fix.kind == ANALYZE:
        return [sql.SQL("ANALYZE {}").format(table)]
    if fix.kind == VACUUM:
        return [sql.SQL("VACUUM (ANALYZE) {}").format(table)]
    if fix.kind == STATISTICS:
        return statistics_sql(fix.schema, fix.table, fix.object_name or "", fix.columns, fix.kinds)
    return [role_sets(fix.role or "", database, "work_mem", fix.setting)]


def role_sets(role: str, database: str, name: str, value: str | None) -> sql.Composed:
    """``ALTER ROLE role IN DATABASE database SET name = value`` (None: RESET name)."""
    head = sql.SQL("ALTER ROLE {} IN DATABASE {}").format(sql.Identifier(role), sql.Identifier(database))
    if value is None:
        return sql.SQL("{} RESET {}").format(head, sql.Identifier(name))
    return sql.SQL("{} SET {} = {}").format(head, sql.Identifier(name), sql.Literal(value))


def _run(url: str, fix: Fix, *, lock_timeout_ms: int, statement_timeout_ms: int) -> Fix:
    """An ANALYZE, extended statistics, a setting (its earlier value kept, to undo) or a VACUUM, on its
    own session with timeouts."""
    try:
        with sessions.connect(url, app=f"dbperf-kit-{fix.kind.replace('_', '-')}") as conn:
            conn.execute(SET_TIMEOUTS, [f"{lock_timeout_ms}ms", f"{statement_timeout_ms}ms"])
            sessions.watch_client(conn)
            if fix.kind == WORK_MEM:
                fix = fix.but(prior=role_setting(conn, fix.role or "", "work_mem"))
            for stmt in _statements(fix, conn.info.dbname):
                conn.execute(stmt)
    except psycopg.Error as exc:
        return fix.but(verdict=FAILED, reason=f"{fix.kind} failed: {_first(exc)}")
    return fix.but(verdict=APPLIED)


def _creates(engine: Engine, fixes: list[Fix], out, lock: ApplyLock) -> dict[str | None, Fix]:
    """Each create fix, applied or failed, by its ``index``."""
    if not fixes:
        return {}
    specs = [f.index_spec() for f in fixes]
    result = apply_indexes(engine, specs, apply=True, lock=lock, checked=True, progress=None, out=out)
    steps = {s.name: s for s in result.steps}
    done: dict[str | None, Fix] = {}
    url = url_of(engine)
    for fix, spec in zip(fixes, specs, strict=False):
        step = steps[spec.name]
        if step.status in ("applied", "unchanged"):
            with sessions.connect(url) as conn:  # a partitioned table's: plans name its partitions' indexes
                done[fix.index] = fix.but(verdict=APPLIED, parts=partitioned.attached(conn, spec.schema, spec.name))
        else:
            done[fix.index] = fix.but(verdict=FAILED, reason=step.message or f"build {step.status}")
    return done


def _drop(engine: Engine, fix: Fix, lock: ApplyLock) -> Fix:
    try:
        drop_indexes(engine, [fix.index_spec()], lock=lock)
    except psycopg.Error as exc:
        return fix.but(verdict=FAILED, reason=f"DROP INDEX failed: {_first(exc)}")
    return fix.but(verdict=APPLIED)


def apply_fixes(
    engine: Engine,
    fixes: tuple[Fix, ...] | list[Fix],
    *,
    lock: ApplyLock | None = None,
    lock_timeout_ms: int = 2_000,
    statement_timeout_ms: int = 3_600_000,
    out: Callable[[str], None] | None = print,
) -> tuple[Fix, ...]:
    """Steps: 1. pre-flight (raises UnsafeOperation, nothing changed); 2. ANALYZE, extended statistics,
    settings, VACUUM; 3. new indexes; 4. drops. Each fix comes back ``applied`` or ``failed`` (with the reason)."""
    if not fixes:
        return ()
    url = url_of(engine)
    with contextlib.ExitStack() as stack:
        stack.enter_context(interrupts.sigterm_raises())
        lock = lock or stack.enter_context(applylock.hold(url))
        return _apply(
            engine,
            fixes,
            url=url,
            lock=lock,
            lock_timeout_ms=lock_timeout_ms,
            statement_timeout_ms=statement_timeout_ms,
            out=out,
        )


def _apply(
    engine: Engine, fixes, *, url: str, lock: ApplyLock, lock_timeout_ms: int, statement_timeout_ms: int, out
) -> tuple[Fix, ...]:
    tables = sorted({(f.schema, f.table) for f in fixes if f.table})  # a role's setting is on no table
    preflight.check(engine, tables=tables).require_safe()  # 1.
    done: dict[int, Fix] = {}
    for i, fix in enumerate(fixes):  # 2.
        if fix.kind not in (CREATE, DROP):
            done[i] = _run(url, fix, lock_timeout_ms=lock_timeout_ms, statement_timeout_ms=statement_timeout_ms)
    created = _creates(engine, [f for f in fixes if f.kind == CREATE], out, lock)  # 3.
    for i, fix in enumerate(fixes):
        if fix.kind == CREATE:
            done[i] = created[fix.index]
        elif fix.kind == DROP:  # 4.
            done[i] = _drop(engine, fix, lock)
    return tuple(done[i] for i in range(len(fixes)))


LOOP_CREATED = """SELECT /* kit */ pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE c.relname LIKE 'kit\\_%' AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
ORDER BY 1"""


def loop_created(engine: Engine) -> list[IndexSpec]:
    """The indexes the loop creates (named ``kit_...``, backing no constraint): a demo that starts
    over drops them."""
    with sessions.connect(engine) as conn:
        return [parse_indexdef(r[0]) for r in conn.execute(LOOP_CREATED).fetchall()]


def undo(
    engine: Engine, fix: Fix, *, lock: ApplyLock | None = None, out: Callable[[str], None] | None = print
) -> str | None:
    """Revert one applied fix: drop an index or extended statistics it created, rebuild an index it
    dropped, give a role its earlier setting back (ANALYZE and VACUUM cannot be undone), under the
    apply lock (``lock``: the caller's). Returns None when done, else why it could not be."""
    try:
        if fix.kind in (STATISTICS, WORK_MEM):
            with sessions.connect(engine, app="dbperf-kit-undo") as conn:
                conn.execute(SET_TIMEOUTS, ["2000ms", "60000ms"])
                if fix.kind == STATISTICS:
                    conn.execute(
                        sql.SQL("DROP STATISTICS IF EXISTS {}").format(
                            sql.Identifier(fix.schema, fix.object_name or "")
                        )
                    )
                else:
                    conn.execute(role_sets(fix.role or "", conn.info.dbname, "work_mem", fix.prior))
        elif fix.kind == CREATE:
            drop_indexes(engine, [fix.index_spec()], lock=lock)
        elif fix.kind == DROP:
            result = apply_indexes(engine, [fix.index_spec()], apply=True, lock=lock, progress=None, out=out)
            if result.failed:
                return f"rebuilding {fix.index} failed: {result.steps[0].message}"
    except psycopg.Error as exc:
        return f"undo failed: {_first(exc)}"
    return None
