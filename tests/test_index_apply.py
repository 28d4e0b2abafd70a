"""Applying the migration: dry run, idempotence, repair, lock timeouts, refusals (real servers)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import text

from kit.config import libpq_url
from kit.errors import IndexBuildError, UnsafeOperation
from kit.indexes.apply import ADVISORY_KEY, MARKER, apply_indexes
from kit.indexes.spec import MigrationError, parse_index_sql
from kit.indexes.status import index_status
from kit.demo.schema import create_schema

FAST = dict(sample_s=0, poll_s=0.05, progress=None, out=None)


@pytest.fixture
def schema_engine(fresh_engine):
    with fresh_engine.begin() as conn:
        create_schema(conn)
        conn.execute(text("INSERT INTO users (email, first_name, last_name, role) "
                          "SELECT 'u' || g || '@x.org', 'f', 'l', 'analyst' FROM generate_series(1, 500) g"))
    return fresh_engine


def _dsn(engine) -> str:
    return libpq_url(engine.url.render_as_string(hide_password=False))


def _index_count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'idx_%'")).scalar_one()


def test_dry_run_prints_the_plan_and_changes_nothing(schema_engine):
    lines: list[str] = []
    result = apply_indexes(schema_engine, **{**FAST, "out": lines.append})
    assert (result.applied, len(result.names("planned")), _index_count(schema_engine)) == (False, 23, 0)
    assert lines[0] == "would create   idx_reconciliation_jobs_project_status"
    assert result.to_frame()["size_from"].unique().tolist() == ["hypopg"]


def test_apply_builds_all_23_then_does_nothing(schema_engine):
    first = apply_indexes(schema_engine, apply=True, **FAST)
    assert (len(first.names("applied")), first.failed) == (23, [])
    assert index_status(schema_engine).counts()["applied"] == 23
    with schema_engine.connect() as conn:
        analyzed = conn.execute(text("SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables "
                                     "WHERE relname = 'users'")).scalar_one()
    assert analyzed is True
    second = apply_indexes(schema_engine, apply=True, **FAST)
    assert (len(second.names("unchanged")), second.names("applied")) == (23, [])


def test_terminated_concurrent_build_is_repaired(schema_engine, waiting_build):
    spec = parse_index_sql("CREATE INDEX idx_users_email_lower ON users (lower(email))")
    build = waiting_build(_dsn(schema_engine), spec[0].create_sql)  # waits for an old snapshot at its last phase
    assert build.phase == "waiting for old snapshots"
    build.fail()
    assert index_status(schema_engine, spec).state_of("idx_users_email_lower") == "invalid"
    result = apply_indexes(schema_engine, spec, apply=True, **FAST)
    assert (result.steps[0].action, result.steps[0].status) == ("rebuild", "applied")
    assert index_status(schema_engine, spec).state_of("idx_users_email_lower") == "applied"
    with schema_engine.connect() as conn:
        invalid = conn.execute(text("SELECT count(*) FROM pg_index WHERE NOT indisvalid")).scalar_one()
    assert invalid == 0


def _hold_lock(dsn: str, table: str) -> subprocess.Popen:
    """Another process holds a SHARE lock on ``table`` (conflicts with CREATE INDEX CONCURRENTLY)."""
    code = ("import psycopg, sys, time\n"
            f"c = psycopg.connect({dsn!r})\n"
            f"c.execute('LOCK TABLE {table} IN SHARE MODE')\n"
            "print(c.info.backend_pid, flush=True)\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    proc.pid_pg = int(proc.stdout.readline())  # type: ignore[attr-defined]
    return proc


def test_lock_timeout_is_honoured_retried_and_reported(schema_engine):
    spec = parse_index_sql("CREATE INDEX idx_users_active ON users (created_at DESC) WHERE is_active")
    holder = _hold_lock(_dsn(schema_engine), "users")
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:  # the holder goes away during the first backoff
        sleeps.append(seconds)
        holder.kill()  # SIGKILL: a SIGTERM was once still pending after 10 s in a full make test
        holder.wait(10)
        time.sleep(0.2)

    try:
        result = apply_indexes(schema_engine, spec, apply=True, lock_timeout_ms=200, retries=2,
                               backoff_s=0.5, **{**FAST, "sleep": sleep})
    finally:
        holder.kill()
    assert (result.steps[0].status, result.steps[0].attempts, sleeps) == ("applied", 2, [0.5])
    (wait,) = result.lock_waits
    assert (wait.attempt, wait.blocker_pids) == (1, (holder.pid_pg,))
    assert wait.error == "canceling statement due to lock timeout"


def test_lock_never_released_fails_with_the_blocking_pid(schema_engine):
    spec = parse_index_sql("CREATE INDEX idx_users_active ON users (created_at DESC) WHERE is_active")
    holder = _hold_lock(_dsn(schema_engine), "users")
    try:
        result = apply_indexes(schema_engine, spec, apply=True, lock_timeout_ms=100, retries=2,
                               backoff_s=0.01, **{**FAST, "sleep": lambda s: None})
    finally:
        holder.kill()
    step = result.steps[0]
    assert (step.status, step.attempts, len(result.lock_waits)) == ("failed", 3, 3)
    assert f"blocking pids: {holder.pid_pg}" in step.message
    assert index_status(schema_engine, spec).state_of("idx_users_active") in ("missing", "invalid")


def test_refuses_while_this_process_holds_a_transaction(schema_engine):
    with schema_engine.connect() as conn:
        conn.execute(text("SELECT 1 FROM users LIMIT 1"))  # transaction left open
        with pytest.raises(UnsafeOperation, match="this process holds 1 open transaction"):
            apply_indexes(schema_engine, apply=True, **FAST)
    assert _index_count(schema_engine) == 0


def test_second_applier_is_refused_by_the_advisory_lock(schema_engine):
    with psycopg.connect(_dsn(schema_engine), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(hashtext(%s))", [ADVISORY_KEY])
        with pytest.raises(IndexBuildError, match="another session is applying indexes"):
            apply_indexes(schema_engine, apply=True, **FAST)
    assert _index_count(schema_engine) == 0


@pytest.mark.parametrize("migration, message", [
    ("CREATE INDEX a ON users (email);\nCREATE INDEX b ON users (role;\n", r"bad\.sql:2: syntax error"),
    ("CREATE INDEX a ON users (email);\nALTER TABLE users ADD COLUMN x int;\n", r"bad\.sql:2: AlterTableStmt is not"),
    ("CREATE INDEX a ON users (email);\nCREATE INDEX b ON no_such_table (x);\n",
     r"bad\.sql:2: table public\.no_such_table of index b does not exist"),
])
def test_bad_migration_is_one_clear_error_and_nothing_applied(schema_engine, tmp_path, migration, message):
    from kit.indexes.spec import parse_migration

    path = tmp_path / "bad.sql"
    path.write_text(migration)
    with pytest.raises(MigrationError, match=message):
        apply_indexes(schema_engine, parse_migration(path), apply=True, **FAST)
    with schema_engine.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM pg_indexes WHERE tablename = 'users'")).scalar_one()
    assert count == 1  # the primary key only


def test_read_only_role_is_refused_with_a_clear_message(schema_engine, pg_server):
    role = f"reader_{uuid.uuid4().hex[:8]}"
    dsn = _dsn(schema_engine)
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        admin.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(sql.Identifier(role)))
    from kit.db.engine import make_engine

    reader = make_engine(schema_engine.url.set(username=role).render_as_string(hide_password=False))
    try:
        with pytest.raises(UnsafeOperation, match=rf"unsafe to change this database: role {role} does not own 10 "
                                                  r"table\(s\) .*CREATE INDEX needs the owner's role"):
            apply_indexes(reader, apply=True, **FAST)
        dry = apply_indexes(reader, **FAST)
        assert len(dry.names("planned")) == 23
    finally:
        reader.dispose()
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def _active_holder(dsn: str) -> subprocess.Popen:
    """Another process runs a long statement inside a transaction that has read ``users``: its
    snapshot blocks every concurrent build at the end (waiting for older snapshots)."""
    code = ("import psycopg, sys\n"
            f"c = psycopg.connect({dsn!r})\n"
            "c.execute('SELECT count(*) FROM users')\n"
            "print(c.info.backend_pid, flush=True)\n"
            "c.execute(\"SELECT pg_sleep(120), 'password=Canary-lock-9d2'\")\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    proc.pid_pg = int(proc.stdout.readline())  # type: ignore[attr-defined]
    return proc


def test_an_active_holder_fails_fast_names_the_pid_and_leaves_nothing_invalid(schema_engine):
    holder = _active_holder(_dsn(schema_engine))
    try:
        time.sleep(0.3)  # the holder's statement is running
        result = apply_indexes(schema_engine, apply=True, lock_timeout_ms=300, retries=1, backoff_s=0.1, **FAST)
    finally:
        holder.kill()
    first, *rest = [s for s in result.steps if s.action == "create"]
    assert (first.status, first.attempts) == ("failed", 2)
    assert f"blocking pids: {holder.pid_pg};" in first.message
    assert [s.status for s in rest] == ["failed"] * 22  # not tried: the same session blocks them all
    assert all(s.attempts == 0 and f"session {holder.pid_pg} (active:" in s.message for s in rest)
    assert all("pg_terminate_backend" in s.message and "Canary-lock-9d2" not in s.message for s in rest)
    with schema_engine.connect() as conn:
        invalid = conn.execute(text("SELECT count(*) FROM pg_index WHERE NOT indisvalid")).scalar_one()
    assert (invalid, _index_count(schema_engine)) == (0, 0)


def test_an_idle_holder_blocks_only_its_table(schema_engine):
    holder = _hold_lock(_dsn(schema_engine), "users")
    try:
        result = apply_indexes(schema_engine, apply=True, lock_timeout_ms=200, retries=1, backoff_s=0.05, **FAST)
    finally:
        holder.kill()
    failed = {s.name: s for s in result.steps if s.status == "failed"}
    users = {s.name for s in result.steps if s.table == "users"}
    assert set(failed) == users and len(result.names("applied")) == 23 - len(users)
    assert sum(s.attempts == 0 for s in failed.values()) == len(users) - 1  # the first one tried, the rest not
    with schema_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM pg_index WHERE NOT indisvalid")).scalar_one() == 0


# the kit's build in this test's database (the server's other databases are other tests')
KIT_BUILD = """SELECT p.pid, p.phase, obj_description(p.index_relid, 'pg_class') FROM pg_stat_progress_create_index p
JOIN pg_stat_activity a ON a.pid = p.pid WHERE a.application_name = 'dbperf-kit-build' AND p.datname = current_database()"""


def _when_waiting(dsn: str, seen: list, then) -> threading.Thread:
    """A thread that waits for the kit's build to wait for old snapshots with its index marked (40 s at
    most: the process that builds it starts slowly on a loaded machine, and a signal sent before its build
    tests nothing), notes (pid, phase, comment), then calls ``then``."""
    def watch() -> None:
        with psycopg.connect(dsn, autocommit=True) as admin:
            deadline, row = time.monotonic() + 40, None
            while time.monotonic() < deadline:
                row = admin.execute(KIT_BUILD).fetchone() or row
                if row and "old snapshots" in row[1] and row[2] is not None:
                    break
                time.sleep(0.02)
            seen.append(row)
            then()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _left_behind(dsn: str, pid: int) -> tuple:
    """(the build's backend still running a statement, INVALID indexes, idx_users_email_lower exists, apply lock held)"""
    with psycopg.connect(dsn, autocommit=True) as conn:
        deadline = time.monotonic() + 5
        while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND state = 'active'",
                           [pid]).fetchone()[0] and time.monotonic() < deadline:
            time.sleep(0.05)
        return (conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND state = 'active'",
                             [pid]).fetchone()[0],
                conn.execute("SELECT count(*) FROM pg_index WHERE NOT indisvalid").fetchone()[0],
                conn.execute("SELECT to_regclass('idx_users_email_lower') IS NOT NULL").fetchone()[0],
                conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()[0])


