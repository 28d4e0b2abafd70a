"""The seed platform's schema: create, drop and inventory its tables (talks to PostgreSQL).

The DDL lives in ``data/schema.sql`` (tables, primary and foreign keys only: the "before" state)
and the 23 indexes the audit found unapplied live in
``data/migrations/20250102000000_add_performance_indexes.sql``. This module runs the first,
reads index names out of the second, reports table sizes for the notebooks, and sets keys and
indexes aside around a bulk load (:func:`set_aside_keys`, :func:`restore_keys`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from psycopg import sql
from sqlalchemy import Connection

from kit.config import data_dir
from kit.sqltext.tag import tagged

DATA_DIR = data_dir()
SCHEMA_PATH = DATA_DIR / "schema.sql"
MIGRATION_PATH = DATA_DIR / "migrations" / "20250102000000_add_performance_indexes.sql"

# The platform's tables in foreign-key dependency order (parents first).
TABLES: tuple[str, ...] = (
    "users",
    "projects",
    "data_sources",
    "reconciliation_jobs",
    "reconciliation_records",
    "reconciliation_results",
    "reconciliation_matches",
    "uploaded_files",
    "audit_logs",
    "user_activity_logs",
)
META_TABLE = "kit_meta"


def _render(conn: Connection, stmt: sql.Composable) -> str:
    """Composed SQL as text, quoted by the connection's own psycopg connection."""
    return stmt.as_string(conn.connection.driver_connection)


def create_schema(conn: Connection) -> None:
    """Create the platform's tables and ``kit_meta`` if they do not exist (idempotent).

    Runs in the caller's transaction; commit it (or use ``engine.begin()``).
    """
    # SQLAlchemy passes an empty parameter tuple, so psycopg reads '%' as a placeholder:
    # double it so the file may contain any text.
    conn.exec_driver_sql(SCHEMA_PATH.read_text().replace("%", "%%"))


def drop_schema(conn: Connection) -> None:
    """Drop the platform's tables and ``kit_meta`` (and whatever depends on them)."""
    stmt = sql.SQL("DROP /* kit */ TABLE IF EXISTS {} CASCADE").format(
        sql.SQL(", ").join(sql.Identifier(t) for t in (*reversed(TABLES), META_TABLE))
    )
    conn.exec_driver_sql(_render(conn, stmt))


EXISTING_TABLES = """
SELECT /* kit */ t.name
FROM unnest(%(tables)s::text[]) WITH ORDINALITY AS t(name, ord)
WHERE to_regclass(quote_ident(t.name)) IS NOT NULL
ORDER BY t.ord
"""

TABLE_SIZES = """
SELECT /* kit */ t.name AS table,
       greatest(c.reltuples, 0)::bigint AS rows,
       pg_total_relation_size(c.oid) AS total_bytes,
       pg_indexes_size(c.oid) AS index_bytes
FROM unnest(%(tables)s::text[]) WITH ORDINALITY AS t(name, ord)
JOIN pg_class AS c ON c.oid = to_regclass(quote_ident(t.name))
ORDER BY t.ord
"""


def platform_tables(conn: Connection) -> list[str]:
    """Which of the platform's :data:`TABLES` exist in the connection's search path, in :data:`TABLES` order."""
    rows = conn.exec_driver_sql(EXISTING_TABLES, {"tables": list(TABLES)})
    return [name for (name,) in rows]


def _exact_counts(conn: Connection, tables: list[str]) -> dict[str, int]:
    # One round trip: SELECT 'users', count(*) FROM users UNION ALL SELECT ...
    parts = [
        sql.SQL("SELECT /* kit */ {name}::text, count(*) FROM {table}").format(
            name=sql.Literal(t), table=sql.Identifier(t)
        )
        for t in tables
    ]
    stmt = sql.SQL(" UNION ALL ").join(parts)
    return {name: int(n) for name, n in conn.exec_driver_sql(_render(conn, stmt))}


def table_stats(conn: Connection, *, exact: bool = True) -> pd.DataFrame:
    """Inventory of the platform's tables: ``table, rows, total_bytes, index_bytes``.

    ``rows`` is an exact ``count(*)`` when ``exact`` (one query, fine up to tens of millions
    of rows), else the planner's estimate from the last ANALYZE (0 when never analyzed).
    Tables that do not exist are left out; an empty frame means the schema is missing.
    """
    columns = ["table", "rows", "total_bytes", "index_bytes"]
    found = platform_tables(conn)
    if not found:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame([tuple(r) for r in conn.exec_driver_sql(TABLE_SIZES, {"tables": found})], columns=columns)
    if exact:
        counts = _exact_counts(conn, found)
        frame["rows"] = frame["table"].map(counts)
    return frame.astype({"rows": "int64", "total_bytes": "int64", "index_bytes": "int64"})


