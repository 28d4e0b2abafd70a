"""Table checks: sequential-scan-heavy tables, cache hit rates, vacuum/analyze staleness,
transaction-id wraparound, sequences near exhaustion (talks to PostgreSQL, read-only)."""

from __future__ import annotations

from psycopg import sql as psql
from sqlalchemy import Connection

from kit.audit.base import CheckResult, frame, result

SEQ_SCANS = """SELECT /* kit */ s.schemaname AS schema, s.relname AS "table", s.seq_scan, s.seq_tup_read,
       coalesce(s.idx_scan, 0) AS idx_scan, greatest(s.n_live_tup, c.reltuples, 0)::bigint AS live_rows,
       pg_table_size(s.relid) AS table_bytes,
       round(s.seq_tup_read::numeric / nullif(s.seq_scan, 0)) AS rows_per_scan,
       round(100.0 * s.seq_scan / nullif(s.seq_scan + coalesce(s.idx_scan, 0), 0), 1) AS seq_pct
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
WHERE s.seq_scan > 0
ORDER BY s.seq_tup_read DESC"""


def grade_seq_scans(rows, *, min_scans: int, min_rows: int):
    """Severity per table (pure): a finding needs ``min_scans`` sequential scans of a table of
    ``min_rows`` rows; high when they are 90 % of its scans and each reads about the whole table."""
    sev = []
    for r in rows.itertuples():
        seq_pct = float(r.seq_pct or 0)
        if r.seq_scan < min_scans or r.live_rows < min_rows:
            sev.append("info")
        elif seq_pct >= 90 and float(r.rows_per_scan or 0) >= 0.5 * r.live_rows:
            sev.append("high")
        elif seq_pct >= 50:
            sev.append("medium")
        else:
            sev.append("info")
    return sev


def seq_scan_tables(conn: Connection, *, min_rows: int = 10_000, min_scans: int = 50) -> CheckResult:
    """Tables of ``min_rows`` rows or more read mostly by sequential scans, ``min_scans`` times or more
    (one scan of a big table, say a nightly export, is no finding)."""
    rows = frame(conn, SEQ_SCANS)
    rows["severity"] = grade_seq_scans(rows, min_scans=min_scans, min_rows=min_rows)
    rows["remediation"] = [
        f"kit.fixes.plan_fixes(engine, workload): the statements scanning it, measured, with index candidates for {t}"
        if s != "info"
        else ""
        for t, s in zip(rows["table"], rows["severity"], strict=False)
    ]
    return result(
        "seq_scan_tables",
        rows,
        ok=f"no table of {min_rows}+ rows is mostly read by {min_scans}+ sequential scans",
        found="{n} tables are mostly read by sequential scans",
    )


CACHE_HIT = """SELECT /* kit */ 'heap' AS kind, sum(heap_blks_hit) AS hits, sum(heap_blks_read) AS reads FROM pg_statio_user_tables
UNION ALL
SELECT 'index', sum(idx_blks_hit), sum(idx_blks_read) FROM pg_statio_user_indexes"""


def cache_hit_rates(conn: Connection, *, target_pct: float = 99.0) -> CheckResult:
    """Heap and index buffer cache hit rates (below 99% on a busy database: more memory or fewer reads)."""
    rows = frame(conn, CACHE_HIT)
    total = (rows["hits"].fillna(0) + rows["reads"].fillna(0)).astype(float)
    rows["hit_pct"] = (100 * rows["hits"].fillna(0).astype(float) / total.where(total > 0)).round(2)
    rows["severity"] = [
        "medium" if t >= 10_000 and (h or 100) < target_pct else "info"
        for t, h in zip(total, rows["hit_pct"], strict=False)
    ]
    rows["remediation"] = [
        "raise shared_buffers, or index the queries that read most blocks" if s != "info" else ""
        for s in rows["severity"]
    ]
    return result(
        "cache_hit_rates",
        rows,
        ok=f"cache hit rates at or above {target_pct}% (or too few reads)",
        found="{n} cache hit rates below target",
    )


