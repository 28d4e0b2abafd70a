"""Warming, stats export and the figures (real Redis)."""

from __future__ import annotations

import uuid

from prometheus_client import CollectorRegistry, generate_latest

from kit.cache import CacheConfig, TieredCache, warm
from kit.demo.charts import cache as charts_cache


def _cache(redis_url: str, ns: str | None = None) -> TieredCache:
    return TieredCache(redis_url=redis_url, namespace=ns or f"w{uuid.uuid4().hex[:10]}", config=CacheConfig(ttl=60))


def test_warm_loads_hot_keys_once_across_processes(redis_url):
    ns = f"w{uuid.uuid4().hex[:10]}"
    a, b = _cache(redis_url, ns), _cache(redis_url, ns)
    calls: list[str] = []

    def loader_for(key):
        return lambda: calls.append(key) or {"key": key}

    for i, hits in enumerate([5, 3, 1]):
        for _ in range(hits):
            a.get_or_load(f"k{i}", loader_for(f"k{i}"))
            b.get_or_load(f"k{i}", loader_for(f"k{i}"))
    assert a.hot_keys(2) == ["k0", "k1"]
    a.clear()
    b.l1.clear()
    calls.clear()
    first, second = warm(a, top=2), warm(b, top=2)
    assert (first.loaded, second.loaded, second.already_cached) == (2, 0, 2)
    assert sorted(calls) == ["k0", "k1"]
    assert b.get_or_load("k0", loader_for("again")) == {"key": "k0"}
    a.clear()
    a.close()
    b.close()


def test_stats_dict_frame_and_prometheus(redis_url):
    cache = _cache(redis_url)
    cache.get_or_load("k", lambda: 1)
    cache.get_or_load("k", lambda: 1)
    snap = cache.stats.snapshot()
    assert (snap["l1"]["hits"], snap["l2"]["misses"], snap["db"]["loads"], snap["l2"]["sets"]) == (1, 1, 1, 1)
    frame = cache.stats.to_frame()
    assert frame.loc["l1", "hits"] == 1
    registry = CollectorRegistry()
    cache.stats.export_prometheus(registry)
    text = generate_latest(registry).decode()
    assert 'cache_hits_total{level="l1"} 1.0' in text
    assert 'cache_misses_total{level="l2"} 1.0' in text
    assert cache.stats.pop()["db"]["loads"] == 1
    assert cache.stats.snapshot()["db"]["loads"] == 0
    cache.clear()
    cache.close()


def test_figures_build_from_bench_shaped_figures():
    figures = {"cachetools_get_us": 0.3, "l1_hit_us": 0.4, "redis_get_us": 100.0, "l2_hit_us": 110.0,
               "list_projects": {"uncached_ms": 3.0, "l1_ms": 0.001, "l2_ms": 0.2},
               "stale_reads_same_process": {"with_invalidation": 0, "without_invalidation": 12},
               "stale_window_ms": {"p50": 1.0, "p99": 5.0}, "warm": {"keys": 5, "cold_ms": 3.0, "warm_ms": 0.01}}
    assert len(charts_cache.latency_per_level(figures).data[0].y) == 7
    assert list(charts_cache.stale_reads(figures).data[0].y) == [12, 0]
    assert list(charts_cache.cold_vs_warm(figures).data[0].y) == [3.0, 0.01]
    stats = {"l1": {"hits": 8}, "l2": {"hits": 1}, "db": {"loads": 1}}
    assert list(charts_cache.hit_rate(stats).data[0].values) == [8, 1, 1]
