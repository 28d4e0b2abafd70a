"""What is in the audited database: server, extensions, tables with rows and sizes (talks to PostgreSQL).

Read-only, and generic: it describes any database, not only the kit's demo.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy import Connection, text

from kit.db.extensions import ENABLE, missing

SERVER_SQL = """SELECT /* kit */ current_setting('server_version') AS version,
       current_setting('server_version_num')::int AS version_num,
       current_database() AS database,
       pg_database_size(current_database()) AS database_bytes,
       pg_is_in_recovery() AS is_replica,
       current_user AS role,
       current_setting('max_connections')::int AS max_connections,
       coalesce((SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries'), '?')
           AS shared_preload_libraries"""
# pg_settings hides superuser-only settings from other roles (current_setting() would raise):
# '?' then means "not visible to this role".

EXTENSIONS_SQL = """SELECT /* kit */ a.name, a.default_version, e.extversion AS installed_version
FROM pg_available_extensions a LEFT JOIN pg_extension e ON e.extname = a.name
WHERE a.name = ANY(:names) ORDER BY a.name"""

# reltuples is -1 until the first VACUUM/ANALYZE (PostgreSQL 14+), and 0 when a table was
# analyzed empty: on a freshly loaded, never analyzed database the live count is the estimate.
TABLES_SQL = """SELECT /* kit */ n.nspname AS schema, c.relname AS table,
       CASE WHEN c.reltuples < 0 OR (c.reltuples = 0 AND a.last_analyzed IS NULL) THEN coalesce(s.n_live_tup, 0)
            ELSE c.reltuples::bigint END AS rows_estimate,
       coalesce(s.n_live_tup, 0) AS live_rows,
       CASE WHEN c.reltuples < 0 OR (c.reltuples = 0 AND a.last_analyzed IS NULL) THEN 'live tuples'
            ELSE 'reltuples' END AS rows_from,
       a.last_analyzed, CASE WHEN a.last_analyzed IS NULL THEN 'never analyzed' ELSE 'analyzed' END AS statistics,
       pg_table_size(c.oid) AS table_bytes,
       pg_indexes_size(c.oid) AS index_bytes,
       pg_total_relation_size(c.oid) AS total_bytes,
       (SELECT count(*) FROM pg_index i WHERE i.indrelid = c.oid) AS indexes
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
CROSS JOIN LATERAL (SELECT greatest(s.last_analyze, s.last_autoanalyze) AS last_analyzed) a
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%'
ORDER BY pg_total_relation_size(c.oid) DESC, n.nspname, c.relname"""


@dataclass(frozen=True)
class ServerInfo:
    version: str
    version_num: int
    database: str
    database_bytes: int
    is_replica: bool
    role: str
    max_connections: int
    shared_preload_libraries: str

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"setting": list(self.__dict__), "value": [str(v) for v in self.__dict__.values()]})


def server_info(conn: Connection) -> ServerInfo:
    row = conn.execute(text(SERVER_SQL)).mappings().one()
    return ServerInfo(**row)


def extensions(conn: Connection) -> pd.DataFrame:
    """The kit's extensions: available, installed, usable now, and how to enable each."""
    rows = {r.name: r for r in conn.execute(text(EXTENSIONS_SQL), {"names": list(ENABLE)})}
    out = []
    for name in ENABLE:
        row = rows.get(name)
        why = missing(conn, name)
        out.append(
            {
                "extension": name,
                "available": row is not None,
                "installed": row.installed_version if row is not None else None,
                "usable": why is None,
                "how_to_enable": why,
            }
        )
    return pd.DataFrame(out)


def tables(conn: Connection) -> pd.DataFrame:
    """Every user table with its row estimate (live tuples when it was never analyzed), live rows,
    when its statistics were last gathered, and sizes, largest first."""
    return pd.DataFrame(
        conn.execute(text(TABLES_SQL)).mappings().all(),
        columns=[
            "schema",
            "table",
            "rows_estimate",
            "live_rows",
            "rows_from",
            "last_analyzed",
            "statistics",
            "table_bytes",
            "index_bytes",
            "total_bytes",
            "indexes",
        ],
    )


@dataclass(frozen=True)
class Inventory:
    """One read of the server, its extensions and its tables."""

    server: ServerInfo
    extensions: pd.DataFrame
    tables: pd.DataFrame

    @property
    def rows_total(self) -> int:
        return int(self.tables["rows_estimate"].sum())

    def usable(self, extension: str) -> bool:
        row = self.extensions.loc[self.extensions["extension"] == extension, "usable"]
        return bool(row.iloc[0]) if len(row) else False


def snapshot(engine) -> Inventory:
    """Read the inventory in one short read-only transaction."""
    with engine.connect() as conn:
        return Inventory(server=server_info(conn), extensions=extensions(conn), tables=tables(conn))
