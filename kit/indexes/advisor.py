"""What-if index advice with hypopg: for the top queries, try one- and two-column hypothetical
indexes and keep those that cut the planner's cost by half (talks to PostgreSQL; creates no
real index, and every hypothetical one is dropped in a finally)."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import pandas as pd
import psycopg
from pglast import ast, parse_sql
from pglast.parser import ParseError
from pglast.visitors import Visitor
from psycopg import sql
from sqlalchemy import Engine

from kit.audit.base import ENABLE
from kit.indexes import sessions

MIN_DROP = 0.5
_MAX_CANDIDATES = 12
_PARAM = re.compile(r"\$(\d+)")


@dataclass(frozen=True)
class Advice:
    status: str  # "ok" | "unavailable"
    message: str
    rows: tuple[dict, ...]

    def to_frame(self) -> pd.DataFrame:
        cols = ["query", "table", "columns", "base_cost", "cost", "drop_pct", "verdict", "reason", "create_sql"]
        return pd.DataFrame(list(self.rows), columns=cols)

    @property
    def suggestions(self) -> list[dict]:
        return [r for r in self.rows if r["verdict"] == "suggest"]


class _Columns(Visitor):
    """Column references of WHERE / ORDER BY, as (qualifier or None, column)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str | None, str]] = []

    def visit_ColumnRef(self, ancestors, node):
        names = [f.sval for f in node.fields if isinstance(f, ast.String)]
        if names:
            self.found.append((names[-2] if len(names) > 1 else None, names[-1]))


def candidate_columns(query: str) -> dict[str, list[str]]:
    """{table: [columns in WHERE, then ORDER BY]} for a SELECT on named tables (pure)."""
    try:
        (raw,) = parse_sql(query)
    except (ParseError, ValueError):
        return {}
    stmt = raw.stmt
    if not isinstance(stmt, ast.SelectStmt) or not stmt.fromClause:
        return {}
    tables = {}
    for item in stmt.fromClause:
        if isinstance(item, ast.RangeVar):
            tables[item.alias.aliasname if item.alias else item.relname] = item.relname
    if not tables:
        return {}
    out: dict[str, list[str]] = {}
    for part in (stmt.whereClause, stmt.sortClause):
        if part is None:
            continue
        cols = _Columns()
        cols(part)
        for qual, col in cols.found:
            table = tables.get(qual) if qual else (next(iter(tables.values())) if len(tables) == 1 else None)
            if table and col not in out.setdefault(table, []):
                out[table].append(col)
    return out


def _deallocate(conn: psycopg.Connection) -> None:
    if conn.execute("SELECT 1 FROM pg_prepared_statements WHERE name = 'kit_advise'").fetchone():
        conn.execute("DEALLOCATE kit_advise")


def _cost(conn: psycopg.Connection, stmt: str, nparams: int) -> tuple[float, list[str]]:
    """Planner cost and index names of ``stmt`` (a generic plan when it has $n parameters)."""
    if nparams:
        # Prepared afresh each time: a cached generic plan would not see a new hypothetical index.
        _deallocate(conn)
        conn.execute(sql.SQL("PREPARE kit_advise AS {}").format(sql.SQL(stmt)))
        args = sql.SQL(", ").join([sql.SQL("NULL")] * nparams)
        plan = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) EXECUTE kit_advise ({})").format(args)).fetchone()[0]
    else:
        plan = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) {}").format(sql.SQL(stmt))).fetchone()[0]
    from kit.indexes.verify import plan_indexes

    top = plan[0]["Plan"]
    return float(top["Total Cost"]), plan_indexes(top)


def _try(conn, query: str, nparams: int, table: str, columns: tuple[str, ...], base: float) -> dict:
    create = sql.SQL("CREATE INDEX ON {} ({})").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))).as_string(conn)
    try:
        conn.execute("/* kit */ SELECT hypopg_create_index(%s)", [create])
        cost, used = _cost(conn, query, nparams)
    finally:
        conn.execute("/* kit */ SELECT hypopg_reset()")
    drop = (base - cost) / base if base > 0 else 0.0
    hypo_used = any("btree" in u and u.startswith("<") for u in used)
    if not hypo_used:
        verdict, reason = "rejected", "the planner did not use it"
    elif drop >= MIN_DROP:
        verdict, reason = "suggest", f"cost drops {drop:.0%}"
    else:
        verdict, reason = "rejected", f"cost drops only {drop:.0%} (< {MIN_DROP:.0%})"
    return {"query": query[:200], "table": table, "columns": ", ".join(columns), "base_cost": round(base, 2),
            "cost": round(cost, 2), "drop_pct": round(100 * drop, 1), "verdict": verdict, "reason": reason,
            "create_sql": create.replace("CREATE INDEX", "CREATE INDEX CONCURRENTLY") if verdict == "suggest" else ""}


TOP = """/* kit */
SELECT query FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND query NOT LIKE '%%/* kit */%%' AND query ~* '^\\s*select\\M'
ORDER BY total_exec_time DESC LIMIT %s"""


def _top_queries(conn: psycopg.Connection, top: int) -> list[str]:
    try:
        return [r[0] for r in conn.execute(TOP, [top]).fetchall()]
    except psycopg.Error:
        return []


def advise(engine: Engine, *, queries: list[str] | None = None, top: int = 5) -> Advice:
    """Try hypothetical indexes for ``queries`` (default: the top SELECTs by total time)."""
    url = engine.url.render_as_string(hide_password=False)
    with sessions.connect(url, app="dbperf-kit-advisor") as conn:
        conn.prepare_threshold = None  # psycopg's own prepared statements would mix with ours
        if not conn.execute("/* kit */ SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'hypopg')").fetchone()[0]:
            return Advice("unavailable", f"hypopg is not usable here: {ENABLE['hypopg']}", ())
        queries = list(queries) if queries is not None else _top_queries(conn, top)
        conn.execute("SET plan_cache_mode = force_generic_plan")  # EXPLAIN EXECUTE of $n queries
        rows: list[dict] = []
        for query in queries:
            nparams = max(map(int, _PARAM.findall(query)), default=0)
            try:
                base, _ = _cost(conn, query, nparams)
            except psycopg.Error as exc:
                rows.append({"query": query[:200], "verdict": "skipped", "reason": str(exc).splitlines()[0]})
                continue
            for table, cols in candidate_columns(query).items():
                combos = [(c,) for c in cols] + list(itertools.permutations(cols, 2))
                for columns in combos[:_MAX_CANDIDATES]:
                    try:
                        rows.append(_try(conn, query, nparams, table, columns, base))
                    except psycopg.Error as exc:
                        rows.append({"query": query[:200], "table": table, "columns": ", ".join(columns),
                                     "verdict": "rejected", "reason": str(exc).strip().splitlines()[0]})
        _deallocate(conn)
    return Advice("ok", f"{sum(r['verdict'] == 'suggest' for r in rows)} suggestions for {len(queries)} queries",
                  tuple(rows))
