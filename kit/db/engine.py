"""Engines and connections to PostgreSQL, with errors a user can act on (talks to PostgreSQL)."""

from __future__ import annotations

import psycopg
from psycopg.rows import Row
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from kit.config import mask_url, normalize_database_url
from kit.errors import DatabaseRefused, DatabaseUnavailable, first_line

_CONNECT_TIMEOUT_S = 5


def make_engine(url: str, *, pool_size: int = 5, max_overflow: int = 5, check: bool = True, **kwargs) -> Engine:
    """A SQLAlchemy engine on ``url`` (psycopg 3), checked with one round trip unless ``check=False``."""
    connect_args = {"connect_timeout": _CONNECT_TIMEOUT_S, "application_name": "dbperf-kit"}
    connect_args.update(kwargs.pop("connect_args", {}))
    engine = create_engine(
        normalize_database_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=False,
        connect_args=connect_args,
        **kwargs,
    )
    if check:
        check_connection(engine)
    return engine


def url_of(engine: Engine | str) -> str:
    """The URL of ``engine`` with its password: for the kit's own sessions and processes, never for output."""
    return engine if isinstance(engine, str) else engine.url.render_as_string(hide_password=False)


def driver(conn: Connection) -> psycopg.Connection:
    """The psycopg connection under SQLAlchemy's ``conn``: the same session, psycopg's API."""
    pg = conn.connection.driver_connection
    if pg is None:  # SQLAlchemy gives None only for a connection returned to its pool
        raise ValueError("the SQLAlchemy connection is closed: use it inside `with engine.connect() as conn`")
    return pg


def one_row(cursor: psycopg.Cursor[Row]) -> Row:
    """The row of a statement that always returns exactly one (an aggregate, SHOW, a function call)."""
    row = cursor.fetchone()
    if row is None:
        raise RuntimeError("a statement that always returns one row returned none")
    return row


def check_connection(engine: Engine) -> str:
    """Connect once and return the server version; translate failures into one clear line."""
    url = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SHOW /* kit */ server_version")).scalar_one()
    except (OperationalError, DBAPIError) as exc:
        raise DatabaseUnavailable(describe_connect_error(url, exc.orig or exc)) from exc


def describe_connect_error(url: str, exc: BaseException) -> str:
    """One line saying why a connection to ``url`` failed and what to do."""
    url = mask_url(url)
    msg = mask_url(str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__)
    lowered = str(exc).lower()
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return f"cannot log in to {url}: password authentication failed; check the user and password in the URL"
    if "connect privilege" in lowered or "permission denied for database" in lowered:
        user, database = make_url(url).username, make_url(url).database
        return (
            f"cannot connect to {url}: role {user} may not connect to database {database} (no CONNECT "
            f"privilege); GRANT CONNECT ON DATABASE {database} TO {user}, or use a role that may"
        )
    if "does not exist" in lowered and "database" in lowered:
        return f"cannot connect to {url}: {msg}; create the database or fix its name in the URL"
    if isinstance(exc, psycopg.OperationalError) or "connection" in lowered:
        return (
            f"cannot connect to {url}: {msg}; is PostgreSQL running there? (start the kit's own with `kit services up`)"
        )
    return f"cannot use {url}: {msg}"


def server_version_num(conn) -> int:
    return int(conn.execute(text("SHOW /* kit */ server_version_num")).scalar_one())


# SQLSTATE classes that say "use another role", not "the kit is broken"
_PRIVILEGE_STATES = {"42501": "the role lacks a privilege", "25006": "the role works in read-only transactions"}


def refused(exc: BaseException, *, doing: str) -> DatabaseRefused:
    """A :class:`DatabaseRefused` of one line for a statement PostgreSQL refused while ``doing``."""
    orig = getattr(exc, "orig", None) or exc
    state = getattr(orig, "sqlstate", None)
    first = mask_url(first_line(orig))
    if state in _PRIVILEGE_STATES:
        return DatabaseRefused(
            f"cannot {doing}: {first} ({_PRIVILEGE_STATES[state]}); use the URL of a role that owns the database"
        )
    return DatabaseRefused(f"cannot {doing}: PostgreSQL said: {first}")
