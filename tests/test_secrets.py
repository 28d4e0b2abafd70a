"""`kit run` with a password in the database URL (from the environment) and secrets inside the
statement texts PostgreSQL keeps (a role password, a user mapping, a dblink connection string, a
secret setting, a comment): no file of the run folder — notebooks, HTML, summary, bundle, records,
artifacts — contains any of them."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from kit.demo.bench import faults
from kit.runs import runner
from kit.servers import local

PASSWORD = "Zq7-secret-pw-4711"
ROLE = "kit_secret_user"
CANARY, CANARY_ROLE = faults.CANARY, faults.CANARY_ROLE


@pytest.fixture
def password_url(pg_server, tiny_db_url):
    """A superuser that must log in with a password over TCP (the notebooks create and drop things)."""
    hba = Path(pg_server.data_dir) / "pg_hba.conf"
    original = hba.read_text()
    hba.write_text(f"host all {ROLE} 127.0.0.1/32 scram-sha-256\n" + original)
    with psycopg.connect(local._admin_dsn(pg_server), autocommit=True) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {ROLE}")
        conn.execute(f"CREATE ROLE {ROLE} LOGIN SUPERUSER PASSWORD '{PASSWORD}'")
        conn.execute("SELECT pg_reload_conf()")
    database = tiny_db_url.rsplit("/", 1)[1]
    yield f"postgresql://{ROLE}:{PASSWORD}@127.0.0.1:{pg_server.port}/{database}"
    hba.write_text(original)
    with psycopg.connect(local._admin_dsn(pg_server), autocommit=True) as conn:
        conn.execute("SELECT pg_reload_conf()")
        conn.execute(f"DROP OWNED BY {ROLE}")
        conn.execute(f"DROP ROLE {ROLE}")


@pytest.fixture
def planted_secrets(pg_server, password_url):
    database = password_url.rsplit("/", 1)[1]
    dsn = local._admin_dsn(pg_server).replace("dbname=postgres", f"dbname={database}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        kept = faults.plant_secrets(conn, port=pg_server.port, database=database)
    assert kept >= 4  # PostgreSQL kept the secrets word for word: the kit must not
    yield
    with psycopg.connect(dsn, autocommit=True) as conn:
        faults.remove_secrets(conn)


def test_no_file_of_a_run_contains_a_secret(password_url, planted_secrets, redis_url, tmp_path, monkeypatch):
    with psycopg.connect(password_url, connect_timeout=5) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (ROLE,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(password_url.replace(PASSWORD, "wrong"), connect_timeout=5)
    monkeypatch.setenv("KIT_DATABASE_URL", password_url)
    monkeypatch.setenv("KIT_REDIS_URL", redis_url)
    monkeypatch.setenv("KIT_HOME", str(tmp_path / "home"))
    result = runner.run(parameters={"scale": "tiny", "load_users": 2, "load_seconds": 0.5}, runs_dir=tmp_path / "runs", progress=False)
    files = sorted(p for p in result.folder.rglob("*") if p.is_file())
    names = {p.name for p in files}
    assert {"01_audit.ipynb", "01_audit.html", "03_report.html", "summary.json", "bundle.json"} <= names
    needles = {s.encode() for s in (PASSWORD, quote(PASSWORD), CANARY)} | {PASSWORD.encode("utf-16-le")}
    hits = [(p.name, n) for p in files for n in needles if n in p.read_bytes()]
    assert hits == []
    bundle = (result.folder / "bundle.json").read_text()
    assert f'"target": "postgresql://{ROLE}@127.0.0.1:' in bundle  # the run is grouped by a password-free key
    assert f"ALTER ROLE {CANARY_ROLE} PASSWORD '***'" in bundle  # the statement is there, its secret is not