def _old_snapshot(dsn: str) -> subprocess.Popen:
    """Another process holds a snapshot (and no lock on a table): a concurrent build waits for it at its
    last phase, as for an application's long transaction; the pre-flight lets it be (young, not ours)."""
    code = ("import psycopg, time\n"
            f"c = psycopg.connect({dsn!r})\n"
            "c.execute('BEGIN ISOLATION LEVEL REPEATABLE READ')\nc.execute('SELECT 1')\n"
            "print(c.info.backend_pid, flush=True)\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    proc.stdout.readline()
    return proc


def _apply_in_a_process(url: str) -> subprocess.Popen:
    """apply_indexes of idx_users_email_lower in a process of its own, with a lock_timeout too long
    for the build to give up by itself (a signal sent to the test's own process could land outside
    the code under test, and end the test session instead)."""
    # Ctrl-C's handler set, as in a process started from a terminal: a suite started from a background
    # job (a non-interactive shell's `cmd &`) has SIGINT ignored, its processes inherit that and Python
    # keeps it; in 3 such `make test` runs the build never saw the Ctrl-C (its threads, dumped: waiting)
    code = ("import faulthandler, signal\nfaulthandler.register(signal.SIGUSR1, all_threads=True)\n"
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "from kit.db.engine import make_engine\nfrom kit.indexes.apply import apply_indexes\n"
            "from kit.indexes.spec import parse_index_sql\n"
            "spec = parse_index_sql('CREATE INDEX idx_users_email_lower ON users (lower(email))')\n"
            f"apply_indexes(make_engine({url!r}), spec, apply=True, lock_timeout_ms=30_000, sample_s=0, progress=None,"
            " out=None)\n"
            "print('not reached')\n")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _ended(proc: subprocess.Popen, seen: list, timeout_s: float = 60) -> tuple[str, str]:
    """The process's (stdout, stderr) once it ends; one that does not end in ``timeout_s`` fails the
    test with the build the watcher signalled it on (``seen``) and every thread's stack (faulthandler,
    on SIGUSR1)."""
    try:
        return proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)
        time.sleep(1)
        proc.kill()
        _out, err = proc.communicate()
        pytest.fail(f"the apply process did not end within {timeout_s:.0f} s (signalled on {seen or 'nothing yet'}); "
                    f"its threads:\n{err[-6000:]}")


