"""Before building an index: its estimated size, the free disk, the table's write rate
(talks to PostgreSQL; read-only, hypothetical indexes only)."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from kit.db import extensions
from kit.errors import IndexBuildError
from kit.indexes.spec import IndexSpec

_FILLFACTOR = 0.9
_TUPLE_OVERHEAD = 16  # index tuple header + line pointer, bytes


@dataclass(frozen=True)
class BuildEstimate:
    name: str
    est_bytes: int
    est_source: str  # "hypopg" | "table statistics"
    table_bytes: int
    free_bytes: int | None  # None when the data directory is not on this machine or not visible
    writes_per_s: float
    warning: str  # "" when nothing to say


def hypothetical_sql(spec: IndexSpec) -> str:
    """The spec's CREATE INDEX without CONCURRENTLY / IF NOT EXISTS, as hypopg wants it."""
    return re.sub(r"\s+CONCURRENTLY\s+IF NOT EXISTS\s+", " ", spec.create_sql, count=1)


HYPO_SIZE = "SELECT /* kit */ hypopg_relation_size(indexrelid) FROM hypopg_create_index(%s)"


def hypopg_size(conn: psycopg.Connection, spec: IndexSpec) -> int:
    """Size of ``spec`` as hypopg estimates it; the hypothetical index is dropped at once."""
    try:
        row = conn.execute(HYPO_SIZE, [hypothetical_sql(spec)]).fetchone()
        assert row is not None, "hypopg_create_index returns the index it made"
        return int(row[0])
    finally:
        conn.execute("SELECT /* kit */ hypopg_reset()")


STATS_SIZE = """SELECT /* kit */ greatest(c.reltuples, 0)::float8 AS tuples, pg_relation_size(c.oid) AS table_bytes,
       coalesce((SELECT sum(s.avg_width) FROM pg_stats s
                 WHERE s.schemaname = %(schema)s AND s.tablename = %(table)s
                   AND s.attname = ANY(%(columns)s)), 8 * %(ncols)s)::float8 AS key_width
FROM pg_class c WHERE c.oid = to_regclass(format('%%I.%%I', %(schema)s::text, %(table)s::text))"""


def stats_size(conn: psycopg.Connection, spec: IndexSpec) -> tuple[int, int]:
    """(estimated index bytes, table bytes) from reltuples and pg_stats widths."""
    row = conn.execute(
        STATS_SIZE, {"schema": spec.schema, "table": spec.table, "columns": list(spec.columns), "ncols": len(spec.keys)}
    ).fetchone()
    if row is None:  # dropped since the status was read
        raise IndexBuildError(f"table {spec.qualified_table} of index {spec.name} does not exist; run apply again")
    tuples, table_bytes, width = row
    est = tuples * (width + _TUPLE_OVERHEAD) / _FILLFACTOR
    return int(max(est, 8192)), int(table_bytes)


DATA_DIR = "SELECT /* kit */ current_setting('data_directory', true)"


def free_disk(conn: psycopg.Connection) -> int | None:
    """Free bytes where the server keeps its data, when that directory is visible from here."""
    try:
        row = conn.execute(DATA_DIR).fetchone()
    except psycopg.Error:
        return None  # needs pg_read_all_settings
    assert row is not None, "DATA_DIR returns one row"
    data_dir = row[0]
    host = conn.info.host
    if not data_dir or (host and host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("/")):
        return None
    try:
        return shutil.disk_usage(Path(data_dir)).free
    except OSError:
        return None


WRITES = """SELECT /* kit */ relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables
WHERE schemaname = ANY(%(schemas)s)"""


def write_rates(
    conn: psycopg.Connection, *, schemas: list[str], sample_s: float, sleep: Callable[[float], None] = time.sleep
) -> dict[str, float]:
    """Rows written per second per table over a ``sample_s`` window (0 gives all zeros)."""
    first: dict[str, int] = dict(conn.execute(WRITES, {"schemas": schemas}).fetchall())
    if sample_s <= 0:
        return {t: 0.0 for t in first}
    sleep(sample_s)
    conn.execute("SELECT /* kit */ pg_stat_clear_snapshot()")
    second: dict[str, int] = dict(conn.execute(WRITES, {"schemas": schemas}).fetchall())
    return {t: max(second.get(t, 0) - n, 0) / sample_s for t, n in first.items()}


def estimate(
    conn: psycopg.Connection,
    specs: list[IndexSpec],
    *,
    sample_s: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, BuildEstimate]:
    """One :class:`BuildEstimate` per spec; never creates a real index."""
    hypo = extensions.usable(conn, "hypopg")
    free = free_disk(conn)
    rates = write_rates(conn, schemas=sorted({s.schema for s in specs}), sample_s=sample_s, sleep=sleep)
    out: dict[str, BuildEstimate] = {}
    for spec in specs:
        est, table_bytes = stats_size(conn, spec)
        source = "table statistics"
        if hypo:
            est, source = hypopg_size(conn, spec), "hypopg"
        rate = rates.get(spec.table, 0.0)
        warning = ""
        if free is not None and est * 2 > free:
            warning = f"needs ~{est * 2 // 2**20} MiB (build + sort), only {free // 2**20} MiB free"
        elif rate > 1000:
            warning = f"{rate:.0f} writes/s on {spec.table}: the build waits for writers and takes longer"
        out[spec.name] = BuildEstimate(spec.name, est, source, table_bytes, free, rate, warning)
    return out
