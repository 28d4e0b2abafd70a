"""Audit checks on the kit's database and on the machine's own PostgreSQL (read-only)."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text

from kit.audit import diff, explain, run_audit, snapshot
from kit.audit.base import ERROR
from kit.config import libpq_url
from kit.db.engine import make_engine
from kit.errors import ConfigError
from kit.demo.schema import create_schema



@pytest.fixture
def audited(fresh_engine):
    with fresh_engine.begin() as conn:
        create_schema(conn)
        conn.execute(text("INSERT INTO users (email, first_name, last_name, role) "
                          "SELECT 'u' || g, 'f', 'l', 'analyst' FROM generate_series(1, 200) g"))
        conn.execute(text("CREATE INDEX dup_a ON users (role)"))
        conn.execute(text("CREATE INDEX dup_ab ON users (role, email)"))
    with psycopg.connect(libpq_url(fresh_engine.url.render_as_string(hide_password=False)), autocommit=True) as c:
        try:
            c.execute("CREATE UNIQUE INDEX CONCURRENTLY broken ON users (role)")
        except psycopg.errors.UniqueViolation:
            pass  # leaves the INVALID index the audit must find
    return fresh_engine


def test_audit_finds_duplicate_and_invalid_indexes(audited):
    report = run_audit(audited)
    summary = report.to_frame().set_index("check")
    assert len(summary) == 12 and ERROR not in summary["status"].tolist()
    dup = report["duplicate_indexes"].rows
    assert dup[["index", "covered_by"]].values.tolist() == [["dup_a", "public.dup_ab"]]
    assert dup["remediation"].iloc[0] == "DROP INDEX CONCURRENTLY public.dup_a;  -- covered by public.dup_ab"
    invalid = report["invalid_objects"].rows
    assert (invalid["name"].tolist(), invalid["severity"].tolist()) == (["broken"], ["high"])
    assert report.findings()["severity"].iloc[0] == "high"


def test_top_queries_snapshot_and_diff(audited):
    before = snapshot(audited)
    with audited.connect() as conn:
        for _ in range(3):
            conn.execute(text("SELECT count(*) FROM users WHERE role = 'analyst'"))
        conn.rollback()
    changed = diff(before, snapshot(audited))
    row = changed[changed["query"].str.contains("FROM users WHERE role")].iloc[0]
    assert row["calls"] == 3
    assert run_audit(audited)["top_queries"].status in ("ok", "findings")


def test_explain_is_rolled_back_single_statement(audited):
    plan = explain(audited, "DELETE FROM users WHERE email LIKE 'u1%'", analyze=True)
    assert plan["node"].tolist()[:2] == ["ModifyTable", "Seq Scan"]
    with audited.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users")).scalar_one() == 200
    with pytest.raises(ConfigError, match="cannot EXPLAIN 2 statements"):
        explain(audited, "SELECT 1; SELECT 2")


def test_audit_of_a_server_without_statistics_read_only_degrades_cleanly(foreign_url):
    engine = make_engine(foreign_url, connect_args={"options": "-c default_transaction_read_only=on"})
    try:
        report = run_audit(engine)
        statuses = report.to_frame().set_index("check")["status"]
        assert ERROR not in statuses.tolist()
        top = report["top_queries"]
        assert top.status == "unavailable"
        assert "shared_preload_libraries" in top.message
        assert snapshot(engine).empty
    finally:
        engine.dispose()
