"""INVALID indexes that the kit's interrupted builds left behind: find them, tell the kit's from
anyone else's, and drop the kit's before the next plan, so that the plan uses the name again
instead of building ``..._idx_2`` next to a dead index (talks to PostgreSQL).

A concurrent build that is cancelled, times out or loses its client leaves its index INVALID
(``pg_index.indisvalid`` false): never used by a query, still maintained by every write.
An INVALID index is the kit's when it has either:

1. the kit's marker: ``COMMENT ON INDEX ... IS 'dbperf-kit build <UTC time>'``
   (:data:`kit.indexes.apply.MARKER`). The build's monitor writes it as soon as the index exists.
   A comment needs the index, and PostgreSQL creates the index in the build's first transaction,
   visible to other sessions from then on. The monitor polls every 0.2 s;
2. or, when it has no comment at all (a build that ended before the monitor's first look, such as
   a client killed in its first 0.2 s), the kit's name and shape. That means a plain btree on
   columns (no expression, predicate, INCLUDE or UNIQUE), backing no constraint, named exactly as
   :func:`kit.fixes.plan.index_name` names an index on its own table and key columns, with or
   without the ``_2``, ``_3``... suffix. That is how the loop names every index it plans. Someone
   else's index of that name and shape says, by its name, that it is the kit's.

Every other INVALID index is reported and never dropped: someone's failed build, the ``_ccnew``
of an interrupted ``REINDEX CONCURRENTLY``, or a ``kit_`` name on another shape.

An index that a build is working on right now (``pg_stat_progress_create_index``) is not a
leftover. A dry run reports it. Under the apply lock it can only be an orphan: a kit build whose
process died, which goes on in the server until ``client_connection_check_interval`` stops it
(within a second or two) or it completes. The orphan is waited for, then judged again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
from sqlalchemy import Engine

from kit.db import sessions
from kit.db.engine import url_of
from kit.fixes.model import Leftover
from kit.fixes.plan import index_name
from kit.indexes.apply import BUILD_APP, MARKER, drop_index
from kit.safety import preflight
from kit.safety.applylock import ApplyLock

_NAME_BYTES = 63
INVALID = """SELECT /* kit */ n.nspname, i.relname, t.relname, pg_get_indexdef(i.oid), obj_description(i.oid, 'pg_class'),
       am.amname = 'btree' AND NOT x.indisunique AND x.indexprs IS NULL AND x.indpred IS NULL
           AND x.indnkeyatts = x.indnatts AS plain,
       ARRAY(SELECT a.attname::text FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum ORDER BY k.ord) AS columns,
       p.pid, s.application_name
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = i.relnamespace JOIN pg_am am ON am.oid = i.relam
LEFT JOIN pg_stat_progress_create_index p ON p.index_relid = i.oid
LEFT JOIN pg_stat_activity s ON s.pid = p.pid
WHERE NOT x.indisvalid AND i.relkind = 'i'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid)
ORDER BY 1, 2"""
CANCEL = "SELECT /* kit */ pg_cancel_backend(%s)"


def kit_named(name: str, table: str, columns: tuple[str, ...]) -> bool:
    """Whether ``name`` is the name the loop gives an index on ``table`` (``columns``), with or
    without the suffix that keeps it unique (pure)."""
    base = index_name(table, columns, set())
    stem = base[: _NAME_BYTES - 3] + "_"
    return name == base or (name.startswith(stem) and name[len(stem) :].isdigit() and int(name[len(stem) :]) >= 2)


def judge(name: str, table: str, columns: tuple[str, ...], *, plain: bool, comment: str | None) -> tuple[bool, str]:
    """(built by the kit, how that is known or why not) for one INVALID index (pure)."""
    if comment is not None and comment.startswith(MARKER):
        return True, "the kit's marker is on it"
    if comment is None and plain and columns and kit_named(name, table, columns):
        return (
            True,
            f"named as the kit names its index on {table} ({', '.join(columns)}): a build that ended before its marker",
        )
    if name.startswith("kit_"):
        return (
            False,
            "named kit_... but not the kit's (no marker, and not the name and shape the kit gives its indexes)",
        )
    return False, "not the kit's (no marker)"


def find(conn: psycopg.Connection) -> list[Leftover]:
    """Every INVALID index of the database that backs no constraint, judged."""
    out = []
    for schema, name, table, definition, comment, plain, columns, pid, _app in conn.execute(INVALID).fetchall():
        kit, why = judge(name, table, tuple(columns), plain=bool(plain), comment=comment)
        out.append(Leftover(schema, name, table, definition, kit, why, building_pid=pid))
    return out


def review(engine: Engine, *, out: Callable[[str], None]) -> tuple[Leftover, ...]:
    """What an apply would do with each INVALID index (a dry run: nothing is changed)."""
    with sessions.connect(engine, app="dbperf-kit-plan") as conn:
        found = find(conn)
    done = tuple(_left(f) if f.building_pid or not f.kit else f.but(action="would drop") for f in found)
    for f in done:
        out(_line(f))
    return done


def repair(
    engine: Engine,
    *,
    lock: ApplyLock,
    out: Callable[[str], None],
    wait_s: float = 15.0,
    lock_timeout_ms: int = 2_000,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[Leftover, ...]:
    """Under the apply lock, before planning. Steps: 1. find the INVALID indexes; 2. wait for the
    builds still working on the kit's — under this lock, orphans of a process that died — for up
    to ``wait_s``, then cancel those that are the kit's; look again; 3. the pre-flight, when there is
    anything to drop; 4. drop each of the kit's concurrently, report every other."""
    url = url_of(engine)
    with sessions.connect(url, app="dbperf-kit-plan") as conn:
        lock.require(conn)
        found = find(conn)  # 1.
        if any(f.kit and f.building_pid for f in found):
            found = _outwait(conn, found, wait_s=wait_s, sleep=sleep)  # 2.
    drop = [f for f in found if f.kit and not f.building_pid]
    if drop:
        preflight.check(engine, tables=sorted({(f.schema, f.table) for f in drop})).require_safe()  # 3.
    done = []
    for f in found:  # 4.
        if f in drop:
            f = _drop(url, f, lock_timeout_ms=lock_timeout_ms)
        elif not f.action:
            f = _left(f)
        out(_line(f))
        done.append(f)
    return tuple(done)


