"""Bad input through the ``kit`` command: one line on stderr, exit code 2, nothing half-written."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from kit.cli import main
from kit.config import libpq_url
from kit.servers import local

KIT = str(Path(sys.executable).parent / "kit")


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def unused_port() -> int:
    return local.free_port()


def test_unreachable_database(capsys, unused_port, tmp_path):
    code, _, err = _run(["seed", "--scale", "tiny", "--apply",
                         "--database-url", f"postgresql://u:hunter2@127.0.0.1:{unused_port}/x"], capsys)
    line = _one_line(err)
    assert code == 2
    assert line.startswith(f"kit: error: cannot connect to postgresql+psycopg://u:***@127.0.0.1:{unused_port}/x")
    assert "hunter2" not in err and "kit services up" in line


def test_not_a_postgresql_url(capsys):
    code, _, err = _run(["seed", "--database-url", "mysql://root:pw@db/app"], capsys)
    assert code == 2
    assert _one_line(err) == ("kit: error: not a PostgreSQL URL: 'mysql://root:***@db/app' (scheme 'mysql'); "
                              "expected postgresql://user@host:port/dbname")


@pytest.fixture
def password_role(pg_server):
    """A role that must log in with a password over TCP (the kit's server trusts everyone else)."""
    data = Path(pg_server.data_dir)
    hba = data / "pg_hba.conf"
    original = hba.read_text()
    hba.write_text("host all pw_user 127.0.0.1/32 scram-sha-256\n" + original)
    with psycopg.connect(local._admin_dsn(pg_server), autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS pw_user")
        conn.execute("CREATE ROLE pw_user LOGIN PASSWORD 'right-password'")
        conn.execute("SELECT pg_reload_conf()")
    yield f"postgresql://pw_user:{{}}@127.0.0.1:{pg_server.port}/demo"
    hba.write_text(original)
    with psycopg.connect(local._admin_dsn(pg_server), autocommit=True) as conn:
        conn.execute("SELECT pg_reload_conf()")
        conn.execute("DROP ROLE pw_user")


def test_wrong_password_is_masked(capsys, password_role):
    code, _, err = _run(["seed", "--apply", "--database-url", password_role.format("wrong-password")], capsys)
    assert code == 2
    assert "password authentication failed" in _one_line(err)
    assert "wrong-password" not in err and "pw_user:***@" in err
    with psycopg.connect(libpq_url(password_role.format("right-password"))) as conn:  # the role itself works
        assert conn.execute("SELECT current_user").fetchone() == ("pw_user",)


def test_seeding_a_database_the_kit_did_not_create_needs_apply(capsys, monkeypatch, tmp_path, foreign_url):
    monkeypatch.setenv("KIT_HOME", str(tmp_path))
    code, _, err = _run(["seed", "--scale", "tiny", "--database-url", foreign_url], capsys)
    assert code == 2
    assert "was not created by the kit" in _one_line(err) and "--apply" in err


def test_unknown_scale(capsys):
    code, _, err = _run(["seed", "--scale", "huge"], capsys)
    assert (code, _one_line(err)) == (2, "kit: error: unknown scale 'huge'; choose one of tiny, demo, large")


@pytest.fixture
def taken_port():
    """A port another process listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_port_in_use(capsys, monkeypatch, tmp_path, taken_port):
    monkeypatch.setenv("KIT_HOME", str(tmp_path / "home"))
    port = taken_port
    code, _, err = _run(["services", "up", "--pg-port", str(port)], capsys)
    assert code == 2
    assert f"port {port} is already in use" in _one_line(err)
    assert local.status(home=tmp_path / "home") == {}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "-p", "colour", "red"], "kit: error: unknown parameter 'colour'; the notebooks declare: "
                                         "apply, apply_settings, database_env, index_budget_mb, load_processes, load_rate, "
                                         "load_seconds, load_users, migrations, min_calls, plan, redis_env, "
                                         "repeats, scale, top_statements"),
        (["run", "-p", "apply", "perhaps"], "kit: error: parameter apply expects bool, got 'perhaps'"),
        (["run", "--notebook", "99_missing.ipynb"], "kit: error: notebook not found: "),
    ],
)
def test_run_bad_parameters_and_missing_notebook(capsys, tmp_path, argv, message):
    code, _, err = _run([*argv, "--runs-dir", str(tmp_path / "runs")], capsys)
    assert code == 2
    assert _one_line(err).startswith(message)
    assert not (tmp_path / "runs").exists()


def test_the_console_script_exits_2_with_one_line(unused_port, tmp_path):
    env = {**os.environ, "KIT_HOME": str(tmp_path)}
    proc = subprocess.run([KIT, "seed", "--apply", "--database-url", f"postgresql://a:b@127.0.0.1:{unused_port}/d"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


@pytest.mark.parametrize("argv", [["preflight", "--database-url", "postgresql://u:p4ss@host:notaport/db"],
                                  ["run"]])
def test_a_port_that_is_not_a_number_is_one_line_exit_2(argv, tmp_path, monkeypatch):
    env = {**os.environ, "KIT_HOME": str(tmp_path), "KIT_DATABASE_URL": "postgresql://u:p4ss@host:notaport/db"}
    proc = subprocess.run([KIT, *argv, "--runs-dir", str(tmp_path / "runs")] if argv == ["run"] else [KIT, *argv],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "kit: error: not a database URL: 'postgresql://u:***@host:notaport/db' has a port that is not a number; "
        "expected postgresql://user@host:port/dbname"]
    assert not (tmp_path / "runs").exists()


def test_services_status_and_bench_list(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("KIT_HOME", str(tmp_path))
    code, out, _ = _run(["services", "status"], capsys)
    assert (code, out.strip()) == (0, "no kit servers are running (start them with `kit services up`)")
    code, _, err = _run(["bench", "nope"], capsys)
    assert code == 2 and _one_line(err).startswith("kit: error: unknown benchmark 'nope'; choose one of datagen")


def test_metrics_serve_on_a_taken_port_is_one_line(capsys, monkeypatch, fresh_db_url, taken_port):
    monkeypatch.setenv("KIT_DATABASE_URL", fresh_db_url)
    port = taken_port
    code, _, err = _run(["metrics", "serve", "--port", str(port)], capsys)
    assert code == 2
    assert _one_line(err) == (f"kit: error: cannot serve metrics on 127.0.0.1:{port}: Address already in use; "
                              "choose another port with --port (0 picks a free one)")


def test_services_up_with_crons_path(tmp_path):
    """cron runs jobs with PATH=/usr/bin:/bin: runuser lives in /usr/sbin."""
    env = {**os.environ, "KIT_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    try:
        proc = subprocess.run([KIT, "services", "up"], capture_output=True, text=True, env=env, timeout=120)
        assert (proc.returncode, proc.stderr) == (0, "")
        assert set(local.status(home=tmp_path / "home")) == {"postgres", "redis"}
    finally:
        local.down(home=tmp_path / "home", purge=True)


@pytest.fixture
def read_only_url(pg_server, fresh_db_url):
    role = "kit_reader_cli"
    with psycopg.connect(libpq_url(fresh_db_url), autocommit=True) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {role}")
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    yield fresh_db_url.replace("postgres@", f"{role}@")
    with psycopg.connect(libpq_url(fresh_db_url), autocommit=True) as conn:
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def test_seed_with_a_role_that_may_not_create_tables(capsys, read_only_url):
    code, _, err = _run(["seed", "--scale", "tiny", "--apply", "--database-url", read_only_url], capsys)
    assert code == 2
    line = _one_line(err)
    assert line.startswith("kit: error: cannot seed postgresql+psycopg://kit_reader_cli@127.0.0.1:")
    assert line.endswith("(nothing was written): permission denied for schema public (the role lacks a privilege); "
                         "use the URL of a role that owns the database")


@pytest.mark.parametrize(("argv", "message"), [
    (["run", "--notebook", "../README.md"], "kit: error: not a notebook: "),
    (["seed", "--database-url", "postgresql://u:S3cret@db:five/app"],
     "kit: error: not a database URL: 'postgresql://u:***@db:five/app' has a port that is not a number"),
    (["seed", "--database-url", "auditor:S3cret@db:5432/app"],
     "kit: error: not a database URL: 'auditor:***@db:5432/app'; it has no scheme"),
    (["seed", "--database-url", "postgresql://u:S3/cr et@db/app"], "kit: error: "),
    (["run", "--notebook", "04_trends.ipynb", "-p", "runs_dir", "host=db password=S3cret"],
     "kit: error: parameter runs_dir holds a password"),
    (["run", "-p", "scale", "huge"], "kit: error: parameter scale must be one of tiny, demo, large, got 'huge'"),
    (["run", "-p", "load_users", "-5"], "kit: error: parameter load_users must be between 1 and 10000, got -5"),
    (["run", "--kernel", "nope"], "kit: error: no Jupyter kernel named 'nope'; installed: "),
    (["load", "--users", "0"], "kit: error: Invalid value for '--users': 0 is not in the range x>=1. "
                               "(see `kit load --help`)"),
    (["services", "up", "--pg-port", "70000"], "kit: error: Invalid value for '--pg-port': 70000 is not in the "
                                               "range 1<=x<=65535."),
    (["services", "up", "--pg-bindir", "/nonexistent/bin"], "kit: error: /nonexistent/bin is not a PostgreSQL bin "
                                                           "directory (no initdb, pg_ctl, postgres)"),
    (["nosuch"], "kit: error: No such command 'nosuch'. (see `kit --help`)"),
])
def test_bad_input_is_one_line_exit_2_and_no_password(capsys, tmp_path, argv, message):
    code, _, err = _run([*argv, *(["--runs-dir", str(tmp_path / "runs")] if argv[0] == "run" else [])], capsys)
    assert code == 2
    assert _one_line(err).startswith(message)
    assert "S3cret" not in err and "S3/cr" not in err
    assert not (tmp_path / "runs").exists()
