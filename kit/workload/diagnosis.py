"""Why is each top statement slow? One cause per statement, in a sentence a DBA can act on, with the
evidence in figures and the remedy — from what the server already keeps and what the workload shows:

* **where its time goes**, from pg_stat_statements' counters (read by version: planning time from 13
  with ``pg_stat_statements.track_planning``, JIT from 15, I/O time as ``blk_read_time`` up to 16 and
  ``shared_blk_read_time`` from 17, where ``track_io_timing`` is on): planning vs execution, blocks read
  from disk vs found in shared buffers, temporary blocks written (a sort or hash spilling), JIT;
* **what it waits on** while the workload runs (:mod:`kit.workload.waits`): CPU, IO, Lock, LWLock...;
* **its plan** on the workload's own values (:mod:`kit.workload.insights`, from the fix loop's
  measurement), when there is one.

* **the tables it reads**: their dead rows as the statistics collector estimates them, and their pages
  against what their live rows need (pruned dead rows leave space that scans still read).

The first cause that holds, in this order: lock waits (hot rows), temp spills, disk reads, a bloated
table (8 MB or more, half its rows dead or half its pages unused), planning, JIT, a plan insight, many fast calls, and else
the work it asks for.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import pandas as pd
from sqlalchemy import Connection, Engine, text

from kit.sqltext.fingerprint import shape
from kit.workload.insights import Insight
from kit.workload.model import Statement
from kit.workload.waits import WaitProfile

Cause = Literal["hot_rows", "lock_waits", "spill", "io", "bloat", "planning", "jit", "plan", "frequency", "work"]

LOCK_SHARE: Final = 50.0  # % of a statement's samples waiting on locks
MIN_SAMPLES: Final = 10
IO_SHARE: Final = 50.0  # % of its samples on IO, or of its blocks read from disk
JIT_SHARE: Final = 30.0
BLOATED_PAGES, BLOATED_PCT = 1000, 50.0  # a table of 8 MB+ with half its rows dead or half its pages unused
FREQUENT_CALLS, FAST_MS = 1000, 1.0
_FIRST: Final = ("create_statistics", "work_mem", "vacuum", "index", "analyze", "advice")

# pg_stat_statements column -> the name read here; the first present of each tuple is used
_COLUMNS: Final = {
    "calls": ("calls",),
    "exec_ms": ("total_exec_time", "total_time"),
    "plan_ms": ("total_plan_time",),
    "rows": ("rows",),
    "hit": ("shared_blks_hit",),
    "read": ("shared_blks_read",),
    "temp_written": ("temp_blks_written",),
    "io_ms": ("shared_blk_read_time", "blk_read_time"),
    "wal_bytes": ("wal_bytes",),
}
_JIT = ("jit_generation_time", "jit_inlining_time", "jit_optimization_time", "jit_emission_time", "jit_deform_time")
COLUMNS_OF = "SELECT /* kit */ attname FROM pg_attribute WHERE attrelid = 'pg_stat_statements'::regclass AND attnum > 0"


@dataclass(frozen=True)
class Breakdown:
    """One statement's cumulative counters (None: this server's pg_stat_statements has no such column)."""

    calls: float
    exec_ms: float
    plan_ms: float | None
    rows: float
    hit: float
    read: float
    temp_written: float
    io_ms: float | None
    wal_bytes: float | None
    jit_ms: float | None

    @property
    def read_pct(self) -> float:
        blocks = self.hit + self.read
        return 100.0 * self.read / blocks if blocks else 0.0


def breakdown(conn: Connection, queryids: list[int]) -> dict[int, Breakdown]:
    """The counters of ``queryids`` in this database, whichever columns this version has."""
    have = {r[0] for r in conn.execute(text(COLUMNS_OF))}
    picked = {name: next((c for c in options if c in have), None) for name, options in _COLUMNS.items()}
    exprs = [f"sum(s.{col})::float8" if col else "NULL::float8" for col in picked.values()]
    jit = [c for c in _JIT if c in have]
    exprs.append("(" + " + ".join(f"sum(s.{c})" for c in jit) + ")::float8" if jit else "NULL::float8")
    toplevel = "AND s.toplevel" if "toplevel" in have else ""
    query = (
        f"SELECT /* kit */ s.queryid, {', '.join(exprs)} FROM pg_stat_statements s "
        "WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        f"AND s.queryid = ANY(CAST(:ids AS bigint[])) {toplevel} GROUP BY s.queryid"
    )
    out = {}
    for row in conn.execute(text(query), {"ids": queryids}):
        values = dict(zip([*picked, "jit_ms"], row[1:], strict=True))
        out[int(row[0])] = Breakdown(
            calls=values["calls"] or 0.0,
            exec_ms=values["exec_ms"] or 0.0,
            plan_ms=values["plan_ms"],
            rows=values["rows"] or 0.0,
            hit=values["hit"] or 0.0,
            read=values["read"] or 0.0,
            temp_written=values["temp_written"] or 0.0,
            io_ms=values["io_ms"],
            wal_bytes=values["wal_bytes"],
            jit_ms=values["jit_ms"],
        )
    return out


@dataclass(frozen=True)
class Diagnosis:
    key: str
    queryid: int | None
    cause: Cause
    sentence: str  # the cause, with its evidence in figures
    remedy: str  # what to do, in words (never a function call)
    fix: str | None = None  # the class of fix the loop can apply and verify (None: advice only)
    waits: dict[str, float] = field(default_factory=dict)  # % of its samples per wait class


@dataclass(frozen=True)
class Dead:
    """A table's live rows, dead rows (the statistics collector's estimate) and pages: its pages now
    against what its live rows need at their average width (``pg_stats``) — dead rows pruned on a
    page leave that page's space unused, and every scan still reads it."""

    live: int
    dead: int
    pages: int
    needed_pages: int | None = None  # None: no column widths (never analyzed)

    @property
    def dead_pct(self) -> float:
        return 100.0 * self.dead / (self.live + self.dead) if self.live + self.dead else 0.0

    @property
    def wasted_pct(self) -> float:
        """Share of the table's pages its live rows do not need (0 when unknown)."""
        if not self.pages or self.needed_pages is None:
            return 0.0
        return max(0.0, 100.0 * (1 - self.needed_pages / self.pages))


