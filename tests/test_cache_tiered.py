"""The tiered cache under concurrency, across processes and through a Redis outage (real Redis)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis

from kit.cache import MISSING, CacheConfig, TieredCache
from kit.demo.outage import out_of_memory, writes_paused
from kit.servers.local import free_port


def _ns() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def _wait_until(pred, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


@pytest.fixture
def cache(redis_url):
    with TieredCache(redis_url=redis_url, namespace=_ns(), config=CacheConfig(ttl=60)) as c:
        yield c
        c.clear()


def test_get_or_load_loads_once_and_caches_none(cache):
    calls = []
    for _ in range(3):
        assert cache.get_or_load("k", lambda: calls.append(1), ttl=10) is None
    assert calls == [1]
    assert cache.stats.get("l1", "hits") == 2


def test_l2_hit_after_l1_flush(cache):
    cache.get_or_load("k", lambda: {"v": 1})
    cache.l1.clear()
    assert cache.get_or_load("k", lambda: {"v": 2}) == {"v": 1}
    assert cache.stats.get("l2", "hits") == 1


def test_single_flight_per_key(cache):
    gate, calls = threading.Event(), []

    def loader():
        calls.append(1)
        gate.wait(5)
        return "v"

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get_or_load("hot", loader)))
               for _ in range(20)]
    for t in threads:
        t.start()
    _wait_until(lambda: len(calls) == 1)
    time.sleep(0.05)  # let the followers join the flight
    gate.set()
    for t in threads:
        t.join()
    assert (len(calls), results) == (1, ["v"] * 20)


def test_loader_error_reaches_every_waiter_and_is_not_cached(cache):
    with pytest.raises(ZeroDivisionError):
        cache.get_or_load("boom", lambda: 1 / 0)
    assert cache.get_or_load("boom", lambda: 7) == 7


def test_refill_race_old_value_is_not_stored(cache, redis_url):
    """A reader loads v1, a write commits v2 and invalidates, then the reader finishes."""
    loaded, release = threading.Event(), threading.Event()

    def slow_old():
        loaded.set()
        release.wait(5)
        return "v1"

    out = []
    reader = threading.Thread(target=lambda: out.append(cache.get_or_load("p", slow_old)))
    reader.start()
    loaded.wait(5)
    cache.invalidate(keys=["p"])  # the write committed
    assert cache.get_or_load("p", lambda: "v2") == "v2"  # a read after the commit: never v1
    release.set()
    reader.join()
    assert out == ["v1"]  # it started before the write: returning v1 is fine, storing it is not
    assert cache.get_or_load("p", lambda: "v3") == "v2"
    assert cache.l2.get("p") == "v2"


def test_refill_race_across_caches_refused_by_generation(redis_url):
    ns = _ns()
    with TieredCache(redis_url=redis_url, namespace=ns) as a, TieredCache(redis_url=redis_url, namespace=ns) as b:
        release = threading.Event()

        def slow_old():
            b.invalidate(tags=["project:1"])  # another process's write commits mid-load
            return "old"

        assert a.get_or_load("project:1", slow_old, tags=["project:1"]) == "old"
        assert a.stats.get("l2", "stores_refused") == 1
        assert (a.l2.get("project:1"), a.l1.get("project:1")) == (MISSING, MISSING)
        release.set()


def test_stampede_lock_one_loader_across_caches(redis_url):
    ns = _ns()
    config = CacheConfig(lock=True, cross_process=False)
    caches = [TieredCache(redis_url=redis_url, namespace=ns, config=config) for _ in range(4)]
    calls, results = [], []

    def loader():
        calls.append(1)
        time.sleep(0.2)
        return "fresh"

    threads = [threading.Thread(target=lambda c=c: results.append(c.get_or_load("hot", loader))) for c in caches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (len(calls), results) == (1, ["fresh"] * 4)
    assert sum(c.stats.get("l2", "lock_waits") for c in caches) == 3
    caches[0].clear()
    for c in caches:
        c.close()


_READER = r"""
import json, sys, time, redis
from kit.cache import CacheConfig, TieredCache
url, ns, src, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
r = redis.Redis.from_url(url)
cache = TieredCache(redis_url=url, namespace=ns, config=CacheConfig(ttl=60))
print("ready", flush=True)
out = []
for _ in range(n):
    t0 = time.time()
    v = cache.get_or_load("k", lambda: int(r.get(src)))
    out.append((t0, v))
    time.sleep(0.0005)
