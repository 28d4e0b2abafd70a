"""kit.demo.load.pool: the seed's configurations, a size sweep, and pool exhaustion on the throwaway server."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from kit.demo.load import Endpoint
from kit.demo.load.pool import (OPTIMIZED, PRODUCTION, PoolConfig, compare_configs, exhaustion, make_pool_engine,
                      server_connection_limit, sweep_pool_sizes)

SERIES = text("SELECT count(*) FROM generate_series(1, 200)")
QUICK = [Endpoint("series", lambda conn, rng: conn.execute(SERIES).scalar_one())]
# 5 ms on the server with the GIL released: users on fewer connections than themselves queue, however the
# threads are scheduled on a busy machine (a 0.1 ms request can finish before the next user asks)
HOLD = [Endpoint("hold", lambda conn, rng: conn.execute(text("SELECT pg_sleep(0.005)")).scalar_one())]


def test_seed_configs_map_to_a_hard_cap_without_overflow():
    assert (PRODUCTION.pool_size, PRODUCTION.max_overflow, PRODUCTION.pool_timeout, PRODUCTION.min_idle) == (20, 0, 30.0, 5)
    assert (OPTIMIZED.pool_size, OPTIMIZED.max_overflow, OPTIMIZED.pool_timeout, OPTIMIZED.min_idle) == (50, 0, 10.0, 10)
    assert PRODUCTION.pre_ping is True  # r2d2 test_on_check_out(true)
    assert OPTIMIZED.recycle_s == 1800  # max_lifetime 30 min
    assert PRODUCTION.with_size(3).min_idle == 3


def test_engine_is_prewarmed_to_min_idle(fresh_db_url):
    engine = make_pool_engine(fresh_db_url, PRODUCTION)
    try:
        assert engine.pool.checkedin() == 5
        assert engine.pool.checkedout() == 0
    finally:
        engine.dispose()


def test_connection_limit_leaves_headroom_under_max_connections(fresh_engine):
    # the throwaway server: max_connections 200, superuser_reserved_connections 3
    assert server_connection_limit(fresh_engine, headroom=0.2) == int(197 * 0.8)
    assert server_connection_limit(fresh_engine, headroom=0.0) == 197


def test_compare_configs_runs_the_same_load_on_each(fresh_db_url):
    small = (PRODUCTION.with_size(2, name="a"), OPTIMIZED.with_size(4, name="b"))
    cmp = compare_configs(fresh_db_url, QUICK, configs=small, users=6, requests=60, warmup_s=0.1,
                          progress=False, n_boot=20, sample_resources=False)
    frame = cmp.to_frame()
    assert list(frame["label"]) == ["a", "b"]
    assert list(frame["pool_size"]) == [2, 4]
    assert list(frame["requests"]) == [60, 60]
    assert list(frame["errors"]) == [0, 0]
    assert list(frame["pool_peak_in_use"]) == [2, 4]


def test_a_pool_measured_under_the_same_load_is_not_run_again(fresh_db_url):
    load = dict(users=2, requests=20, warmup_s=0.0, progress=False, n_boot=20, sample_resources=False)
    a, b = PRODUCTION.with_size(2, name="a"), PRODUCTION.with_size(3, name="b")
    first = compare_configs(fresh_db_url, QUICK, configs=(a,), **load).results[0]
    cmp = compare_configs(fresh_db_url, QUICK, configs=(a, b), measured={a: first}, **load)
    assert cmp.results[0] is first and cmp.results[1] is not first and cmp.results[1].label == "b"
    # the sweep's size 2 is pool a by another name (a name is a label): taken from there, size 3 run
    sweep = sweep_pool_sizes(fresh_db_url, QUICK, base=PRODUCTION, sizes=(2, 3), p95_target_ms=10_000.0,
                             min_throughput_share=0.0, measured={a: first}, **load)
    frame = sweep.to_frame().set_index("size")
    assert frame.loc[2, "p95_ms"] == first.p95_ms and list(frame["errors"]) == [0, 0]
    assert compare_configs(fresh_db_url, QUICK, configs=(OPTIMIZED.with_size(2),), measured={a: first},
                           **load).results[0] is not first  # another pool at the same size is run


def test_sweep_recommends_smallest_size_meeting_target(fresh_db_url):
    sweep = sweep_pool_sizes(fresh_db_url, HOLD, sizes=(1, 3, 500), p95_target_ms=10_000.0, min_throughput_share=0.0, users=3,
                             requests=30, warmup_s=0.0, progress=False, n_boot=20, sample_resources=False)
    frame = sweep.to_frame().set_index("size")
    assert sweep.connection_limit == int(197 * 0.8)
    assert bool(frame.loc[500, "fits_server"]) is False  # 500 connections would not fit: not run
    assert list(frame.loc[[1, 3], "errors"]) == [0, 0]
    assert sweep.recommended_size == 1  # everything meets a 10 s target: the smallest wins
    assert frame.loc[1, "waits"] > 0  # 3 users on 1 connection queue
    assert list(frame["recommended"]) == [True, False, False]


def test_exhaustion_times_out_cleanly_and_recovers(fresh_db_url):
    config = PoolConfig("tiny", pool_size=2, max_overflow=1, pool_timeout=0.1)
    r = exhaustion(fresh_db_url, config=config, users=9, hold_s=0.3, duration_s=1.0, recovery_requests=30)
    assert r.timeouts > 0
    assert r.other_errors == 0
    assert r.hung is False
    assert r.recovered is True
    assert r.recovery.requests == 30 and r.recovery.errors == 0
    assert r.load.pool["measure"]["timeouts"] >= r.timeouts  # the pool also saw the ones started at t<0
    assert r.load.pool["measure"]["peak_in_use"] == 3
    row = r.to_frame().iloc[0]
    assert (row["users"], row["timeouts"], row["recovered"]) == (9, r.timeouts, True)


def test_exhaustion_needs_more_users_than_connections(fresh_db_url):
    with pytest.raises(ValueError, match="must exceed pool capacity"):
        exhaustion(fresh_db_url, config=PoolConfig("x", pool_size=2, max_overflow=1, pool_timeout=0.1), users=3)


def test_compare_and_sweep_default_to_the_seed_mix(fresh_engine):
    from kit.demo import datagen

    datagen.seed(fresh_engine, scale="tiny", progress=False)
    cmp = compare_configs(fresh_engine, configs=(PRODUCTION.with_size(2, name="p2"),), flavor="batched",
                          users=3, rate_rps=30.0, duration_s=1.0, warmup_s=0.2, n_boot=10)
    assert (cmp.results[0].label, cmp.results[0].engine) == ("p2", "locust")
    assert cmp.results[0].errors == 0 and cmp.results[0].requests > 15
    assert cmp.results[0].by_endpoint()["endpoint"].nunique() == 4
    sweep = sweep_pool_sizes(fresh_engine, sizes=(1, 2), flavor="batched", users=3, rate_rps=20.0, duration_s=1.0,
                             warmup_s=0.2, processes=2, n_boot=10, max_wait_target_ms=60_000.0)
    frame = sweep.to_frame().set_index("size")
    assert sweep.processes == 2
    assert list(frame["connections"]) == [2, 4]  # per worker process: 2 processes x size
    assert sweep.recommended_size in (1, 2)


def test_sweep_needs_the_max_wait_under_its_target(fresh_db_url):
    # a target well above a busy machine's scheduling delays (a 20 ms one failed under load at size 4),
    # well below what 4 users queueing on one connection for 100 ms statements wait
    hold = [Endpoint("hold", lambda conn, rng: conn.execute(text("SELECT pg_sleep(0.1)")))]
    sweep = sweep_pool_sizes(fresh_db_url, hold, sizes=(1, 4), users=4, requests=40, warmup_s=0.0,
                             p95_target_ms=10_000.0, max_wait_target_ms=60.0, min_throughput_share=0.0,
                             progress=False, n_boot=10, sample_resources=False)
    frame = sweep.to_frame().set_index("size")
    assert frame.loc[1, "max_wait_ms"] > 60.0  # 4 users on 1 connection: each waits for the others
    assert sweep.recommended_size == 4


def test_sweep_skips_sizes_that_starve_throughput(fresh_db_url):
    hold = [Endpoint("hold", lambda conn, rng: conn.execute(text("SELECT pg_sleep(0.02)")))]
    sweep = sweep_pool_sizes(fresh_db_url, hold, sizes=(1, 4), users=4, requests=40, warmup_s=0.0,
                             progress=False, n_boot=10, sample_resources=False)
    frame = sweep.to_frame().set_index("size")
    # one connection serves 4 sleeping users at a quarter of the rate: not eligible whatever its p95
    assert frame.loc[1, "throughput_rps"] < 0.9 * frame.loc[4, "throughput_rps"]
    assert sweep.recommended_size == 4