def test_ctrl_c_during_a_build_cancels_its_backend_and_drops_what_it_left(schema_engine):
    dsn = _dsn(schema_engine)
    blocker = _old_snapshot(dsn)
    proc = _apply_in_a_process(schema_engine.url.render_as_string(hide_password=False))
    seen: list = []
    watcher = _when_waiting(dsn, seen, lambda: proc.send_signal(signal.SIGINT))  # as a terminal's Ctrl-C
    try:
        out, err = _ended(proc, seen)
    finally:
        watcher.join(10)
        proc.kill()
        blocker.kill()
    assert out == "" and "KeyboardInterrupt" in err  # interrupted in the build, not after it
    (pid, _phase, comment), = seen
    assert comment.startswith(f"{MARKER} 20")  # marked as the kit's as soon as it existed
    assert _left_behind(dsn, pid) == (0, 0, False, 0)  # cancelled, dropped although the blocker was still there


def test_sigterm_during_a_build_cancels_it_and_drops_what_it_left_before_the_process_ends(schema_engine):
    dsn = _dsn(schema_engine)
    blocker = _old_snapshot(dsn)
    proc = _apply_in_a_process(schema_engine.url.render_as_string(hide_password=False))
    seen: list = []
    watcher = _when_waiting(dsn, seen, lambda: proc.send_signal(signal.SIGTERM))
    try:
        out, err = _ended(proc, seen)
    finally:
        watcher.join(10)
        proc.kill()
        blocker.kill()
    assert (proc.returncode, out) == (-signal.SIGTERM, "")  # it ends as SIGTERM asked, after the cleanup
    (pid, _phase, _comment), = seen
    assert _left_behind(dsn, pid) == (0, 0, False, 0)