# a heap tuple's header and line pointer, a page's usable bytes
_TUPLE_OVERHEAD, _PAGE_BYTES = 28, 8192 - 24
DEAD_ROWS = """SELECT /* kit */ s.schemaname, s.relname, s.n_live_tup, s.n_dead_tup, pg_relation_size(s.relid) / 8192,
       (SELECT sum(avg_width) FROM pg_stats p WHERE p.schemaname = s.schemaname AND p.tablename = s.relname),
       c.reltuples
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid"""


def dead_tables(rows: Iterable[Sequence[Any]]) -> dict[tuple[str, str], Dead]:
    """Per (schema, table), from the rows of :data:`DEAD_ROWS` (pure)."""
    out: dict[tuple[str, str], Dead] = {}
    for schema, name, live, dead, pages, width, analyzed in rows:
        live = int(live or 0)
        counted = float(analyzed) if analyzed is not None and analyzed >= 0 else float(live)  # ANALYZE's count
        needed = math.ceil(counted * (float(width) + _TUPLE_OVERHEAD) / _PAGE_BYTES) if width is not None else None
        out[(str(schema), str(name))] = Dead(live, int(dead or 0), int(pages or 0), needed)
    return out


def dead_rows(conn: Connection) -> dict[str, Dead]:
    """Per table of this database, by name as a statement names it (unqualified; of two schemas' the worse)."""
    out: dict[str, Dead] = {}
    for (_schema, name), found in dead_tables(conn.execute(text(DEAD_ROWS))).items():
        prior = out.get(name)
        if prior is None or found.wasted_pct + found.dead_pct > prior.wasted_pct + prior.dead_pct:
            out[name] = found
    return out