STALENESS = """SELECT /* kit */ schemaname AS schema, relname AS "table", n_live_tup AS live_rows, n_dead_tup AS dead_rows,
       n_mod_since_analyze AS modified_since_analyze,
       greatest(last_vacuum, last_autovacuum) AS last_vacuum,
       greatest(last_analyze, last_autoanalyze) AS last_analyze
FROM pg_stat_user_tables ORDER BY n_dead_tup DESC"""


def statistics_state(live_rows: int, modified: int, last_analyze, *, min_rows: int, stale_pct: float) -> str:
    """ "never analyzed", "stale" or "fresh" (pure): stale once ``stale_pct`` % of the rows (and at
    least ``min_rows``) changed since the last ANALYZE — twice what makes autovacuum analyze, so
    autovacuum is off, or not keeping up."""
    if last_analyze is None and live_rows >= min_rows:
        return "never analyzed"
    if modified >= max(min_rows, stale_pct / 100 * max(live_rows, 1)):
        return "stale"
    return "fresh"


def vacuum_staleness(
    conn: Connection, *, dead_pct: float = 20.0, min_rows: int = 1_000, stale_pct: float = 20.0
) -> CheckResult:
    """Tables with many dead rows, or whose statistics are missing or stale (see :func:`statistics_state`)."""
    rows = frame(conn, STALENESS)
    sev, fix, state = [], [], []
    for r in rows.itertuples():
        live = max(int(r.live_rows), 1)
        stats = statistics_state(
            int(r.live_rows), int(r.modified_since_analyze), r.last_analyze, min_rows=min_rows, stale_pct=stale_pct
        )
        state.append(stats)
        name = psql.Identifier(r.schema, r.table).as_string(None)
        if r.dead_rows >= min_rows and 100 * r.dead_rows / live >= dead_pct:
            sev.append("medium")
            fix.append(f"VACUUM (ANALYZE) {name};")
        elif stats != "fresh":
            sev.append("medium")
            fix.append(f"ANALYZE {name};")
        else:
            sev.append("info")
            fix.append("")
    rows["statistics"], rows["severity"], rows["remediation"] = state, sev, fix
    return result(
        "vacuum_staleness", rows, ok="dead rows and statistics are fresh", found="{n} tables need VACUUM or ANALYZE"
    )


WRAPAROUND = """SELECT /* kit */ datname AS database, age(datfrozenxid) AS xid_age,
       round(100.0 * age(datfrozenxid) / 2147483647, 2) AS pct_to_wraparound
FROM pg_database ORDER BY 2 DESC"""


def xid_wraparound(conn: Connection) -> CheckResult:
    """How far each database is from transaction-id wraparound."""
    rows = frame(conn, WRAPAROUND)
    rows["severity"] = [
        "critical" if p >= 75 else "high" if p >= 50 else "info" for p in rows["pct_to_wraparound"].astype(float)
    ]
    rows["remediation"] = [
        f"VACUUM (FREEZE) in database {d}; look for long transactions blocking autovacuum" if s != "info" else ""
        for d, s in zip(rows["database"], rows["severity"], strict=False)
    ]
    return result(
        "xid_wraparound",
        rows,
        ok="every database is far from xid wraparound",
        found="{n} databases approach xid wraparound",
    )


SEQUENCES = """SELECT /* kit */ schemaname AS schema, sequencename AS sequence, data_type::text AS data_type, last_value, max_value,
       round(100.0 * coalesce(last_value, 0) / max_value, 4) AS used_pct
FROM pg_sequences ORDER BY used_pct DESC"""


def sequence_exhaustion(conn: Connection, *, warn_pct: float = 50.0) -> CheckResult:
    """Sequences that have used a large part of their range (an int4 id column runs out first)."""
    rows = frame(conn, SEQUENCES)
    rows["severity"] = [
        "critical" if p >= 90 else "high" if p >= warn_pct else "info" for p in rows["used_pct"].astype(float)
    ]
    rows["remediation"] = [
        f"ALTER SEQUENCE {s}.{q} AS bigint; and widen the column to bigint" if v != "info" else ""
        for s, q, v in zip(rows["schema"], rows["sequence"], rows["severity"], strict=False)
    ]
    return result(
        "sequence_exhaustion",
        rows,
        ok=f"no sequence has used {warn_pct}% of its range",
        found="{n} sequences near exhaustion",
    )
