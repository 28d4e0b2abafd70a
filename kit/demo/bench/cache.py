"""``kit bench cache``: the two-level cache against its bare parts and against the database
(talks to PostgreSQL and Redis).

Keys: ``l1_hit_us`` vs ``cachetools_get_us`` (bare TTLCache get of the same value) and
``l1_overhead_ratio``; ``tiered_l1_hit_us`` and ``tiered_l1_overhead_ratio`` (an L1 hit through
``TieredCache.get_or_load``, as the services see it, against the same bare get); ``l2_hit_us``
(L2Cache.get, JSON decode included) vs ``redis_get_us`` (bare redis-py GET of the same stored
bytes) and ``l2_overhead_ratio``; ``list_projects.{uncached_ms,
l1_ms, l2_ms, speedup}``; ``hit_rate`` (Zipf workload on get_project, per level);
``stale_reads_same_process.{with_invalidation, without_invalidation}``;
``stale_window_ms.{p50, p99, max}`` across processes; ``warm.{cold_ms, warm_ms}`` per key.
"""

from __future__ import annotations

import time
from typing import Any

import cachetools

from kit.cache import TieredCache
from kit.cache.warming import cold_vs_warm
from kit.db.engine import make_engine
from kit.demo import bench
from kit.demo.cache_trials import (
    first_project,
    namespace,
    paired_us,
    stale_reads_same_process,
    stale_window_ms,
    zipf_hit_rate,
)
from kit.demo.services import batched
from kit.demo.services.cached import CachedServices


def _levels(cache: TieredCache, engine: Any, n: int, redis_url: str) -> dict[str, Any]:
    with engine.connect() as conn:
        value = batched.get_project(conn, first_project(engine))
    bare: cachetools.TTLCache[str, Any] = cachetools.TTLCache(maxsize=2000, ttl=300)
    bare["k"] = value
    cache.l1.set("k", value)
    l1, ct, l1_ratio = paired_us(lambda: cache.l1.get("k"), lambda: bare.get("k"), n=n // 10)
    # what a service pays for an L1 hit: the tiered cache's checks (liveness, access counts) too;
    # on a cache of its own, so these accesses do not become the hot keys warmed later
    with TieredCache(redis_url=redis_url, namespace=namespace()) as tiered_cache:
        tiered_cache.get_or_load("k", lambda: value)
        tiered, _, tiered_ratio = paired_us(
            lambda: tiered_cache.get_or_load("k", lambda: value, ttl=600.0, tags=("project:1",)),
            lambda: bare.get("k"),
            n=n // 10,
        )
        tiered_cache.clear()
    l2_cache = cache.l2
    assert l2_cache is not None  # run() made the cache with its redis_url
    l2_cache.set("k2", value)
    raw_name = l2_cache.vkey("k2")
    l2, rg, l2_ratio = paired_us(lambda: l2_cache.get("k2"), lambda: l2_cache.client.get(raw_name), n=n // 100)
    return {
        "l1_hit_us": l1,
        "cachetools_get_us": ct,
        "l1_overhead_ratio": l1_ratio,
        "tiered_l1_hit_us": tiered,
        "tiered_l1_overhead_ratio": tiered_ratio,
        "l2_hit_us": l2,
        "redis_get_us": rg,
        "l2_overhead_ratio": l2_ratio,
    }


def _list_projects(services: CachedServices, engine: Any, trials: int) -> dict[str, float]:
    def ms(fn, n: int) -> float:
        fn()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t0) * 1000 / n

    with engine.connect() as conn:

        def from_l2() -> dict[str, Any]:
            services.cache.l1.clear()
            return services.list_projects(conn, page=1, per_page=20)

        uncached = ms(lambda: batched.list_projects(conn, page=1, per_page=20), trials)
        services.list_projects(conn, page=1, per_page=20)
        l1 = ms(lambda: services.list_projects(conn, page=1, per_page=20), trials * 100)
        l2 = ms(from_l2, trials * 10)
    return {"uncached_ms": uncached, "l1_ms": l1, "l2_ms": l2, "speedup": uncached / l1, "l2_speedup": uncached / l2}


SCALES = bench.SCALES


def run(*, database_url: str, redis_url: str, scale: str, seed: int) -> dict[str, Any]:
    bench.seed_platform(database_url, scale=scale, seed=seed)
    n = 20_000 if scale != "tiny" else 5_000
    engine = make_engine(database_url, pool_size=8)
    cache = TieredCache(redis_url=redis_url, namespace=namespace())
    services = CachedServices(cache, engine)
    try:
        out: dict[str, Any] = _levels(cache, engine, n, redis_url)
        out["list_projects"] = _list_projects(services, engine, 30 if scale != "tiny" else 10)
        out["hit_rate"] = zipf_hit_rate(services, engine, requests=n // 2)
        fixed = stale_reads_same_process(services, engine)
        with TieredCache(redis_url=redis_url, namespace=namespace()) as seed_cache:
            buggy = CachedServices(seed_cache, engine, invalidate=False)
            broken = stale_reads_same_process(buggy, engine)
            seed_cache.clear()
        out["stale_reads_same_process"] = {
            "with_invalidation": fixed["stale_reads"],
            "without_invalidation": broken["stale_reads"],
            "reads": fixed["reads"] + broken["reads"],
        }
        out["stale_window_ms"] = stale_window_ms(services, engine, database_url=database_url, redis_url=redis_url)
        with engine.connect() as conn:
            for pid in range(1, 51):
                services.get_project(conn, pid)
        keys = cache.hot_keys(50)
        cold_warm = cold_vs_warm(cache, keys)
        out["warm"] = {"keys": len(keys), "cold_ms": cold_warm["cold"], "warm_ms": cold_warm["warm"]}
        out["stats"] = cache.stats.snapshot()
        return out
    finally:
        cache.clear()
        services.close()
        cache.close()
        engine.dispose()
