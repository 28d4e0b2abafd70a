"""Top statements from pg_stat_statements: every kind of statement the application runs (the
kit's own, PostgreSQL's internal foreign-key checks and drivers' housekeeping left out), ranked and graded by their
share of the database's total execution time (PgHero's view); snapshots and their difference.
The statistics are never reset (talks to PostgreSQL, read-only; :func:`grade` and :func:`diff` are pure).
"""

from __future__ import annotations

import re

import pandas as pd
from sqlalchemy import Connection, Engine, text

from kit.audit.base import CheckResult, frame, result, run_check, unavailable
from kit.db import extensions
from kit.sqltext import redact
from kit.sqltext.refs import CONTROL, kind_of

# One row per statement (queryid), summed over the roles that ran it; top-level statements only
# where PostgreSQL 14+ says which are (with pg_stat_statements.track = all, statements nested in
# functions and in the kit's own EXPLAIN ANALYZE would otherwise count twice).
STATEMENTS = """SELECT /* kit */ s.queryid, min(left(s.query, :chars)) AS query, sum(s.calls)::bigint AS calls,
       sum(s.total_exec_time)::float8 AS total_ms, sum(s.rows)::bigint AS rows,
       sum(s.shared_blks_hit)::bigint AS blks_hit, sum(s.shared_blks_read)::bigint AS blks_read,
       sum(s.temp_blks_written)::bigint AS temp_written
FROM pg_stat_statements s
WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND s.query NOT LIKE '%/* kit */%' {toplevel}
GROUP BY s.queryid"""
HAS_TOPLEVEL = """SELECT /* kit */ EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'pg_stat_statements'::regclass
               AND attname = 'toplevel' AND NOT attisdropped)"""
# The statements PostgreSQL itself runs for foreign keys (ri_triggers.c): not the application's.
_INTERNAL = re.compile(r"^\s*SELECT 1 FROM ONLY .* OPERATOR\(pg_catalog\.=\)", re.S)
# What drivers send on their own when they connect or look up a type (SQLAlchemy's dialect, psycopg's
# TypeInfo): no index or ANALYZE changes them, and the kit's own sessions send them untagged.
_DRIVER = re.compile(
    r"^\s*(?:select pg_catalog\.version\(\)|select current_schema\(\)"
    r"|show (?:standard_conforming_strings|transaction isolation level)"
    r"|SELECT\s+typname AS name, oid, typarray AS array_oid)",
    re.S | re.I,
)


def statements_frame(conn: Connection, *, chars: int = 300) -> pd.DataFrame:
    """Every statement of this database in pg_stat_statements but the kit's own: queryid, query
    (up to ``chars`` characters, *not* redacted: callers redact before writing), kind, calls,
    total_ms, mean_ms, rows, rows_per_call, hit_pct. Raises when the view is unusable."""
    toplevel = bool(conn.execute(text(HAS_TOPLEVEL)).scalar_one())
    rows = frame(conn, STATEMENTS.format(toplevel="AND s.toplevel" if toplevel else ""), {"chars": chars})
    rows = rows[~rows["query"].map(lambda q: bool(_INTERNAL.match(q or "") or _DRIVER.match(q or "")))].copy()
    rows["kind"] = rows["query"].map(kind_of)
    rows["mean_ms"] = rows["total_ms"] / rows["calls"].where(rows["calls"] > 0)
    rows["rows_per_call"] = rows["rows"] / rows["calls"].where(rows["calls"] > 0)
    blocks = (rows["blks_hit"] + rows["blks_read"]).astype(float)
    rows["hit_pct"] = 100 * rows["blks_hit"].astype(float) / blocks.where(blocks > 0)
    return rows.sort_values("total_ms", ascending=False).reset_index(drop=True)


