"""Redis hung, killed, with writes paused or out of memory under a reader in another process: no
stale read beyond the liveness bound, no failed read, every undelivered invalidation counted and
reported, L2 back by itself (servers from the kit's launcher; the test's own Redis is paused,
killed and reconfigured)."""

from __future__ import annotations

import pytest

from kit.demo.outage import run_outage
from kit.servers import local


@pytest.fixture(scope="module")
def own_servers(tmp_path_factory):
    home = tmp_path_factory.mktemp("outage-home")
    servers = local.up(home=home)
    url = local.create_database(servers["postgres"], "outage")
    yield home, url
    local.down(home=home, purge=True)


# an outage of four liveness bounds (250 ms), with time before it and after it for L2 to come back
# (the cache retries Redis every 0.2 s; 2 s after, as the fault bench: with 1 s a loaded machine once
# left a hung Redis's reader without its invalidations caught up)
SHORT = {"before_s": 0.5, "outage_s": 1.0, "after_s": 2.0}


def _redis(home):
    return local.status(home=home)["redis"]


def test_a_hung_redis_turns_l1_off_within_the_bound(own_servers):
    home, url = own_servers
    redis_srv = _redis(home)
    result = run_outage(url, redis_srv.url, fault="hang", redis_pid=redis_srv.pid, **SHORT)
    assert result.requests > 1000 and result.errors == 0
    assert result.window_ms == 250.0
    assert result.stale_reads_beyond_window == 0, sorted(result.staleness_ms)[-5:]
    assert result.l2_resumed is True
    assert any("no heartbeat within 250 ms" in w and "database only" in w for w in result.warnings), result.warnings
    assert not any("L1 + database" in w for w in result.warnings)


def test_the_measure_sees_stale_reads_when_l1_outlives_a_silent_redis(own_servers):
    """The control: with a bound longer than the hang, the reader's L1 serves old values — the
    measure above can fail."""
    home, url = own_servers
    redis_srv = _redis(home)
    result = run_outage(url, redis_srv.url, fault="hang", redis_pid=redis_srv.pid, **SHORT,
                        cache_kwargs={"liveness_bound": 30.0})
    assert result.errors == 0
    assert result.beyond(250.0) > 100


def test_a_killed_redis_comes_back_on_its_port_and_the_reader_uses_it_again(own_servers):
    home, url = own_servers
    redis_srv = _redis(home)
    result = run_outage(url, redis_srv.url, fault="kill", redis_pid=redis_srv.pid, **SHORT,
                        restart=lambda: local.up(home=home))
    assert _redis(home).port == redis_srv.port and _redis(home).pid != redis_srv.pid
    assert result.requests > 1000 and result.errors == 0
    assert result.stale_reads_beyond_window == 0, sorted(result.staleness_ms)[-5:]
    assert result.l2_resumed is True
    assert any("connection lost" in w and "database only" in w for w in result.warnings), result.warnings
    assert any("L2 resumed" in w for w in result.warnings)


def _all_reported(result) -> None:
    """The fault bit the writer, and its cache counted, logged once and replayed every failure."""
    assert result.invalidation_failures > 0
    assert result.failures_reported == result.invalidation_failures
    assert result.replayed == result.invalidation_failures
    undelivered = [w for w in result.writer_warnings if "not delivered" in w]
    assert len(undelivered) == 1 and "L1 off" in undelivered[0], result.writer_warnings
    assert any(f"replayed {result.invalidation_failures} undelivered" in w for w in result.writer_warnings)


def test_paused_writes_turn_l1_off_within_the_bound(own_servers):
    """CLIENT PAUSE WRITE: PING and reads answer, invalidations and heartbeats wait."""
    home, url = own_servers
    result = run_outage(url, _redis(home).url, fault="write_pause", **SHORT)
    assert result.requests > 1000 and result.errors == 0
    assert result.stale_reads_beyond_window == 0, sorted(result.staleness_ms)[-5:]
    _all_reported(result)
    assert result.l2_resumed is True
    assert any("no heartbeat within 250 ms" in w and "database only" in w for w in result.warnings), result.warnings


def test_redis_out_of_memory_turns_l1_off_on_the_table_tag_path(own_servers):
    """maxmemory reached, noeviction: the tag's generation bump is refused, PING and PUBLISH work."""
    home, url = own_servers
    result = run_outage(url, _redis(home).url, fault="oom", **SHORT, invalidate_by="tag")
    assert result.requests > 1000 and result.errors == 0
    assert result.stale_reads_beyond_window == 0, sorted(result.staleness_ms)[-5:]
    _all_reported(result)
    assert result.l2_resumed is True
    assert any("no heartbeat within 250 ms" in w and "OutOfMemoryError" in w for w in result.warnings), result.warnings
    assert any("BumpRefused" in w for w in result.writer_warnings), result.writer_warnings


def test_the_measure_sees_stale_reads_when_l1_outlives_paused_writes(own_servers):
    """The control: with a bound longer than the pause, the reader's L1 serves values whose
    invalidation is held — the measure above can fail."""
    home, url = own_servers
    result = run_outage(url, _redis(home).url, fault="write_pause", **SHORT,
                        cache_kwargs={"liveness_bound": 30.0})
    assert result.errors == 0 and result.invalidation_failures > 0
    assert result.beyond(250.0) > 100
