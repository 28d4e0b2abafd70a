"""Who else is in the database: this process's open transactions and the sessions that would block a
concurrent build (talks to PostgreSQL). Whether it is safe to build at all is :mod:`kit.safety.preflight`'s call."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import psutil
import psycopg
from sqlalchemy import Engine

from kit.config import libpq_url
from kit.db.engine import url_of
from kit.sqltext import redact


def connect(url: str | Engine, *, app: str = "dbperf-kit-indexes") -> psycopg.Connection:
    """A new autocommit psycopg session of its own (never from a pool) on a URL or an engine's database."""
    return psycopg.connect(libpq_url(url_of(url)), autocommit=True, application_name=app, connect_timeout=5)


CLIENT_CHECK_MS = 1_000
CLIENT_CHECK = "SELECT /* kit */ set_config('client_connection_check_interval', %s, false)"


def watch_client(conn: psycopg.Connection, *, interval_ms: int = CLIENT_CHECK_MS) -> bool:
    """Have the server check every ``interval_ms`` that this session's client is still there while a
    statement runs (PostgreSQL 14+, a user setting). A backend notices a vanished client only when it
    next reads or writes the socket: a concurrent build whose process was killed (SIGKILL, nothing
    of it runs) would go on for minutes — waiting on the application's transactions, then building
    an index nobody will check — and then leave it INVALID or, worse, VALID and unverified. With
    the check it stops within about ``interval_ms``. False where the server cannot (older than 14,
    or a platform without POLLRDHUP, where setting it is an error)."""
    if conn.info.server_version < 140000:
        return False
    try:
        conn.execute(CLIENT_CHECK, [f"{interval_ms}ms"])
    except psycopg.Error:
        return False
    return True


@dataclass(frozen=True)
class Backend:
    """A server process of this database (one client session) as pg_stat_activity shows it."""

    pid: int
    user: str | None
    application: str | None
    state: str | None
    xact_age_s: float | None
    wait_event: str | None
    query: str
    own_process: bool  # a connection of this Python process (kernel)
    locks_table: bool  # holds a lock on one of the tables being indexed


# CIC waits for every transaction in this database that holds a lock on the table or a snapshot
# older than the build's; autovacuum is the one exception PostgreSQL makes itself.
OPEN_TRANSACTIONS = """SELECT /* kit */ a.pid, a.usename AS user, a.application_name AS application, a.state,
       extract(epoch FROM clock_timestamp() - a.xact_start)::float8 AS xact_age_s,
       a.wait_event, left(a.query, 200) AS query, host(a.client_addr) AS client_addr, a.client_port,
       EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.relation = ANY(%(tables)s::regclass[]))
           AS locks_table
FROM pg_stat_activity a
WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
  AND a.backend_type = 'client backend'
  AND (a.xact_start IS NOT NULL OR a.backend_xmin IS NOT NULL)
ORDER BY a.xact_start"""


def _own_endpoints() -> set[tuple[str, int]]:
    """(ip, port) of every TCP socket this process has open: its client ends of connections."""
    try:
        return {(c.laddr.ip, c.laddr.port) for c in psutil.Process().net_connections(kind="inet")}
    except psutil.Error:
        return set()


def open_transactions(conn: psycopg.Connection, *, tables: list[int]) -> list[Backend]:
    """Sessions of this database inside a transaction (or holding a snapshot), oldest first;
    ``tables`` are the OIDs of the tables whose locks count (:func:`table_oids`)."""
    own = _own_endpoints()
    rows = conn.execute(OPEN_TRANSACTIONS, {"tables": tables}).fetchall()
    out = []
    for pid, user, app, state, age, wait, query, addr, port, locks in rows:
        out.append(
            Backend(
                pid,
                user,
                app,
                state,
                age,
                wait,
                redact.statement(query),
                own_process=(addr, port) in own,
                locks_table=bool(locks),
            )
        )
    return out


# A relation is named by (schema, name) and looked up by OID: never by a 'schema.table' string
# cast to regclass, which folds case and splits on every dot ("Order", "Sales Ops", eu.west).
TABLE_OIDS = """SELECT /* kit */ t.s, t.r, to_regclass(format('%%I.%%I', t.s, t.r))::oid
FROM unnest(%(schemas)s::text[], %(names)s::text[]) AS t(s, r)"""


def table_oids(conn: psycopg.Connection, tables) -> dict[tuple[str, str], int]:
    """{(schema, name): OID} of the relations of ``tables`` that exist (the others are left out)."""
    pairs = list(dict.fromkeys(tables))
    rows = conn.execute(TABLE_OIDS, {"schemas": [s for s, _ in pairs], "names": [n for _, n in pairs]})
    return {(s, n): oid for s, n, oid in rows.fetchall() if oid is not None}


def sessions_frame(sessions: list[Backend] | tuple[Backend, ...]) -> pd.DataFrame:
    return pd.DataFrame([s.__dict__ for s in sessions], columns=list(Backend.__dataclass_fields__))
