"""The tiered cache under concurrency, across processes and through a Redis outage (real Redis)."""

from __future__ import annotations

import json
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
