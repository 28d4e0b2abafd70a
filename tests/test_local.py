from __future__ import annotations

import json
import socket

import psutil
import psycopg
import pytest
import redis

from kit import local
from kit.config import libpq_url
from kit.errors import LauncherError


def test_session_servers_are_real_and_configured(fresh_db_url, redis_url):
    with psycopg.connect(libpq_url(fresh_db_url)) as conn:
        settings = dict(conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
            [["fsync", "compute_query_id", "shared_preload_libraries", "listen_addresses"]]).fetchall())
        extensions = {r[0] for r in conn.execute("SELECT extname FROM pg_extension")}
    assert settings == {"fsync": "off", "compute_query_id": "on",
                        "shared_preload_libraries": "pg_stat_statements", "listen_addresses": "127.0.0.1"}
    assert "pg_stat_statements" in extensions  # created in template1, so every test database has it
    assert redis.Redis.from_url(redis_url).ping() is True
    assert redis.Redis.from_url(redis_url).config_get("save") == {"save": ""}


def test_up_again_reuses_the_running_servers(kit_home, services):
    again = local.up(home=kit_home)
    assert {k: v.pid for k, v in again.items()} == {k: v.pid for k, v in services.items()}


def test_lifecycle_down_stops_exactly_our_processes_and_stale_state_is_dropped(tmp_path):
    home = tmp_path / "home"
    servers = local.up(home=home)
    pids = {srv.pid for srv in servers.values()}
    assert all(psutil.pid_exists(pid) for pid in pids)
    assert local.status(home=home).keys() == {"postgres", "redis"}

    stopped = local.down(home=home)
    assert {srv.pid for srv in stopped} == pids
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids)
    assert local.status(home=home) == {}

    # a state file naming a process that is gone (or a reused pid) is cleaned, not trusted
    stale = {kind: {**srv.__dict__, "started_at": srv.started_at - 1000} for kind, srv in servers.items()}
    (home / local.STATE_FILE).write_text(json.dumps(stale))
    assert local.status(home=home) == {}
    assert not (home / local.STATE_FILE).exists()

    # the data directory survives down (without purge) and is reused by the next up
    again = local.up(home=home)
    assert again["postgres"].data_dir == servers["postgres"].data_dir
    local.down(home=home, purge=True)


def test_port_in_use_is_one_clear_error(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(LauncherError, match=f"port {port} is already in use"):
            local.up(home=tmp_path / "h", redis_port=port)
    local.down(home=tmp_path / "h", purge=True)


def test_no_postgresql_binaries_and_no_fallback(tmp_path):
    assert local.find_pg_bindir(candidates=[str(tmp_path)]) is None
    try:
        import pgserver  # noqa: F401
    except ImportError:
        with pytest.raises(LauncherError, match="no PostgreSQL binaries found .* no fallback"):
            local._start_pgserver(tmp_path)
    else:  # pragma: no cover - only where the embedded extra is installed
        pytest.fail("this test expects the [embedded] extra not to be installed")


def test_is_kit_database(pg_server, kit_home):
    assert local.is_kit_database(pg_server.url, home=kit_home) is True
    assert local.is_kit_database("postgresql://postgres@127.0.0.1:5432/postgres", home=kit_home) is False
