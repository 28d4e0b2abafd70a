"""kit.demo.load: the thread engine, the endpoint mix and latency summaries against the throwaway PostgreSQL."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sqlalchemy import text

from kit.db.engine import make_engine
from kit.demo.load import MIX, Endpoint, PoolMonitor, latency_summary, run_load, seed_endpoints
from kit.demo.load.pool import PoolConfig, seed_load

SERIES = text("SELECT count(*) FROM generate_series(1, :n)")


@pytest.fixture(scope="module")
def seeded_url(tiny_module_url):
    """A database seeded at scale tiny, shared by this module's tests."""
    return tiny_module_url


def _endpoints() -> list[Endpoint]:
    return [Endpoint("small", lambda conn, rng: conn.execute(SERIES, {"n": 10}).scalar_one(), weight=3),
            Endpoint("big", lambda conn, rng: conn.execute(SERIES, {"n": 2000}).scalar_one(), weight=1)]


def _boom(conn, rng):
    conn.execute(text("SELECT 1/0"))


def test_request_count_run_measures_exactly_that_many(fresh_engine):
    r = run_load(fresh_engine, _endpoints(), users=4, requests=200, warmup_s=0.2, progress=False, n_boot=50)
    assert r.requests == 200
    assert r.errors == 0
    assert r.hung is False
    p50, p95, p99 = (r.latency_ms[k][0] for k in ("p50", "p95", "p99"))
    assert 0 < p50 <= p95 <= p99
    lo, hi = r.latency_ms["p95"][1:]
    assert lo <= p95 <= hi
    assert set(r.by_endpoint()["endpoint"]) == {"small", "big"}
    # the weights hold: about 3 small for 1 big
    counts = r.by_endpoint().set_index("endpoint")["requests"]
    assert counts["small"] > counts["big"]
    assert r.pool["measure"]["checkouts"] >= 200
    assert r.pool["warmup"]["checkouts"] > 0  # warm-up ran and was popped separately


def test_duration_run_counts_errors_by_kind(fresh_engine):
    eps = _endpoints() + [Endpoint("boom", _boom, weight=1)]
    r = run_load(fresh_engine, eps, users=3, duration_s=0.6, warmup_s=0.1, progress=False, n_boot=20)
    assert r.requests > 0
    assert r.error_kinds == {"db_error": r.errors}
    assert r.errors == int(r.by_endpoint().set_index("endpoint").loc["boom", "errors"])
    assert r.throughput_rps > 0
    row = r.to_frame().iloc[0]
    assert row["users"] == 3 and row["requests"] == r.requests
    assert r.resources.rss_peak_mb >= r.resources.rss_start_mb > 0


def test_monitor_counts_waits_when_every_connection_is_busy(fresh_engine):
    # fresh_engine: pool_size 5 + overflow 5 = 10 connections; 20 users holding 50 ms each must queue
    hold = Endpoint("hold", lambda conn, rng: conn.execute(text("SELECT pg_sleep(0.05)")))
    r = run_load(fresh_engine, [hold], users=20, requests=60, warmup_s=0.0, progress=False,
                 n_boot=20, sample_resources=False)
    m = r.pool["measure"]
    assert m["capacity"] == 10
    assert m["peak_in_use"] == 10
    assert m["waits"] > 0
    assert m["wait_s"] > 0
    assert m["timeouts"] == 0
    assert m["alert"] is True  # 100 % > 80 %


def test_monitor_pop_resets(fresh_engine):
    monitor = PoolMonitor(fresh_engine)
    with monitor.connect() as conn:
        conn.execute(text("SELECT 1"))
        assert monitor.in_use == 1
    first = monitor.pop_stats()
    assert first["checkouts"] == 1 and first["in_use"] == 0
    assert monitor.pop_stats()["checkouts"] == 0
    monitor.close()


def test_latency_summary_percentiles_and_intervals():
    lat = np.arange(1, 1001, dtype=float)
    s = latency_summary(lat, n_boot=200, seed=1)
    assert s["p50"][0] == pytest.approx(500.5)
    assert s["p95"][0] == pytest.approx(950.05)
    assert s["p95"][1] < 950.05 < s["p95"][2]
    assert s["p99"][2] <= 1000


def test_run_load_rejects_bad_arguments(fresh_engine):
    with pytest.raises(ValueError, match="exactly one"):
        run_load(fresh_engine, _endpoints(), duration_s=1, requests=10)
    with pytest.raises(ValueError, match="users >= 1"):
        run_load(fresh_engine, _endpoints(), users=0, requests=10)


@pytest.mark.parametrize("flavor", ["naive", "batched"])
def test_seed_mix_runs_every_endpoint_without_errors(seeded_url, redis_url, flavor):
    config = PoolConfig("small", pool_size=3, pool_timeout=5.0)
    r = seed_load(seeded_url, flavor=flavor, config=config, redis_url=redis_url, users=4, rate_rps=40.0,
                  warmup_s=0.2, duration_s=1.5, n_boot=20)
    assert (r.label, r.engine, r.model) == (f"{flavor} / small", "locust", "open")
    assert (r.errors, r.hung) == (0, False) and r.requests > 30
    assert set(r.by_endpoint()["endpoint"]) == set(MIX)
    assert r.pool["measure"]["capacity"] == 3