def _outwait(conn: psycopg.Connection, found: list[Leftover], *, wait_s: float, sleep) -> list[Leftover]:
    """The INVALID indexes once the kit's orphaned builds have ended. A build of the kit's own
    session still running after ``wait_s`` is cancelled (the server checks a build session's
    client every second: one still running lost its check, or is on a server older than 14)."""
    deadline = time.monotonic() + wait_s
    while any(f.kit and f.building_pid for f in found) and time.monotonic() < deadline:
        sleep(0.2)
        found = find(conn)
    cancelled = set()
    for f in found:
        if f.kit and f.building_pid and _application(conn, f.building_pid) == BUILD_APP:
            conn.execute(CANCEL, [f.building_pid])
            cancelled.add(f.building_pid)
    if cancelled:
        sleep(1.0)
        found = find(conn)
    return found


def _application(conn: psycopg.Connection, pid: int) -> str | None:
    row = conn.execute("SELECT /* kit */ application_name FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
    return row[0] if row else None


def _drop(url: str, f: Leftover, *, lock_timeout_ms: int) -> Leftover:
    try:
        drop_index(url, f.schema, f.name, timeouts=(f"{lock_timeout_ms}ms", "10min"))
    except psycopg.Error as exc:  # the drop waits for the same transactions a build waits for
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f.but(action=f"drop failed: {first}; apply again drops it once that is over")
    return f.but(action="dropped")


def _left(f: Leftover) -> Leftover:
    if f.building_pid:
        return f.but(action=f"left: a build (session {f.building_pid}) is working on it now")
    return f.but(action="left: not the kit's")


def _line(f: Leftover) -> str:
    if f.action in ("dropped", "would drop"):
        return f"{f.action} INVALID leftover {f.qualified} ({f.why})"
    if f.action.startswith("drop failed"):
        return f"INVALID leftover {f.qualified}: {f.action}"
    if f.kit:
        return f"INVALID leftover {f.qualified}: {f.action.removeprefix('left: ')}; not touched"
    return (
        f"INVALID index {f.qualified} is {f.why}: not touched; it slows every write to {f.table} — "
        f"drop it (DROP INDEX CONCURRENTLY) and build it again if it is wanted"
    )