print(json.dumps({"reads": out, "stats": cache.stats.snapshot()}), flush=True)
cache.close()
"""


def test_invalidation_reaches_another_process(redis_url):
    """A real second process reads through its own L1; our writes invalidate it within a bounded window."""
    ns, src = _ns(), f"src:{uuid.uuid4().hex}"
    r = redis.Redis.from_url(redis_url)
    r.set(src, 0)
    writer = TieredCache(redis_url=redis_url, namespace=ns, config=CacheConfig(ttl=60))
    proc = subprocess.Popen([sys.executable, "-c", _READER, redis_url, ns, src, "4000"],
                            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1])
    assert proc.stdout.readline().strip() == "ready"
    commits = []
    for v in range(1, 41):
        r.set(src, v)  # the write commits
        writer.invalidate(keys=["k"])
        commits.append((time.time(), v))
        time.sleep(0.02)
    result = json.loads(proc.stdout.readline())
    proc.wait(30)
    reads = result["reads"]
    stale_after = []
    for start, value in reads:
        committed = [v for t, v in commits if t < start]
        if committed and value < committed[-1]:
            done = [t for t, v in commits if v == committed[-1]][0]
            stale_after.append(start - done)
    assert len(reads) == 4000
    assert result["stats"]["l1"]["hits"] > 1000  # the reader really served from its L1
    assert result["stats"]["l1"]["invalidations_received"] >= 30
    assert max(stale_after, default=0.0) < 0.5  # stale only inside the propagation window
    writer.clear()
    writer.close()


def _start_redis(port: int, directory: Path) -> subprocess.Popen:
    proc = subprocess.Popen([shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(directory)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    assert _wait_until(lambda: _pings(url)), "throwaway redis-server did not start"
    return proc


def _pings(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=0.2).ping())
    except redis.RedisError:
        return False


def test_redis_killed_degrades_then_resumes(tmp_path):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    server = _start_redis(port, tmp_path)
    truth = {"v": 1}
    cache = TieredCache(redis_url=url, namespace="outage", config=CacheConfig(ttl=60, cooldown=0.2))
    try:
        assert cache.get_or_load("k", lambda: dict(truth)) == {"v": 1}
        assert cache.channel.up is True
        os.kill(server.pid, signal.SIGKILL)
        server.wait(5)
        failures, values = 0, []
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # requests keep being served during the outage
            try:
                values.append(cache.get_or_load("k", lambda: dict(truth))["v"])
            except Exception:  # noqa: BLE001 - the claim is that nothing fails
                failures += 1
            if len(values) == 50:
                truth["v"] = 2  # a write while Redis is down: only this process knows
                cache.invalidate(keys=["k"])
        assert failures == 0
        assert cache.channel.up is False
        assert values[-1] == 2  # L1 bypassed while the channel is down: no stale read
        assert cache.stats.get("l2", "errors") >= 1
        server = _start_redis(port, tmp_path)
        assert _wait_until(lambda: cache.channel.up and cache.l2.available)
        cache.get_or_load("k", lambda: dict(truth))
        other = TieredCache(redis_url=url, namespace="outage", config=CacheConfig(ttl=60))
        assert other.get_or_load("k", lambda: {"v": -1}) == {"v": 2}  # L2 serves again
        assert other.stats.get("l2", "hits") == 1
        other.close()
    finally:
        cache.close()
        server.kill()
        server.wait(5)


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory):
    """A Redis of this module's own: its tests pause its writes and fill its memory."""
    port = free_port()
    server = _start_redis(port, tmp_path_factory.mktemp("private-redis"))
    yield f"redis://127.0.0.1:{port}/0"
    server.kill()
    server.wait(5)


