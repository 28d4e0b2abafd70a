"""N+1 and cache *candidates* from pg_stat_statements alone, without touching the application
(pure: statements, foreign keys and table activity come in, candidates go out).

- N+1 candidate: a SELECT called many times that returns about one row per call, looked up by
  ``column = $n`` on a column of a foreign key (either side): the shape of a loop in the
  application issuing one query per parent row. Its batched form takes the keys as an array
  (``= ANY($1)``), grouping by the key when the statement aggregates.
- Cache candidate: a hot read-only statement on tables that are rarely written, with a hit rate
  estimated from its calls, the number of distinct keys it looks up and the writes to its tables
  (each write counted as an invalidation).

Both are candidates: pg_stat_statements shows what ran, not which code ran it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from pglast import ast, parse_sql
from pglast.parser import ParseError
from pglast.stream import RawStream

from kit.sqltext import redact
from kit.sqltext.fingerprint import shape
from kit.sqltext.refs import kind_of, references


@dataclass(frozen=True)
class TableActivity:
    """Rows written to a table since the statistics began (pg_stat_user_tables)."""

    inserted: int
    updated: int
    deleted: int


def _key_columns(query: str) -> list[tuple[str, str]]:
    """(table, column) of each ``column = $n`` of a single-table-resolvable SELECT."""
    refs = references(query)
    if refs is None or refs.kind != "select":
        return []
    out = []
    for slot in refs.slots:
        rel = refs.relation(slot.qualifier)
        if slot.op == "=" and slot.column and rel is not None:
            out.append((rel.name, slot.column))
    return out


def batched_form(query: str, column: str) -> str | None:
    """``query`` with ``column = $n`` turned into ``column = ANY($n)``; an aggregate without
    GROUP BY gets ``column`` in its select list and GROUP BY, so each key keeps its own row."""
    try:
        (raw,) = parse_sql(query)
    except (ParseError, ValueError):
        return None
    stmt = raw.stmt
    if not isinstance(stmt, ast.SelectStmt):
        return None
    found = _to_any(stmt.whereClause, column)
    if found is None:
        return None
    stmt.whereClause = found
    if shape(query).aggregate and not stmt.groupClause:
        ref = ast.ColumnRef(fields=(ast.String(sval=column),))
        stmt.targetList = (ast.ResTarget(val=ref), *(stmt.targetList or ()))
        stmt.groupClause = (ast.ColumnRef(fields=(ast.String(sval=column),)),)
    return RawStream()(stmt)


def _to_any(node, column: str):
    """The WHERE tree with the first ``column = $n`` as ``column = ANY($n)`` (None: not found)."""
    if isinstance(node, ast.A_Expr) and node.name and getattr(node.name[-1], "sval", "") == "=":
        col, other = node.lexpr, node.rexpr
        if isinstance(other, ast.ColumnRef):
            col, other = other, col
        if (
            isinstance(col, ast.ColumnRef)
            and col.fields
            and getattr(col.fields[-1], "sval", None) == column
            and isinstance(other, (ast.ParamRef, ast.TypeCast))
        ):
            return ast.A_Expr(kind=1, name=node.name, lexpr=col, rexpr=other)  # AEXPR_OP_ANY
        return None
    if isinstance(node, ast.BoolExpr):
        args = list(node.args or ())
        for i, arg in enumerate(args):
            new = _to_any(arg, column)
            if new is not None:
                args[i] = new
                return ast.BoolExpr(boolop=node.boolop, args=tuple(args))
    return None


def n_plus_one(
    statements: pd.DataFrame, fk_columns: set[tuple[str, str]], *, min_calls: int = 100, max_rows_per_call: float = 1.5
) -> pd.DataFrame:
    """N+1 candidates among ``statements`` (queryid, query, calls, total_ms, rows), busiest first."""
    cols = ["queryid", "query", "calls", "rows_per_call", "mean_ms", "total_ms", "key", "batched"]
    rows = []
    for r in statements.itertuples():
        if kind_of(r.query) not in ("select", "with") or r.calls < min_calls:
            continue
        per_call = r.rows / r.calls if r.calls else 0.0
        if per_call > max_rows_per_call:
            continue
        keys = [k for k in _key_columns(r.query) if k in fk_columns]
        if not keys:
            continue
        table, column = keys[0]
        batched = batched_form(r.query, column)
        rows.append(
            {
                "queryid": r.queryid,
                "query": redact.statement(r.query[:300]),
                "calls": int(r.calls),
                "rows_per_call": round(per_call, 2),
                "mean_ms": round(r.total_ms / r.calls, 3),
                "total_ms": round(float(r.total_ms), 1),
                "key": f"{table}.{column}",
                "batched": redact.statement(batched) if batched else "",
            }
        )
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values("total_ms", ascending=False).reset_index(drop=True)


def cache_hit_rate(calls: int, keys: int, invalidations: int) -> float:
    """Expected share of calls a cache answers: every distinct key misses once, and so does
    every call after a write invalidated it (at most one miss per write)."""
    if calls <= 0:
        return 0.0
    return max(0.0, 1.0 - (min(calls, keys) + min(calls, invalidations)) / calls)


def cache_candidates(
    statements: pd.DataFrame,
    activity: dict[str, TableActivity],
    distinct: dict[tuple[str, str], float],
    *,
    min_calls: int = 100,
    min_hit_rate: float = 0.5,
    max_write_ratio: float = 0.1,
) -> pd.DataFrame:
    """Hot read-only statements on rarely written tables, with their estimated hit rate.
    ``distinct`` gives the number of distinct values of a (table, column) (pg_stats)."""
    cols = ["queryid", "query", "calls", "mean_ms", "tables", "writes", "keys", "est_hit_rate"]
    rows = []
    for r in statements.itertuples():
        if kind_of(r.query) != "select" or r.calls < min_calls:
            continue
        refs = references(r.query)
        if refs is None or not refs.relations:
            continue
        tables = sorted({rel.name for rel in refs.relations})
        if any(t not in activity for t in tables):
            continue  # a view, a function, a catalog: not a table the kit can judge
        keyed = _key_columns(r.query)
        keys = 1
        for key in keyed:
            keys *= max(1, int(distinct.get(key, r.calls)))
        # an insert changes a list or an aggregate, not the row a key lookup returns
        writes = sum(a.updated + a.deleted + (0 if keyed else a.inserted) for a in (activity[t] for t in tables))
        if writes > max_write_ratio * r.calls:
            continue
        rate = cache_hit_rate(int(r.calls), keys, writes)
        if rate < min_hit_rate:
            continue
        rows.append(
            {
                "queryid": r.queryid,
                "query": redact.statement(r.query[:300]),
                "calls": int(r.calls),
                "mean_ms": round(r.total_ms / r.calls, 3),
                "tables": ", ".join(tables),
                "writes": writes,
                "keys": keys,
                "est_hit_rate": round(rate, 3),
            }
        )
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values(["est_hit_rate", "calls"], ascending=False).reset_index(drop=True)
