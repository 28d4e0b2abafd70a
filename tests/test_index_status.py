"""Declared indexes against a live database: applied, missing, invalid, differs, extra, no table."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text

from kit.config import libpq_url
from kit.indexes.spec import parse_index_sql
from kit.indexes.status import index_status
from kit.demo.schema import create_schema


@pytest.fixture
def schema_engine(fresh_engine):
    with fresh_engine.begin() as conn:
        create_schema(conn)
    return fresh_engine


def _autocommit(engine, statement: str) -> None:
    with psycopg.connect(libpq_url(engine.url.render_as_string(hide_password=False)), autocommit=True) as conn:
        try:
            conn.execute(statement)
        except psycopg.Error:
            pass  # the failed concurrent build is the point


def test_fresh_schema_has_all_23_missing(schema_engine):
    status = index_status(schema_engine)
    assert status.counts() == {"applied": 0, "missing": 23, "invalid": 0, "differs": 0, "no table": 0, "extra": 0}


def test_each_state_is_told_apart(schema_engine):
    specs = parse_index_sql(
        "CREATE INDEX i_ok ON users (email);\n"
        "CREATE INDEX i_differs ON users (role);\n"
        "CREATE UNIQUE INDEX i_invalid ON users (role);\n"
        "CREATE INDEX i_missing ON users (last_name);\n"
        "CREATE INDEX i_no_table ON nowhere (x);\n")
    with schema_engine.begin() as conn:
        conn.execute(text("INSERT INTO users (email, first_name, last_name, role) "
                          "VALUES ('a', 'a', 'a', 'admin'), ('b', 'b', 'b', 'admin')"))
        conn.execute(text("CREATE INDEX i_ok ON users (email)"))
        conn.execute(text("CREATE INDEX i_differs ON users (role, email)"))
        conn.execute(text("CREATE INDEX i_extra ON users (first_name)"))
    # A unique concurrent build over duplicates fails and leaves an INVALID index behind.
    _autocommit(schema_engine, "CREATE UNIQUE INDEX CONCURRENTLY i_invalid ON users (role)")
    status = index_status(schema_engine, specs)
    states = {r.name: r.state for r in status.rows}
    assert states == {"i_ok": "applied", "i_differs": "differs", "i_invalid": "invalid",
                      "i_missing": "missing", "i_no_table": "no table", "i_extra": "extra"}
    frame = status.to_frame().set_index("name")
    assert frame.loc["i_differs", "live"] == "CREATE INDEX i_differs ON public.users USING btree (role, email)"
    assert "drops it CONCURRENTLY and rebuilds" in frame.loc["i_invalid", "remediation"]