# heartbeats may wait out a short pause without L1 going off: what turns it off here is the failure
PATIENT = CacheConfig(ttl=60, l2_timeout=0.2, liveness_bound=10.0)


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("kit.cache") and r.levelno == logging.WARNING]


def test_an_undelivered_invalidation_turns_l1_off_until_replayed(private_redis, caplog):
    admin = redis.Redis.from_url(private_redis)
    caplog.set_level(logging.WARNING, logger="kit.cache")
    with TieredCache(redis_url=private_redis, namespace=_ns(), config=PATIENT) as cache:
        cache.get_or_load("k", lambda: 1)
        assert (cache.get_or_load("k", lambda: 2), cache.l1_serving) == (1, True)
        with writes_paused(admin, 2.0):
            assert cache.invalidate(keys=["other"]) is False  # timed out: Redis never ran it
            assert (cache.l1_serving, cache.l2.pending, cache.channel.proven) == (False, True, True)
            assert cache.get_or_load("k", lambda: 3) == 3  # neither L1 nor Redis: the database
            assert cache.stats.get("l2", "invalidation_failures") == 1
        # replayed by the heartbeat thread: no request of this test asks for it
        assert _wait_until(lambda: cache.l1_serving), cache.l2.pending
        assert cache.stats.get("l2", "invalidations_replayed") == 1
        assert cache.get_or_load("k", lambda: 4) == 1  # "k" was never invalidated: L1 serves it again
        cache.clear()
    lines = _warnings(caplog)
    undelivered = [w for w in lines if "not delivered" in w]
    assert len(undelivered) == 1, lines
    assert "1 key(s) and 0 tag(s)" in undelivered[0] and "TimeoutError" in undelivered[0]
    assert "L1 off and Redis not read in this process, the database serves until it is replayed" in undelivered[0]
    assert sum("replayed 1 undelivered invalidation(s)" in w for w in lines) == 1, lines
    assert all("\n" not in w for w in lines)


def test_the_breaker_line_says_what_serves_across_processes(private_redis, caplog):
    """A failed call opens L2's breaker; in cross-process mode L1 is governed by the heartbeats, and
    the line says so — and L1 does serve."""
    admin = redis.Redis.from_url(private_redis)
    caplog.set_level(logging.WARNING, logger="kit.cache")
    with TieredCache(redis_url=private_redis, namespace=_ns(), config=PATIENT) as cache:
        cache.get_or_load("k", lambda: 1)
        with writes_paused(admin, 2.0):
            assert cache.get_or_load("new", lambda: "db") == "db"  # its store into Redis times out
            assert cache.stats.get("l2", "errors") == 1 and cache.l2.available is False
            assert (cache.l1_serving, cache.get_or_load("k", lambda: 2)) == (True, 1)
        cache.clear()
    [line] = [w for w in _warnings(caplog) if "Redis call failed" in w]
    assert line.startswith("Redis call failed (TimeoutError: ")
    assert line.endswith("L2 skipped for 1.0 s, serving from L1 while heartbeats prove that invalidations "
                         "get through (every 50 ms) and the database")
    assert "L1 off" not in line and "database only" not in line


