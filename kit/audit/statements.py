"""Top queries from pg_stat_statements: ranking, snapshots and their difference; the statistics
are never reset (talks to PostgreSQL, read-only)."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import Connection, Engine

from kit import redact
from kit.audit.base import CheckResult, extension_missing, frame, result, run_check, unavailable

TOP_QUERIES = """/* kit */
SELECT s.queryid, left(s.query, 300) AS query, s.calls, s.total_exec_time AS total_ms,
       s.mean_exec_time AS mean_ms, s.rows,
       100 * s.total_exec_time / nullif(sum(s.total_exec_time) OVER (), 0) AS share_pct,
       100 * s.shared_blks_hit / nullif(s.shared_blks_hit + s.shared_blks_read, 0) AS hit_pct
FROM pg_stat_statements s
WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND s.query NOT LIKE '%/* kit */%' AND s.query ~* '^\\s*(select|with|update|delete)\\M'
ORDER BY s.total_exec_time DESC
LIMIT :limit"""


def top_queries(conn: Connection, *, limit: int = 10) -> CheckResult:
    """The queries that took the most total time (the kit's own are left out)."""
    why = extension_missing(conn, "pg_stat_statements")
    if why:
        return unavailable("top_queries", why)
    rows = frame(conn, TOP_QUERIES, {"limit": limit})
    rows["query"] = rows["query"].map(redact.statement)
    rows["severity"] = ["high" if (s or 0) >= 20 and m >= 10 else "medium" if m >= 10 else "info"
                        for s, m in zip(rows["share_pct"], rows["mean_ms"])]
    rows["remediation"] = ["kit.audit.explain(engine, query) and kit.indexes.advise(engine)"
                           if s != "info" else "" for s in rows["severity"]]
    return result("top_queries", rows, ok="no query averages 10 ms or more",
                  found="{n} queries average 10 ms or more")


SNAPSHOT = """/* kit */
SELECT s.queryid, left(s.query, 300) AS query, s.calls, s.total_exec_time AS total_ms, s.rows
FROM pg_stat_statements s
WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND s.query NOT LIKE '%/* kit */%'"""


def snapshot(engine: Engine) -> pd.DataFrame:
    """The counters of every statement now (empty frame when pg_stat_statements is unusable)."""
    def take(conn: Connection) -> CheckResult:
        why = extension_missing(conn, "pg_stat_statements")
        if why:
            return unavailable("snapshot", why)
        rows = frame(conn, SNAPSHOT)
        rows["query"] = rows["query"].map(redact.statement)
        return CheckResult("snapshot", "ok", "", rows)

    res = run_check(engine, take)
    cols = ["queryid", "query", "calls", "total_ms", "rows"]
    return res.rows if res.status == "ok" else pd.DataFrame(columns=cols)


def diff(before: pd.DataFrame, after: pd.DataFrame, *, limit: int = 20) -> pd.DataFrame:
    """What ran between two snapshots: calls and time per statement, busiest first (pure)."""
    cols = ["queryid", "query", "calls", "total_ms", "mean_ms", "rows"]
    if after.empty:
        return pd.DataFrame(columns=cols)
    merged = after.merge(before[["queryid", "calls", "total_ms", "rows"]], on="queryid", how="left",
                         suffixes=("", "_before")).fillna({"calls_before": 0, "total_ms_before": 0, "rows_before": 0})
    out = pd.DataFrame({
        "queryid": merged["queryid"], "query": merged["query"],
        "calls": merged["calls"] - merged["calls_before"],
        "total_ms": merged["total_ms"] - merged["total_ms_before"],
        "rows": merged["rows"] - merged["rows_before"],
    })
    out = out[out["calls"] > 0].copy()
    out["mean_ms"] = out["total_ms"] / out["calls"]
    return out.sort_values("total_ms", ascending=False).head(limit)[cols].reset_index(drop=True)