def diagnose(
    statements: tuple[Statement, ...] | list[Statement],
    counters: dict[int, Breakdown],
    waits: WaitProfile | None = None,
    plans: dict[str, tuple[Insight, ...]] | None = None,
    tables: dict[str, Dead] | None = None,
) -> tuple[Diagnosis, ...]:
    """One :class:`Diagnosis` per statement (pure)."""
    return tuple(
        _one(s, counters.get(s.queryid or 0), waits, (plans or {}).get(s.key, ()), tables or {}) for s in statements
    )


def diagnose_workload(
    engine: Engine,
    statements: tuple[Statement, ...] | list[Statement],
    waits: WaitProfile | None = None,
    plans: dict[str, tuple[Insight, ...]] | None = None,
) -> tuple[Diagnosis, ...]:
    """:func:`diagnose` with the statements' counters and the tables' dead rows read from ``engine``'s database."""
    if not statements:
        return ()
    with engine.connect() as conn:
        counters = breakdown(conn, [s.queryid for s in statements if s.queryid is not None])
        tables = dead_rows(conn)
    return diagnose(statements, counters, waits, plans, tables)


def _bloated(s: Statement, tables: dict[str, Dead]) -> tuple[str, Dead] | None:
    """The most bloated table the statement reads, when it is bloated enough to matter."""
    named = [(t, tables[t]) for t in shape(s.text).tables if t in tables]
    worst = max(named, key=lambda pair: max(pair[1].dead_pct, pair[1].wasted_pct), default=None)
    if worst is None or worst[1].pages < BLOATED_PAGES or max(worst[1].dead_pct, worst[1].wasted_pct) < BLOATED_PCT:
        return None
    return worst