def grade(
    rows: pd.DataFrame,
    *,
    min_calls: int = 20,
    min_total_ms: float = 100.0,
    high_pct: float = 20.0,
    medium_pct: float = 5.0,
    slow_ms: float = 500.0,
) -> pd.DataFrame:
    """Share of total time, severity and remediation per statement (pure).

    A statement is a finding only with ``min_calls`` calls and ``min_total_ms`` of total time:
    high from ``high_pct`` % of the database's time, medium from ``medium_pct`` % or when a call
    averages ``slow_ms``. Transaction control (BEGIN, SET, ...) is never a finding."""
    out = rows.copy()
    total = float(out["total_ms"].sum()) if len(out) else 0.0
    out["share_pct"] = 100 * out["total_ms"] / total if total > 0 else 0.0
    sev = []
    for r in out.itertuples():
        if r.kind in CONTROL or r.calls < min_calls or r.total_ms < min_total_ms:
            sev.append("info")
        elif r.share_pct >= high_pct:
            sev.append("high")
        elif r.share_pct >= medium_pct or (r.mean_ms or 0) >= slow_ms:
            sev.append("medium")
        else:
            sev.append("info")
    out["severity"] = sev
    out["remediation"] = [
        "measure it on the workload's own values and plan its fixes: `kit run` (a dry run) writes them to "
        "fixes.sql with the evidence; review it, then `kit run -p apply true` applies, measures, keeps or reverts"
        if s != "info"
        else ""
        for s in sev
    ]
    return out


_SHOWN = [
    "queryid",
    "query",
    "kind",
    "calls",
    "mean_ms",
    "rows_per_call",
    "total_ms",
    "share_pct",
    "hit_pct",
    "severity",
    "remediation",
]


def top_queries(conn: Connection, *, limit: int = 10, min_calls: int = 20, min_total_ms: float = 100.0) -> CheckResult:
    """The statements that took the largest share of the database's time (all kinds; the kit's own
    left out), with calls, mean and rows per call; too few calls or too little time is no finding."""
    why = extensions.missing(conn, "pg_stat_statements")
    if why:
        return unavailable("top_queries", why)
    rows = grade(statements_frame(conn), min_calls=min_calls, min_total_ms=min_total_ms).head(limit)
    rows["query"] = rows["query"].map(redact.statement)
    return result(
        "top_queries",
        rows[_SHOWN].reset_index(drop=True),
        ok=f"no statement with {min_calls}+ calls takes a large share of the database's time",
        found="{n} statements take a large share of the database's time",
    )


def snapshot(engine: Engine) -> pd.DataFrame:
    """The counters of every statement now, texts redacted (empty frame when pg_stat_statements is unusable)."""

    def take(conn: Connection) -> CheckResult:
        why = extensions.missing(conn, "pg_stat_statements")
        if why:
            return unavailable("snapshot", why)
        rows = statements_frame(conn)[["queryid", "query", "calls", "total_ms", "rows"]]
        rows["query"] = rows["query"].map(redact.statement)
        return CheckResult("snapshot", "ok", "", rows)

    res = run_check(engine, take)
    cols = ["queryid", "query", "calls", "total_ms", "rows"]
    return res.rows if res.status == "ok" else pd.DataFrame(columns=cols)


def diff(before: pd.DataFrame, after: pd.DataFrame, *, limit: int | None = 20) -> pd.DataFrame:
    """What ran between two snapshots: calls and time per statement, busiest first (pure)."""
    cols = ["queryid", "query", "calls", "total_ms", "mean_ms", "rows"]
    if after.empty:
        return pd.DataFrame(columns=cols)
    merged = after.merge(
        before[["queryid", "calls", "total_ms", "rows"]], on="queryid", how="left", suffixes=("", "_before")
    ).fillna({"calls_before": 0, "total_ms_before": 0, "rows_before": 0})
    out = pd.DataFrame(
        {
            "queryid": merged["queryid"],
            "query": merged["query"],
            "calls": merged["calls"] - merged["calls_before"],
            "total_ms": merged["total_ms"] - merged["total_ms_before"],
            "rows": merged["rows"] - merged["rows_before"],
        }
    )
    out = out[out["calls"] > 0].copy()
    out["mean_ms"] = out["total_ms"] / out["calls"]
    out = out.sort_values("total_ms", ascending=False)
    return (out.head(limit) if limit else out)[cols].reset_index(drop=True)
