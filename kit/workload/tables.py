"""What the N+1 and cache candidates need from the catalog: the columns of foreign keys, the rows
written per table, the distinct values per column (talks to PostgreSQL, read-only)."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from kit.audit.statements import statements_frame
from kit.db import extensions
from kit.workload.candidates import TableActivity, cache_candidates, n_plus_one

FK_COLUMNS = """SELECT /* kit */ t.relname, a.attname FROM pg_constraint c
JOIN pg_class t ON t.oid IN (c.conrelid, c.confrelid)
JOIN pg_attribute a ON a.attrelid = t.oid
 AND a.attnum = ANY(CASE WHEN t.oid = c.conrelid THEN c.conkey ELSE c.confkey END)
WHERE c.contype = 'f'"""
ACTIVITY = """SELECT /* kit */ relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables"""
DISTINCT = """SELECT /* kit */ s.tablename, s.attname,
       CASE WHEN s.n_distinct >= 0 THEN s.n_distinct ELSE -s.n_distinct * greatest(c.reltuples, 1) END
FROM pg_stats s JOIN pg_namespace n ON n.nspname = s.schemaname
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = s.tablename
WHERE s.schemaname NOT IN ('pg_catalog', 'information_schema')"""


def candidates(engine: Engine, *, min_calls: int = 100) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(N+1 candidates, cache candidates, a line saying what they are based on)."""
    try:
        with engine.connect() as conn:
            why = extensions.missing(conn, "pg_stat_statements")
            if why:
                return n_plus_one(pd.DataFrame(), set()), _empty_cache(), why
            stmts = statements_frame(conn, chars=100_000)
            fks = {(t, c) for t, c in conn.execute(text(FK_COLUMNS))}
            activity = {t: TableActivity(int(i), int(u), int(d)) for t, i, u, d in conn.execute(text(ACTIVITY))}
            distinct = {(t, c): float(n) for t, c, n in conn.execute(text(DISTINCT))}
            conn.rollback()
    except DBAPIError as exc:
        first = str(exc.orig or exc).strip().splitlines()[0]
        return n_plus_one(pd.DataFrame(), set()), _empty_cache(), f"cannot read the statistics: {first}"
    plus = n_plus_one(stmts, fks, min_calls=min_calls)
    cache = cache_candidates(stmts, activity, distinct, min_calls=min_calls)
    return (
        plus,
        cache,
        (
            f"from {len(stmts)} statements in pg_stat_statements (since its reset) and "
            "pg_stat_user_tables (since the statistics began): candidates, not proof"
        ),
    )


def _empty_cache() -> pd.DataFrame:
    return cache_candidates(pd.DataFrame(columns=["queryid", "query", "calls", "total_ms", "rows"]), {}, {})