def _one(
    s: Statement, b: Breakdown | None, waits: WaitProfile | None, plan: tuple[Insight, ...], tables: dict[str, Dead]
) -> Diagnosis:
    share = waits.share(s.queryid) if waits is not None else {}
    sampled = waits.count(s.queryid) if waits is not None else 0

    def found(cause: Cause, sentence: str, remedy: str, fix: str | None = None) -> Diagnosis:
        return Diagnosis(s.key, s.queryid, cause, sentence, remedy, fix, share)

    lock = share.get("Lock", 0.0)
    if sampled >= MIN_SAMPLES and lock >= LOCK_SHARE and waits is not None:
        event = waits.top_event(s.queryid, "Lock") or "Lock"
        at_once = waits.waiting_at_once.get(s.queryid or 0, 0)
        on_rows = event in {"Lock/transactionid", "Lock/tuple"}
        sentence = (
            f"{lock:.0f} % of its sampled time waiting on {event}"
            + (f", up to {at_once} sessions waiting at once" if at_once else "")
            + (": concurrent transactions update the same rows" if on_rows else "")
        )
        remedy = (
            "no index helps: shorten the transactions that hold these rows, or batch, queue or shard the "
            "counter they all update"
            if on_rows
            else "find the session holding the lock (pg_blocking_pids) and shorten what it does"
        )
        return found("hot_rows" if on_rows else "lock_waits", sentence, remedy)
    if b is not None and b.calls and b.temp_written / b.calls >= 1:
        per_call = b.temp_written / b.calls * 8 / 1024
        spill = next((i for i in plan if i.fix == "work_mem"), None)
        return found(
            "spill",
            f"it writes {per_call:,.1f} MB of temporary files per call"
            + (f" ({spill.evidence})" if spill else ": a sort or hash does not fit in work_mem"),
            "raise work_mem for the role or database that runs it, to the smallest value that removes the spill",
            "work_mem",
        )
    io = share.get("IO", 0.0)
    if (sampled >= MIN_SAMPLES and io >= IO_SHARE) or (b is not None and b.read >= 1000 and b.read_pct >= IO_SHARE):
        what = (
            f"{io:.0f} % of its sampled time on IO"
            if b is None or io >= IO_SHARE
            else f"{b.read_pct:.0f} % of its blocks"
        )
        return found(
            "io",
            f"{what} read from disk, not shared buffers",
            "read fewer pages (an index that fits the filter, a smaller row) or give shared_buffers the hot set",
        )
    if (bloat := _bloated(s, tables)) is not None:
        table, dead = bloat
        what = (
            f"{dead.dead:,} of {dead.live + dead.dead:,} rows are dead ({dead.dead_pct:.0f} %)"
            if dead.dead_pct >= dead.wasted_pct
            else f"{dead.pages:,} pages hold what about {dead.needed_pages:,} would ({dead.wasted_pct:.0f} % unused)"
        )
        return found(
            "bloat",
            f"it reads {table}, where {what}: its scans read pages of rows no one can see",
            f"VACUUM (ANALYZE) {table} so its dead rows' space is reused (and find what holds autovacuum back); "
            "to give the pages back, rewrite it: pg_repack online, or VACUUM FULL, which locks it",
            "vacuum",
        )
    if b is not None and b.plan_ms is not None and b.plan_ms > b.exec_ms and b.plan_ms / max(b.calls, 1) >= 0.1:
        return found(
            "planning",
            f"planning takes {b.plan_ms / max(b.calls, 1):,.2f} ms per call, more than executing "
            f"({b.exec_ms / max(b.calls, 1):,.2f} ms)",
            "prepare it once per session (the driver's prepared statements), or scan fewer partitions",
        )
    if b is not None and b.jit_ms and b.exec_ms and 100 * b.jit_ms / b.exec_ms >= JIT_SHARE:
        return found(
            "jit",
            f"JIT compilation takes {100 * b.jit_ms / b.exec_ms:.0f} % of its execution time",
            "raise jit_above_cost (or set jit = off) for the role that runs it",
        )
    if plan:
        first = min(plan, key=lambda i: _FIRST.index(i.fix))  # the one a fix answers best
        return found("plan", first.evidence, _remedy(first), first.fix if first.fix != "advice" else None)
    if s.calls >= FREQUENT_CALLS and s.mean_ms < FAST_MS:
        return found(
            "frequency",
            f"{s.calls:,} calls at {s.mean_ms:,.3f} ms each: its time is how often it runs",
            "run it less often: batch the loop that calls it once per row, or cache its result",
        )
    return found(
        "work",
        f"{s.mean_ms:.3g} ms per call for {s.rows_per_call:,.0f} row(s): its time is the work it asks for",
        "see its plan in the fix loop: an index, or asking for fewer rows",
    )


def _remedy(i: Insight) -> str:
    return {
        "create_statistics": f"CREATE STATISTICS on ({', '.join(i.columns)}) of {i.relation}, then ANALYZE it",
        "analyze": f"ANALYZE {i.relation or 'the table'}: its statistics are off",
        "work_mem": "raise work_mem for the role that runs it",
        "index": f"an index on the filtered column(s) of {i.relation or 'the table'}",
        "vacuum": f"VACUUM {i.relation or 'the table'}: its visibility map is stale",
        "advice": "see the evidence: how the statement is written or joined",
    }[i.fix]


def to_frame(found: tuple[Diagnosis, ...]) -> pd.DataFrame:
    cols = ["key", "cause", "sentence", "remedy", "fix", "cpu_pct", "io_pct", "lock_pct"]
    rows = [
        {
            "key": d.key,
            "cause": d.cause,
            "sentence": d.sentence,
            "remedy": d.remedy,
            "fix": d.fix,
            "cpu_pct": d.waits.get("CPU", 0.0),
            "io_pct": d.waits.get("IO", 0.0),
            "lock_pct": d.waits.get("Lock", 0.0),
        }
        for d in found
    ]
    return pd.DataFrame(rows, columns=cols)