def test_seed_endpoints_reject_unknown_names(seeded_url):
    engine = make_engine(seeded_url)
    try:
        with pytest.raises(ValueError, match="unknown flavor"):
            with seed_endpoints(engine, flavor="fast"):
                pass
        with pytest.raises(ValueError, match="unknown endpoints in mix"):
            with seed_endpoints(engine, mix={"delete_everything": 1.0}):
                pass
    finally:
        engine.dispose()


def test_kit_load_prints_a_summary(seeded_url, capsys):
    from kit.cli import main

    # Poisson arrivals: at 20/s over 1 s, 10 or fewer came 1 time in 90; at 40/s, 1 in 10^9
    code = main(["load", "--database-url", seeded_url, "--flavor", "batched", "--users", "3", "--rate", "40",
                 "--duration", "1", "--warmup", "0.2", "--no-metrics"])
    out = capsys.readouterr().out
    assert code == 0
    summary = dict(line.split(None, 1) for line in out.splitlines() if line.strip())
    assert summary["label"].strip() == "batched / production"
    assert (summary["engine"].strip(), summary["model"].strip(), int(summary["errors"])) == ("locust", "open", 0)
    assert int(summary["requests"]) > 10
    assert main(["load", "--database-url", seeded_url, "--pool", "huge"]) == 2


def test_pool_wait_is_recorded_per_request(fresh_engine):
    hold = Endpoint("hold", lambda conn, rng: conn.execute(text("SELECT pg_sleep(0.02)")))
    r = run_load(fresh_engine, [hold], users=15, requests=45, warmup_s=0.0, progress=False,
                 n_boot=20, sample_resources=False)
    m = r.samples[r.samples["measured"]]
    assert m["wait_ms"].notna().all()
    assert (m["wait_ms"] <= m["latency_ms"]).all()  # the wait is part of the request
    assert r.wait_quantile_ms(0.95) == pytest.approx(float(m["wait_ms"].quantile(0.95)))


def test_charts_build_from_results(fresh_engine, fresh_db_url):
    import pandas as pd

    from kit.demo.charts.load import ingest_chart, latency_chart, pool_sweep_chart, resources_chart
    from kit.demo.load.pool import sweep_pool_sizes

    r = run_load(fresh_engine, _endpoints(), users=2, requests=20, warmup_s=0.0, progress=False, n_boot=10)
    assert [t.name for t in latency_chart(r.to_frame()).data] == ["load (closed, 2 users)"]
    sweep = sweep_pool_sizes(fresh_db_url, _endpoints(), sizes=(1, 2), users=2, requests=10, warmup_s=0.0,
                             progress=False, n_boot=10, sample_resources=False)
    fig = pool_sweep_chart(sweep.to_frame(), p95_target_ms=sweep.p95_target_ms,
                           recommended_size=sweep.recommended_size)
    assert list(fig.data[0].x) == [1, 2]
    assert len(resources_chart({"run": r.resources.samples}).data) == 2
    frame = pd.DataFrame({"chunk": ["8 KB", "8 KB"], "concurrency": [1, 5], "rows_per_s": [1.0, 2.0]})
    assert [t.name for t in ingest_chart(frame).data] == ["1 file(s) at once", "5 file(s) at once"]


def test_every_request_started_counts_once_with_its_outcome(fresh_db_url):
    """Requests started in the warm-up that then time out in the pool are failures too."""
    from kit.demo.load.pool import make_pool_engine

    engine = make_pool_engine(fresh_db_url, PoolConfig("tight", pool_size=1, pool_timeout=0.3))
    calls = []

    def hold(conn, rng):
        calls.append(1)
        conn.execute(text("SELECT pg_sleep(0.25)"))

    try:
        r = run_load(engine, [Endpoint("hold", hold)], users=6, duration_s=1.0, warmup_s=0.6, progress=False,
                     n_boot=20, sample_resources=False)
    finally:
        engine.dispose()
    timeouts = r.pool["warmup"]["timeouts"] + r.pool["measure"]["timeouts"]
    assert r.warmup_requests > 0 and timeouts > 0
    assert (r.errors, r.error_kinds) == (timeouts, {"pool_timeout": timeouts})
    assert r.started == len(calls) + timeouts  # each request ran on a connection or timed out waiting
    assert (r.unfinished, r.hung) == (0, False)
    by_endpoint = r.by_endpoint().set_index("endpoint")
    assert (by_endpoint.loc["hold", "errors"], by_endpoint.loc["hold", "started"]) == (r.errors, r.started)
    row = r.to_frame().iloc[0]
    assert (row["started"], row["warmup_requests"], row["errors"]) == (r.started, r.warmup_requests, r.errors)


def test_a_request_still_running_when_the_run_ends_is_an_unfinished_error(fresh_engine):
    slow = Endpoint("slow", lambda conn, rng: conn.execute(text("SELECT pg_sleep(1.5)")))
    r = run_load(fresh_engine, [slow], users=2, duration_s=0.3, warmup_s=0.0, join_timeout_s=0.2, progress=False,
                 n_boot=20, sample_resources=False)
    assert r.hung is True
    assert (r.started, r.unfinished, r.errors, r.error_kinds) == (2, 2, 2, {"unfinished": 2})
    assert r.requests == 2 and np.isnan(r.p95_ms)  # measured, but no latency to report
    time.sleep(1.5)  # let the two sessions finish before the database is dropped
