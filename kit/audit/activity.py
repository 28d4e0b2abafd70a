"""Sessions and plans: connections by state, idle-in-transaction sessions, EXPLAIN of arbitrary
text rolled back (talks to PostgreSQL, read-only)."""

from __future__ import annotations

import pandas as pd
from pglast import parse_sql
from pglast.parser import ParseError
from sqlalchemy import Connection, Engine, text

from kit.audit.base import CheckResult, frame, result
from kit.errors import ConfigError

CONNECTIONS = """SELECT /* kit */ coalesce(state, backend_type) AS state, count(*) AS sessions,
       max(extract(epoch FROM now() - state_change))::float8 AS longest_s,
       (SELECT setting::int FROM pg_settings WHERE name = 'max_connections') AS max_connections
FROM pg_stat_activity WHERE datname = current_database() OR datname IS NULL
GROUP BY 1 ORDER BY 2 DESC"""


def connections(conn: Connection, *, idle_tx_s: float = 60.0) -> CheckResult:
    """Sessions by state; idle-in-transaction for more than ``idle_tx_s`` is a finding."""
    rows = frame(conn, CONNECTIONS)
    rows["severity"] = [
        "high" if str(s).startswith("idle in transaction") and (x or 0) >= idle_tx_s else "info"
        for s, x in zip(rows["state"], rows["longest_s"], strict=False)
    ]
    rows["remediation"] = [
        "SET idle_in_transaction_session_timeout = '5min'; and fix the code that leaves transactions open"
        if s != "info"
        else ""
        for s in rows["severity"]
    ]
    return result(
        "connections",
        rows,
        ok=f"no session idle in transaction for {idle_tx_s:.0f}s or more",
        found="{n} states with sessions idle in transaction too long",
    )


def _one_statement(query: str) -> str:
    try:
        stmts = parse_sql(query)
    except ParseError as exc:
        raise ConfigError(f"cannot EXPLAIN: syntax error ({exc.args[0]}); fix the query text") from exc
    if len(stmts) != 1:
        raise ConfigError(f"cannot EXPLAIN {len(stmts)} statements at once; pass exactly one")
    return query.strip().rstrip(";")


def explain(
    engine: Engine, query: str, *, analyze: bool = False, timeout_ms: int = 5_000, params: dict | None = None
) -> pd.DataFrame:
    """EXPLAIN (optionally ANALYZE) one statement inside a transaction that is rolled back.

    Returns one row per plan node: depth, node, relation, index, rows, cost (and actual time).
    """
    stmt = _one_statement(query)
    opts = "ANALYZE, BUFFERS, FORMAT JSON" if analyze else "FORMAT JSON"  # two constants
    with engine.connect() as conn:
        try:
            conn.execute(text("SELECT /* kit */ set_config('statement_timeout', :t, true)"), {"t": f"{timeout_ms}ms"})
            # SQLAlchemy always hands psycopg a parameter set, so a literal '%' must be doubled.
            body = stmt if params else stmt.replace("%", "%%")
            plan = conn.exec_driver_sql(f"EXPLAIN ({opts}) {body}", params or {}).scalar_one()
        finally:
            conn.rollback()  # EXPLAIN ANALYZE runs the statement: never keep what it wrote
    out: list[dict] = []

    def walk(node: dict, depth: int) -> None:
        out.append(
            {
                "depth": depth,
                "node": node["Node Type"],
                "relation": node.get("Relation Name"),
                "index": node.get("Index Name"),
                "plan_rows": node.get("Plan Rows"),
                "total_cost": node.get("Total Cost"),
                "actual_ms": node.get("Actual Total Time"),
            }
        )
        for child in node.get("Plans", ()):
            walk(child, depth + 1)

    walk(plan[0]["Plan"], 0)
    return pd.DataFrame(out)
