from __future__ import annotations

import subprocess
import sys
import time
import uuid

import psycopg
import pytest
from sqlalchemy import text

from kit.config import libpq_url
from kit.db.engine import make_engine
from kit.errors import UnsafeOperation
from kit.safety import preflight
from kit.servers import local


def test_the_kits_own_database_is_safe(tiny_engine):
    pf = preflight.check(tiny_engine)
    assert (pf.safe_to_apply, pf.reasons) == (True, ())
    assert (pf.is_replica, pf.read_only, pf.role, pf.superuser) == (False, False, "postgres", True)
    assert (pf.tables_checked, pf.tables_not_owned) == (11, ())  # every user table: the platform's 10 + kit_meta
    assert preflight.check(tiny_engine, tables=[("public", "users"), ("public", "projects")]).tables_checked == 2
    assert (pf.pg_stat_statements, pf.hypopg) == (True, True)
    assert pf.statement_timeout == "0" and pf.lock_timeout == "0"
    assert pf.statements_reset is not None and pf.stats_age_s >= 0
    assert any(w.startswith("connected as superuser postgres") for w in pf.warnings)
    frame = pf.to_frame()
    assert frame.set_index("check").loc["may create indexes on", "value"] == "11 of 11 tables"
    assert frame.set_index("check").loc["safe to apply", "verdict"] == "ok"
    pf.require_safe()  # no exception


def test_a_role_that_owns_nothing_is_unsafe(pg_server, tiny_db_url):
    role = f"ro_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(local._admin_dsn(pg_server), autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE ROLE {} LOGIN").format(psycopg.sql.Identifier(role)))
    engine = make_engine(tiny_db_url.replace("postgres@", f"{role}@"))
    try:
        pf = preflight.check(engine)
    finally:
        engine.dispose()
        with psycopg.connect(local._admin_dsn(pg_server), autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("DROP ROLE {}").format(psycopg.sql.Identifier(role)))
    assert pf.safe_to_apply is False and pf.superuser is False
    assert len(pf.tables_not_owned) == 11
    assert pf.reasons == (f"role {role} does not own 11 table(s) (audit_logs, data_sources, "
                          "kit_meta ...); CREATE INDEX needs the owner's role",)
    with pytest.raises(UnsafeOperation, match=f"pre-flight: unsafe to change this database: role {role} does not own"):
        pf.require_safe()


def test_read_only_default_is_unsafe(tiny_engine):
    db = tiny_engine.url.database
    with tiny_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'ALTER DATABASE "{db}" SET default_transaction_read_only = on'))
    tiny_engine.dispose()  # new sessions pick the setting up
    pf = preflight.check(tiny_engine)
    assert pf.read_only is True and pf.safe_to_apply is False
    assert pf.reasons == ("role postgres works in read-only transactions (default_transaction_read_only)",)


def test_open_transactions_of_this_process_and_of_others(tiny_engine, tiny_db_url):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import psycopg, sys, time\n"
         f"c = psycopg.connect({libpq_url(tiny_db_url)!r})\n"
         "c.execute('SELECT count(*) FROM users')\nprint('ready', flush=True)\nsys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with tiny_engine.connect() as mine:
            mine.execute(text("SELECT 1"))  # this process now holds a transaction open too
            time.sleep(0.05)  # both transactions are now older than long_tx_s below
            pf = preflight.check(tiny_engine, long_tx_s=0.01)
            mine.rollback()
    finally:
        holder.communicate("")
    assert pf.safe_to_apply is False
    assert [s.own_process for s in pf.sessions] in ([False, True], [True, False])
    assert len(pf.idle_in_transaction) == 2 and len(pf.long_transactions) == 2
    assert pf.reasons[0].startswith("this process holds 1 open transaction(s) (pid ")
    assert pf.reasons[1].startswith("1 other transaction(s) open for 0 s or more")
    assert pf.sessions_frame()["state"].tolist() == ["idle in transaction"] * 2


def test_the_statement_of_a_session_is_shown_without_its_secrets(tiny_engine, tiny_db_url):
    canary = "Canary-pf-77a1"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import psycopg, sys\n"
         f"c = psycopg.connect({libpq_url(tiny_db_url)!r})\n"
         f"c.execute(\"SELECT count(*), 'host=db password={canary}' FROM users\")\n"
         "print('ready', flush=True)\nsys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        pf = preflight.check(tiny_engine, long_tx_s=600)
    finally:
        holder.communicate("")
    (session,) = pf.sessions
    assert session.query == "SELECT count(*), '***' FROM users"
    assert canary not in pf.sessions_frame().to_string()


def test_judgement_of_a_standby_is_pure():
    settings = {"is_replica": True, "read_only": False, "role": "app", "superuser": False,
                "statement_timeout": "30s", "stats_age_s": 86400.0}
    reasons, warnings = preflight.judge(settings, (), (), long_tx_s=60, ext={"pg_stat_statements": True, "hypopg": False})
    assert reasons == ["the server is a read-only standby (pg_is_in_recovery); connect to the primary"]
    assert warnings == ["hypopg is not usable: see inventory.extensions for how to enable it"]


def test_long_tx_must_be_positive(tiny_engine):
    with pytest.raises(ValueError, match="long_tx_s must be positive, got 0"):
        preflight.check(tiny_engine, long_tx_s=0)
