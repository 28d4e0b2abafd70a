"""kit.demo.metrics: real RSS/CPU, the bounded request store, Prometheus scraped over HTTP."""

from __future__ import annotations

import os
import urllib.request

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from kit.cache import CacheStats, ManualClock
from kit.demo.metrics import KitMetrics, RequestMetricsStore, ResourceSampler, start_server

SEED_NAMES = {"http_requests", "http_request_duration_seconds", "active_connections", "database_connections",
              "cache_hits", "cache_misses", "reconciliation_jobs_active", "file_uploads_active"}


def _scrape(url: str) -> dict[str, list]:
    body = urllib.request.urlopen(url, timeout=5).read().decode()
    return {fam.name: fam.samples for fam in text_string_to_metric_families(body)}


def _value(families, name, **labels) -> float:
    return next(s.value for s in families[name] if all(s.labels.get(k) == v for k, v in labels.items()))


def test_sampler_reports_real_rss_and_sees_an_allocation():
    with ResourceSampler(interval_s=0.01) as s:
        block = bytearray(64 * 2**20)  # touched: 64 MB resident
        block[::4096] = b"x" * len(block[::4096])
        sum(range(300_000))
    summary = s.summary
    del block
    assert summary.rss_start_mb == pytest.approx(summary.samples["rss_mb"].iloc[0])
    assert summary.rss_peak_mb - summary.rss_start_mb >= 60
    assert summary.rss_start_mb > 10
    assert summary.cpu_max_pct > 0
    assert list(summary.samples.columns) == ["t_s", "rss_mb", "cpu_pct"]
    assert len(summary.to_frame()) == 1


def test_store_is_bounded_per_endpoint():
    store = RequestMetricsStore(max_per_endpoint=100, max_age_s=60, timer=ManualClock())
    for i in range(1_000):
        store.record("/projects", 0.001 * (i % 10))
    store.record("/users", 0.5, status=503)
    assert store.counts() == {"/projects": 100, "/users": 1}
    frame = store.to_frame().set_index("endpoint")
    assert frame.loc["/users", "errors"] == 1
    assert frame.loc["/projects", "count"] == 100


def test_store_evicts_by_age_with_an_injected_clock():
    clock = ManualClock()
    store = RequestMetricsStore(max_per_endpoint=1_000, max_age_s=300, timer=clock)
    for _ in range(500):
        store.record("/old", 0.01)
    full = store.memory_bytes()
    clock.advance(200)
    store.record("/new", 0.01)
    assert store.counts() == {"/old": 500, "/new": 1}
    clock.advance(101)  # /old is now 301 s old, /new 101 s
    assert store.counts() == {"/new": 1}
    assert len(store) == 1
    assert store.memory_bytes() < full / 50  # the quiet endpoint's 500 entries are gone


def test_store_memory_grows_with_entries():
    store = RequestMetricsStore(max_per_endpoint=1_000, timer=ManualClock())
    empty = store.memory_bytes()
    for i in range(50):
        for _ in range(1_000):
            store.record(f"/e{i}", 0.01)
    # the seed's worst case: 50 endpoints x 1000 entries
    per_entry = (store.memory_bytes() - empty) / 50_000
    assert len(store) == 50_000
    assert 60 < per_entry < 300  # a tuple of 3 numbers: bytes, not the seed's guessed kilobyte


def test_store_rejects_bad_bounds():
    with pytest.raises(ValueError, match="max_per_endpoint"):
        RequestMetricsStore(max_per_endpoint=0)