def test_out_of_memory_still_deletes_and_publishes_but_reports_the_refused_bump(private_redis, caplog):
    """The tag's generation bump is refused (Redis out of memory, noeviction); the script's DEL and
    PUBLISH still run, the invalidation counts as undelivered and is replayed once memory is back."""
    ns = _ns()
    admin = redis.Redis.from_url(private_redis)
    caplog.set_level(logging.WARNING, logger="kit.cache")
    with TieredCache(redis_url=private_redis, namespace=ns, config=PATIENT) as writer, \
            TieredCache(redis_url=private_redis, namespace=ns, config=PATIENT) as reader:
        reader.get_or_load("p:1", lambda: "old", tags=["table:projects"])
        assert admin.exists(f"{ns}:v:p:1") == 1
        with out_of_memory(admin, ns):
            assert writer.invalidate(tags=["table:projects"]) is False
            assert (admin.exists(f"{ns}:v:p:1"), admin.get(f"{ns}:tg:table:projects")) == (0, None)
            assert _wait_until(lambda: reader.stats.get("l1", "invalidations_received") == 1)
            assert reader.l1.get("p:1") is MISSING
            assert writer.l1_serving is False
        assert _wait_until(lambda: not writer.l2.pending)
        assert admin.get(f"{ns}:tg:table:projects") == b"1"  # the replay bumped it
        assert (writer.stats.get("l2", "invalidation_failures"), writer.stats.get("l2", "invalidations_replayed")) \
            == (1, 1)
        writer.clear()
    [line] = [w for w in _warnings(caplog) if "not delivered" in w]
    assert "0 key(s) and 1 tag(s)" in line and "BumpRefused: 1 generation bump(s) refused" in line


def test_each_process_hears_only_its_own_heartbeats(redis_url):
    ns = _ns()
    admin = redis.Redis.from_url(redis_url)
    with TieredCache(redis_url=redis_url, namespace=ns) as a, TieredCache(redis_url=redis_url, namespace=ns) as b:
        assert _wait_until(lambda: a.channel.beats >= 5 and b.channel.beats >= 5)
        beat_channels = sorted(c.decode() for c in admin.pubsub_channels(f"{ns}:beat:*"))
        assert beat_channels == sorted([f"{ns}:beat:{a.origin}", f"{ns}:beat:{b.origin}"])
        assert [n for _, n in admin.pubsub_numsub(*beat_channels)] == [1, 1]
        assert admin.pubsub_numsub(f"{ns}:inval") == [(f"{ns}:inval".encode(), 2)]
        assert (a.channel.received, b.channel.received) == (0, 0)  # beats are not invalidations


def _round_trips(cache: TieredCache, monkeypatch) -> list[int]:
    """Connections taken from L2's pool, one per round trip (a pipeline or a script is one too)."""
    pool, taken = cache.l2.client.connection_pool, []
    get_connection = pool.get_connection
    monkeypatch.setattr(pool, "get_connection", lambda *a, **k: taken.append(1) or get_connection(*a, **k))
    return taken


def test_an_l2_hit_is_one_round_trip_and_honours_the_epoch(redis_url, monkeypatch):
    # no channel: its recovery PINGs on L2's client would count; the read path is the same
    with TieredCache(redis_url=redis_url, namespace=_ns(), config=CacheConfig(ttl=60, cross_process=False)) as cache:
        cache.get_or_load("k", lambda: {"v": 1}, tags=("t",))
        cache.l1.clear()
        taken = _round_trips(cache, monkeypatch)
        assert (cache.l2.get("k"), len(taken)) == ({"v": 1}, 1)
        assert (cache.get_or_load("k", lambda: {"v": 2}, tags=("t",)), len(taken)) == ({"v": 1}, 2)
        assert cache.stats.get("l2", "hits") == 2
        cache.l2.client.incr(cache.l2.epoch_key)  # what a process recovering from an outage does
        cache.l1.clear()
        assert (cache.l2.get("k"), cache.l2.get_many(["k"])) == (MISSING, {})
        assert cache.get_or_load("k", lambda: {"v": 3}, tags=("t",)) == {"v": 3}  # stored under the new epoch
        cache.l1.clear()
        assert cache.l2.get("k") == {"v": 3}
        cache.clear()
