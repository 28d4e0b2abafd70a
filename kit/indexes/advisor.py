"""What-if index advice with hypopg: for the top statements, try hypothetical indexes on the user
tables they filter, join or sort on — each column, the equality columns together then with a
range column or the sort key (up to three), pairs of columns (:func:`candidate_keys`) — and keep
those that cut the planner's cost by half (talks to PostgreSQL; creates no real index, and every
hypothetical one is dropped in a finally). Each statement is planned on the values it was measured
on when given (a custom plan, as the workload runs it), else generically.

Only user tables are tried (not a view, not a catalog); a candidate that a valid index already
starts with is not tried. The advisor's own statements (PREPARE, EXPLAIN EXECUTE, DEALLOCATE,
set_config) carry ``/* kit */``, so pg_stat_statements never counts them as the workload. The
set of indexes the loop builds is chosen over the whole workload (:mod:`kit.indexes.select`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import psycopg
from psycopg import sql
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from kit.audit.statements import statements_frame
from kit.db import extensions, sessions
from kit.db.engine import url_of
from kit.indexes.verify import plan_indexes
from kit.sqltext import redact
from kit.sqltext.refs import ColumnUse, References, Relation, references

MIN_DROP = 0.5
_MAX_CANDIDATES = 12
MAX_KEYS = 3  # key columns of a candidate index
_EQUALITY = {"=", "in", "any", "null"}
_RANGE = {"<", ">", "<=", ">=", "between", "like"}
_ADVISED_KINDS = {"select", "with", "update", "delete"}
_OP_ORDER = {
    "=": 0,
    "in": 0,
    "any": 0,
    "null": 1,
    "join": 1,
    "between": 2,
    "<": 2,
    ">": 2,
    "<=": 2,
    ">=": 2,
    "like": 3,
    "order": 4,
}
COLUMNS = [
    "statement",
    "query",
    "schema",
    "table",
    "columns",
    "base_cost",
    "cost",
    "drop_pct",
    "est_bytes",
    "verdict",
    "reason",
    "create_sql",
]


@dataclass(frozen=True)
class Advice:
    status: str  # "ok" | "unavailable"
    message: str
    rows: tuple[dict, ...]

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.rows), columns=COLUMNS)

    @property
    def suggestions(self) -> list[dict]:
        return [r for r in self.rows if r["verdict"] == "suggest"]


def candidate_columns(query: str) -> dict[str, list[str]]:
    """{table: [columns compared with a value, then joined on, then sorted by]} (pure); a column
    of several tables that is not qualified is left out here (the database knows its table)."""
    refs = references(query)
    if refs is None or refs.kind not in ("select", "update", "delete"):
        return {}
    out: dict[str, list[str]] = {}
    for use in sorted(refs.columns, key=lambda u: _OP_ORDER.get(u.op, 3)):
        rel = refs.relation(use.qualifier)
        if rel is not None and use.column not in out.setdefault(rel.name, []):
            out[rel.name].append(use.column)
    return {t: cols for t, cols in out.items() if cols}


TABLE_INFO = """SELECT /* kit */ c.oid, n.nspname, c.relname, c.relkind IN ('r', 'p', 'm')
       AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%',
       ARRAY(SELECT attname::text FROM pg_attribute WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)"""


@dataclass(frozen=True)
class TableInfo:
    schema: str
    name: str
    user_table: bool
    columns: frozenset[str]


def table_info(conn: psycopg.Connection, rel: Relation, cache: dict) -> TableInfo | None:
    key = rel.qualified
    if key not in cache:
        name = sql.Identifier(*([rel.schema] if rel.schema else []), rel.name).as_string(conn)
        row = conn.execute(TABLE_INFO, [name]).fetchone()
        cache[key] = None if row is None else TableInfo(row[1], row[2], bool(row[3]), frozenset(row[4]))
    return cache[key]


def table_uses(conn: psycopg.Connection, refs: References, cache: dict) -> dict[TableInfo, list[ColumnUse]]:
    """The column uses of a parsed statement per table, resolved in the database: an unqualified
    column goes to the one table that has it; names that are not tables (CTEs, views) come back
    with ``user_table`` False."""
    out: dict[TableInfo, list[ColumnUse]] = {}
    for use in refs.columns:
        for level in refs.levels(use):  # the innermost query level where exactly one table has the column
            tables = [t for t in (table_info(conn, r, cache) for r in level) if t is not None]
            owners = [t for t in tables if use.column in t.columns]
            if len(owners) == 1:
                out.setdefault(owners[0], []).append(use)
                break
            if owners:
                break  # ambiguous at this level: PostgreSQL would refuse it, the kit leaves it
    return out


def table_columns(conn: psycopg.Connection, query: str, cache: dict | None = None) -> dict[TableInfo, list[str]]:
    """{table: columns} of ``query`` (:func:`table_uses`), compared ones first, then joined, then sorted."""
    refs = references(query)
    if refs is None:
        return {}
    return {
        table: list(dict.fromkeys(u.column for u in sorted(uses, key=lambda u: _OP_ORDER.get(u.op, 3))))
        for table, uses in table_uses(conn, refs, {} if cache is None else cache).items()
    }


def candidate_keys(uses: Sequence[ColumnUse], *, limit: int = 16) -> list[tuple[str, ...]]:
    """Key column tuples for one table of one statement, most promising first (pure)."""
    ordered = list(dict.fromkeys(u.column for u in uses))
    eq = list(dict.fromkeys(u.column for u in uses if u.op in _EQUALITY or u.op == "join"))
    rng = list(dict.fromkeys(u.column for u in uses if u.op in _RANGE and u.column not in eq))
    order = list(dict.fromkeys(u.column for u in uses if u.op == "order" and u.column not in eq))
    found: list[tuple[str, ...]] = []
    if eq:
        found.append(tuple(eq[:MAX_KEYS]))
        found += [(*tuple(eq[: MAX_KEYS - 1]), c) for c in (rng[:1] + order[:1])]
    found += [(c,) for c in ordered]
    found += list(itertools.permutations(ordered, 2))
    return list(dict.fromkeys(k for k in found if k))[:limit]


def covered(keys: tuple[str, ...], existing: frozenset[tuple[str, ...]]) -> bool:
    """Whether a valid index already starts with ``keys`` (it serves whatever they would)."""
    return any(index[: len(keys)] == keys for index in existing)


EXISTING = """SELECT /* kit */ ARRAY(SELECT a.attname::text FROM unnest(x.indkey) WITH ORDINALITY k(attnum, n)
             JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum ORDER BY k.n)
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_am m ON m.oid = i.relam
WHERE x.indrelid = to_regclass(format('%%I.%%I', %s::text, %s::text)) AND x.indisvalid AND x.indpred IS NULL
  AND m.amname = 'btree' AND 0 <> ALL (x.indkey)"""


def existing_keys(conn: psycopg.Connection, table: TableInfo) -> frozenset[tuple[str, ...]]:
    """The key columns of every valid, plain btree index of ``table`` (no predicate, no expression)."""
    return frozenset(tuple(r[0]) for r in conn.execute(EXISTING, [table.schema, table.name]).fetchall())


def _deallocate(conn: psycopg.Connection) -> None:
    if conn.execute("SELECT /* kit */ 1 FROM pg_prepared_statements WHERE name = 'kit_advise'").fetchone():
        conn.execute("DEALLOCATE /* kit */ kit_advise")


def execute_prepared(name: str, values: tuple[str | None, ...] | list[str | None]) -> sql.Composable:
    """``EXECUTE name (values)``: each value a literal of unknown type (PostgreSQL casts it to the
    parameter's type), None as NULL."""
    if not values:
        return sql.SQL("EXECUTE {}").format(sql.Identifier(name))
    return sql.SQL("EXECUTE {} ({})").format(
        sql.Identifier(name), sql.SQL(", ").join(sql.SQL("NULL") if v is None else sql.Literal(v) for v in values)
    )


PLAN_MODE = "SELECT /* kit */ set_config('plan_cache_mode', %s, false)"


def cost(
    conn: psycopg.Connection, stmt: str, nparams: int, values: tuple[str | None, ...] | None = None
) -> tuple[float, list[str]]:
    """Planner cost and index names of ``stmt``: planned on ``values`` when given (a custom plan, as the
    workload runs it: a partitioned table is pruned to the partitions those values reach), else a
    generic plan. Planning with every parameter NULL would prune every partition at startup and
    name no index at all."""
    if nparams:
        # Prepared afresh each time: a cached generic plan would not see a new hypothetical index.
        _deallocate(conn)
        conn.execute(sql.SQL("PREPARE /* kit */ kit_advise AS {}").format(sql.SQL(stmt)))
        real = values if values is not None and len(values) == nparams else None
        conn.execute(PLAN_MODE, ["force_custom_plan" if real is not None else "force_generic_plan"])
        args = real if real is not None else (None,) * nparams
        row = conn.execute(
            sql.SQL("EXPLAIN /* kit */ (FORMAT JSON) {}").format(execute_prepared("kit_advise", args))
        ).fetchone()
    else:
        row = conn.execute(sql.SQL("EXPLAIN /* kit */ (FORMAT JSON) {}").format(sql.SQL(stmt))).fetchone()
    assert row is not None, "EXPLAIN returns one row"
    top = row[0][0]["Plan"]
    return float(top["Total Cost"]), plan_indexes(top)


HYPO_CREATE = "SELECT /* kit */ indexrelid, hypopg_relation_size(indexrelid) FROM hypopg_create_index(%s)"


def hypothetical(conn, table: TableInfo, columns: tuple[str, ...]) -> str:
    return (
        sql.SQL("CREATE INDEX ON {} ({})")
        .format(sql.Identifier(table.schema, table.name), sql.SQL(", ").join(map(sql.Identifier, columns)))
        .as_string(conn)
    )


def _try(
    conn,
    n: int,
    query: str,
    nparams: int,
    table: TableInfo,
    columns: tuple[str, ...],
    base: float,
    values: tuple[str | None, ...] | None = None,
) -> dict:
    create = hypothetical(conn, table, columns)
    try:
        _oid, size = conn.execute(HYPO_CREATE, [create]).fetchone()
        after, used = cost(conn, query, nparams, values)
    finally:
        conn.execute("SELECT /* kit */ hypopg_reset()")
    drop = (base - after) / base if base > 0 else 0.0
    if not any("btree" in u and u.startswith("<") for u in used):
        verdict, reason = "rejected", "the planner did not use it"
    elif drop >= MIN_DROP:
        verdict, reason = "suggest", f"cost drops {drop:.0%}"
    else:
        verdict, reason = "rejected", f"cost drops only {drop:.0%} (< {MIN_DROP:.0%})"
    return {
        "statement": n,
        "query": redact.statement(query[:200]),
        "schema": table.schema,
        "table": table.name,
        "columns": ", ".join(columns),
        "base_cost": round(base, 2),
        "cost": round(after, 2),
        "drop_pct": round(100 * drop, 1),
        "est_bytes": int(size),
        "verdict": verdict,
        "reason": reason,
        "create_sql": create.replace("CREATE INDEX", "CREATE INDEX CONCURRENTLY") if verdict == "suggest" else "",
    }


def _note(n: int, query: str, verdict: str, reason: str, table: TableInfo | None = None) -> dict:
    return {
        "statement": n,
        "query": redact.statement(query[:200]),
        "schema": table.schema if table else None,
        "table": table.name if table else None,
        "verdict": verdict,
        "reason": reason,
    }


def top_statements(engine: Engine, top: int) -> list[str]:
    """The texts of the ``top`` statements by total time that an index could serve."""
    try:
        with engine.connect() as conn:
            frame = statements_frame(conn, chars=100_000)
            conn.rollback()
    except DBAPIError:
        return []
    return frame[frame["kind"].isin(_ADVISED_KINDS)]["query"].head(top).tolist()


def advise_statement(
    conn: psycopg.Connection, n: int, query: str, cache: dict, values: tuple[str | None, ...] | None = None
) -> list[dict]:
    """Every candidate of one statement, tried (planned on ``values`` when given); a statement that
    cannot be planned is one 'skipped' row."""
    refs = references(query)
    if refs is None:
        return [_note(n, query, "skipped", "the parser cannot read it")]
    if refs.kind not in ("select", "update", "delete"):
        return [_note(n, query, "skipped", f"an index does not speed up {refs.kind.upper()}")]
    try:
        base, _ = cost(conn, query, refs.nparams, values)
    except psycopg.Error as exc:
        return [_note(n, query, "skipped", str(exc).strip().splitlines()[0])]
    rows: list[dict] = []
    for table, uses in table_uses(conn, refs, cache).items():
        if not table.user_table:
            rows.append(_note(n, query, "skipped", f"{table.schema}.{table.name} is not a user table", table))
            continue
        existing = existing_keys(conn, table)
        combos = [c for c in candidate_keys(uses) if not covered(c, existing)]
        if not combos:
            rows.append(
                _note(n, query, "skipped", f"an index on {table.name} already starts with every candidate", table)
            )
        for columns in combos[:_MAX_CANDIDATES]:
            try:
                rows.append(_try(conn, n, query, refs.nparams, table, columns, base, values))
            except psycopg.Error as exc:
                rows.append(
                    {
                        **_note(n, query, "rejected", str(exc).strip().splitlines()[0], table),
                        "columns": ", ".join(columns),
                    }
                )
    return rows


def advise(
    engine: Engine,
    *,
    queries: list[str] | None = None,
    top: int = 5,
    values: list[tuple[str | None, ...] | None] | None = None,
) -> Advice:
    """Try hypothetical indexes for ``queries`` (default: the ``top`` statements by total time
    that an index could serve), each planned on its ``values`` when given (the values the workload's
    measurement chose; else a generic plan); each row's ``statement`` is the query's position."""
    queries = list(queries) if queries is not None else top_statements(engine, top)
    url = url_of(engine)
    with sessions.connect(url, app="dbperf-kit-advisor") as conn:
        conn.prepare_threshold = None  # psycopg's own prepared statements would mix with ours
        if why := extensions.missing(conn, "hypopg"):
            return Advice("unavailable", why, ())
        rows: list[dict] = []
        cache: dict = {}
        try:
            for n, query in enumerate(queries):
                rows += advise_statement(conn, n, query, cache, values[n] if values and n < len(values) else None)
        finally:
            _deallocate(conn)
    return Advice(
        "ok", f"{sum(r['verdict'] == 'suggest' for r in rows)} suggestions for {len(queries)} statements", tuple(rows)
    )