def test_metrics_endpoint_scraped_over_http(fresh_engine):
    metrics = KitMetrics(engine=fresh_engine)
    with fresh_engine.begin() as conn:  # the table reconciliation_jobs_active counts
        conn.execute(text("CREATE TABLE reconciliation_jobs (id int, status text)"))
        conn.execute(text("INSERT INTO reconciliation_jobs VALUES (1, 'running'), (2, 'running'), (3, 'done')"))
    for _ in range(3):
        with metrics.track("/api/projects"):
            pass
    with pytest.raises(RuntimeError):
        with metrics.track("/api/users"):
            raise RuntimeError("boom")
    metrics.cache_hits.inc(7)
    metrics.cache_misses.inc(2)
    server = start_server(0, metrics=metrics)
    held = [fresh_engine.connect() for _ in range(9)]  # 9 of 10 connections: 90 % > 80 %
    try:
        fams = _scrape(server.url)
    finally:
        for c in held:
            c.close()
        server.close()
    assert SEED_NAMES <= set(fams)
    assert _value(fams, "http_requests", endpoint="/api/projects", status="200") == 3
    assert _value(fams, "http_requests", endpoint="/api/users", status="500") == 1
    assert _value(fams, "http_request_duration_seconds", endpoint="/api/projects", le="+Inf") == 3
    assert _value(fams, "active_connections") == 0
    assert (_value(fams, "cache_hits"), _value(fams, "cache_misses")) == (7, 2)
    assert _value(fams, "reconciliation_jobs_active") == 2
    assert _value(fams, "database_connections") >= 9  # counted by the server, not by us
    assert _value(fams, "db_pool_capacity") == 10
    assert _value(fams, "db_pool_connections_in_use") == 9
    assert _value(fams, "db_pool_utilization") == pytest.approx(0.9)
    assert _value(fams, "db_pool_utilization_alert") == 1
    rss = _value(fams, "process_memory_usage_bytes")
    assert rss == pytest.approx(psutil.Process().memory_info().rss, rel=0.2)


def test_registries_are_private_and_cache_stats_are_exported():
    stats = CacheStats()
    stats.incr("l1", "hits", 4)
    stats.incr("db", "misses", 1)
    a, b = KitMetrics(cache_stats=stats), KitMetrics()
    b.cache_hits.inc()
    assert a.registry.get_sample_value("cache_hits_total", {"level": "l1"}) == 4
    assert a.registry.get_sample_value("cache_misses_total", {"level": "db"}) == 1
    assert b.registry.get_sample_value("cache_hits_total") == 1
    assert a.registry.get_sample_value("db_pool_utilization") is None  # no engine, no pool gauges


def test_kit_metrics_serve_describes_the_process_under_load(tiny_db_url, tmp_path):
    """`kit load` on two Locust workers, `kit metrics serve` in another process, scraped as Prometheus
    would: the RSS, CPU, pool and requests are the loaded processes', labelled with their pids."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from kit.servers.local import free_port

    port, kit = free_port(), str(Path(sys.executable).parent / "kit")
    env = {**os.environ, "KIT_HOME": str(tmp_path)}
    server = subprocess.Popen([kit, "metrics", "serve", "--port", str(port), "--database-url", tiny_db_url],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    load = subprocess.Popen([kit, "load", "--users", "5", "--model", "closed", "--think", "0", "--duration", "8",
                             "--processes", "2", "--database-url", tiny_db_url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    scrapes = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and load.poll() is None and len(scrapes) < 6:
            try:
                fams = _scrape(f"http://127.0.0.1:{port}/metrics")
            except OSError:
                fams = None
            if fams and _value(fams, "kit_publishing_processes") == 2 and "http_requests" in fams:
                workers = {str(p.pid): p.memory_info().rss for p in psutil.Process(load.pid).children(recursive=True)}
                scrapes.append((fams, workers))
            time.sleep(0.5)
        load.communicate(timeout=60)
        after = _scrape(f"http://127.0.0.1:{port}/metrics")
    finally:
        load.kill()
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=30)
    assert load.returncode == 0 and server.returncode == 0, err
    assert f"serving http://127.0.0.1:{port}/metrics" in out
    assert len(scrapes) >= 3
    fams, rss = scrapes[-1]
    pids = {s.labels["pid"] for s in fams["process_memory_usage_bytes"]}
    assert len(pids) == 2 and pids <= set(rss)  # the two Locust workers under `kit load`, not the server
    for pid in pids:
        assert _value(fams, "process_memory_usage_bytes", pid=pid) == pytest.approx(rss[pid], rel=0.25)
        assert _value(fams, "db_pool_capacity", pid=pid) == 20  # the seed's production pool, in each worker
    assert max(_value(f, "db_pool_connections_in_use", pid=p) for f, _ in scrapes for p in pids) >= 1
    requests = [sum(s.value for s in f["http_requests"] if s.name == "http_requests_total") for f, _ in scrapes]
    assert requests == sorted(requests) and requests[-1] > requests[0] and requests[-1] > 0
    assert _value(fams, "database_connections") >= 1  # counted by PostgreSQL, at scrape time
    assert _value(after, "kit_publishing_processes") == 0  # the load ended: its file is gone
    assert "process_memory_usage_bytes" not in after