# --- bulk loading -------------------------------------------------------------------------
# PostgreSQL's own advice for populating a database: drop indexes and foreign keys, load,
# then rebuild them. A btree built by one sort is several times cheaper than a million
# single inserts, and one anti-join validates a foreign key faster than a trigger per row.

KEYS = """
SELECT /* kit */ c.contype, t.relname, c.conname, pg_get_constraintdef(c.oid)
FROM pg_constraint AS c
JOIN pg_class AS t ON t.oid = c.conrelid
WHERE (c.contype = 'p' AND c.conrelid = ANY(%(tables)s::regclass[]))
   OR (c.contype = 'f' AND (c.conrelid = ANY(%(tables)s::regclass[])
                            OR c.confrelid = ANY(%(tables)s::regclass[])))
ORDER BY c.contype, t.relname, c.conname
"""

PLAIN_INDEXES = """
SELECT /* kit */ n.nspname, ic.relname, pg_get_indexdef(i.indexrelid)
FROM pg_index AS i
JOIN pg_class AS ic ON ic.oid = i.indexrelid
JOIN pg_namespace AS n ON n.oid = ic.relnamespace
WHERE i.indrelid = ANY(%(tables)s::regclass[])
  AND i.indisvalid  -- an invalid index stays as it is: rebuilding it would hide the failure
  AND NOT EXISTS (SELECT 1 FROM pg_constraint AS c
                  WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid)
ORDER BY ic.relname
"""


@dataclass(frozen=True)
class SetAside:
    """Keys and indexes dropped before a bulk load, as the DDL that recreates them.

    The definitions are the catalog's own rendering (``pg_get_constraintdef``,
    ``pg_get_indexdef``) of objects that existed a moment ago; nothing comes from a user.
    """

    primary_keys: tuple[str, ...]
    indexes: tuple[str, ...]
    foreign_keys: tuple[str, ...]


def set_aside_keys(conn: Connection) -> SetAside:
    """Drop the platform tables' foreign keys, primary keys and other valid indexes.

    Only for a bulk load inside one transaction: :func:`restore_keys` must follow before
    commit, so no other session ever sees the tables without their keys.
    """
    tables = {"tables": platform_tables(conn)}
    keys = conn.exec_driver_sql(KEYS, tables).all()  # foreign keys first ('f' < 'p')
    plain = conn.exec_driver_sql(PLAIN_INDEXES, tables).all()
    for _, table, name, _ in keys:
        drop = sql.SQL("ALTER /* kit */ TABLE {} DROP CONSTRAINT {}").format(
            sql.Identifier(table), sql.Identifier(name)
        )
        conn.exec_driver_sql(_render(conn, drop))
    for schema, name, _ in plain:
        drop = sql.SQL("DROP /* kit */ INDEX {}").format(sql.Identifier(schema, name))
        conn.exec_driver_sql(_render(conn, drop))

    def add(contype: str) -> tuple[str, ...]:
        stmt = sql.SQL("ALTER /* kit */ TABLE {} ADD CONSTRAINT {} {}")
        return tuple(
            _render(conn, stmt.format(sql.Identifier(t), sql.Identifier(n), sql.SQL(definition)))
            for kind, t, n, definition in keys
            if kind == contype
        )

    return SetAside(
        primary_keys=add("p"),
        indexes=tuple(tagged(definition) for _, _, definition in plain),
        foreign_keys=add("f"),
    )


def restore_keys(conn: Connection, aside: SetAside, *, analyze: bool = True) -> None:
    """Rebuild what :func:`set_aside_keys` dropped: primary keys, indexes, then foreign keys.

    With ``analyze``, the tables are analyzed before the foreign keys are validated so the
    validating anti-joins are planned on real row counts.
    """
    # '%' doubled: SQLAlchemy hands psycopg an empty parameter tuple (an index predicate
    # may well contain LIKE 'x%').
    for stmt in (*aside.primary_keys, *aside.indexes):
        conn.exec_driver_sql(stmt.replace("%", "%%"))
    if analyze:
        analyze_tables(conn)
    for stmt in aside.foreign_keys:
        conn.exec_driver_sql(stmt.replace("%", "%%"))


def analyze_tables(conn: Connection) -> None:
    """ANALYZE the platform's tables (allowed inside a transaction, unlike VACUUM)."""
    stmt = sql.SQL("ANALYZE /* kit */ {}").format(sql.SQL(", ").join(map(sql.Identifier, platform_tables(conn))))
    conn.exec_driver_sql(_render(conn, stmt))
