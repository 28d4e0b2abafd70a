"""One contract, three caches: L1, L2 (real Redis) and the tiered cache."""

from __future__ import annotations

import uuid

import pytest

from kit.cache import MISSING, CacheConfig, L1Cache, L2Cache, ManualClock, TieredCache


@pytest.fixture(params=["l1", "l2", "tiered"])
def made(request, redis_url):
    clock = ManualClock()
    ns = f"t{uuid.uuid4().hex[:10]}"
    if request.param == "l1":
        cache = L1Cache(ttl=60, timer=clock)
    elif request.param == "l2":
        cache = L2Cache(redis_url, namespace=ns, ttl=60, timer=clock)
    else:
        # the contract, not the liveness bound (test_cache_tiered, test_cache_outage): on a CPU-starved
        # machine a heartbeat may miss 250 ms, and L1 and L2 then rightly serve nothing
        cache = TieredCache(redis_url=redis_url, namespace=ns, timer=clock, config=CacheConfig(ttl=60, liveness_bound=10.0))
    yield cache, clock
    if request.param != "l1":
        cache.clear()
        cache.close()


def test_miss_is_the_sentinel(made):
    cache, _ = made
    assert cache.get("absent") is MISSING


def test_cached_none_is_a_hit(made):
    cache, _ = made
    cache.set("none", None)
    assert cache.get("none") is None


def test_set_get_round_trips_json(made):
    cache, _ = made
    cache.set("k", {"a": [1, 2.5, "x", None, True], "t": (1, 2)})
    assert cache.get("k") == {"a": [1, 2.5, "x", None, True], "t": [1, 2]}


def test_refuses_values_json_cannot_hold(made):
    cache, _ = made
    with pytest.raises(TypeError):
        cache.set("bad", object())
    assert cache.get("bad") is MISSING


def test_expiry_with_a_fake_clock(made):
    cache, clock = made
    cache.set("short", 1, ttl=5)
    cache.set("long", 2, ttl=50)
    clock.advance(4.9)
    assert (cache.get("short"), cache.get("long")) == (1, 2)
    clock.advance(0.2)
    assert (cache.get("short"), cache.get("long")) == (MISSING, 2)


def test_delete(made):
    cache, _ = made
    cache.set("a", 1)
    cache.set("b", 2)
    cache.delete("a")
    assert (cache.get("a"), cache.get("b")) == (MISSING, 2)


def test_invalidate_by_tag(made):
    cache, _ = made
    cache.set("p:1", 1, tags=["project:1", "projects"])
    cache.set("p:2", 2, tags=["project:2", "projects"])
    cache.set("u:1", 3, tags=["users"])
    cache.invalidate_tags(["project:1"])
    assert [cache.get(k) for k in ("p:1", "p:2", "u:1")] == [MISSING, 2, 3]
    cache.invalidate_tags(["projects"])
    assert [cache.get(k) for k in ("p:1", "p:2", "u:1")] == [MISSING, MISSING, 3]


def test_many_keys(made):
    cache, _ = made
    values = {f"k:{i}": {"i": i} for i in range(500)}
    cache.set_many(values)
    got = cache.get_many([*values, "k:absent"])
    assert got == values
    assert len(got) == 500


def test_overwrite_replaces_value_and_tags(made):
    cache, _ = made
    cache.set("k", 1, tags=["old"])
    cache.set("k", 2, tags=["new"])
    assert cache.get("k") == 2
    cache.invalidate_tags(["new"])
    assert cache.get("k") is MISSING


def test_l1_bounds_entries_and_bytes():
    cache = L1Cache(max_entries=3, max_bytes=10_000, ttl=60, timer=ManualClock())
    for i in range(5):
        cache.set(f"k{i}", i)
    assert len(cache) == 3
    assert cache.stats.get("l1", "evictions") == 2
    small = L1Cache(max_entries=100, max_bytes=200, ttl=60, timer=ManualClock())
    for i in range(10):
        small.set(f"k{i}", "x" * 50)
    assert small.currsize <= 200
    assert len(small) == 3  # 3 x (52 + 2) bytes fit in 200
    assert small.get("k9") == "x" * 50


def test_l1_least_recently_used_is_evicted_first():
    cache = L1Cache(max_entries=2, ttl=60, timer=ManualClock())
    cache.set("a", 1)
    cache.set("b", 2)
    assert cache.get("a") == 1
    cache.set("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, MISSING, 3)
