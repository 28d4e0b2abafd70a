"""kit.demo.load.engine: the platform's mix on Locust, in processes of its own, against the throwaway servers."""

from __future__ import annotations

import sys

import pytest

from kit.errors import LoadFailed
from kit.demo.load import MIX
from kit.demo.load.engine import master_command, run_locust, saturation, worker_command
from kit.demo.load.pool import PoolConfig

SMALL = PoolConfig("small", pool_size=3, pool_timeout=5.0, min_idle=1)


@pytest.fixture(scope="module")
def seeded_url(tiny_module_url):
    return tiny_module_url


def test_a_distributed_run_with_two_workers_counts_every_request(seeded_url, redis_url):
    r = run_locust(seeded_url, flavor="cached", redis_url=redis_url, model="open", rate_rps=40.0,
                   arrivals="constant", users=8, processes=2, warmup_s=0.5, duration_s=2.0, config=SMALL, n_boot=20)
    assert (r.engine, r.model, r.rate_rps, r.workers, r.hung) == ("locust", "open", 40.0, 2, False)
    assert r.pool["measure"]["processes"] == 2
    assert r.pool["measure"]["connections"] == 2 * 3  # one pool per worker process
    # 40 rps offered for 2.5 s: every arrival is a row, whatever the users' spawn delays took
    assert 80 <= r.started <= 101
    assert r.requests == int(r.samples["measured"].sum())
    assert r.started == r.requests + r.warmup_requests  # the drain ran nothing new
    assert (r.errors, r.unfinished) == (0, 0)
    assert set(r.by_endpoint()["endpoint"]) == set(MIX)
    p50, p95, p99 = (r.latency_ms[k][0] for k in ("p50", "p95", "p99"))
    assert 0 < p50 <= p95 <= p99
    assert r.latency_ms["p95"][1] <= p95 <= r.latency_ms["p95"][2]
    assert (r.samples["wait_ms"] <= r.samples["latency_ms"]).all()  # the pool wait is part of the request
    assert r.resources.rss_peak_mb > 50  # two worker processes with the kit imported
    row = r.to_frame().iloc[0]
    assert (row["engine"], row["model"], row["workers"], row["rate_rps"]) == ("locust", "open", 2, 40.0)


def test_failures_are_counted_warm_up_included(seeded_url):
    # one connection, a 1 ms checkout timeout and 60 rps of naive requests: many wait and fail
    tight = PoolConfig("tight", pool_size=1, pool_timeout=0.001)
    r = run_locust(seeded_url, flavor="naive", rate_rps=60.0, users=6, processes=0, warmup_s=0.5, duration_s=1.5,
                   drain_s=10.0, config=tight, n_boot=20)
    failed = r.samples["error"].notna()
    assert r.errors == int(failed.sum()) > 0
    assert r.error_kinds == {"pool_timeout": r.errors}
    assert r.errors >= int((failed & r.samples["measured"]).sum())
    assert r.pool["measure"]["timeouts"] == int((failed & r.samples["measured"]).sum())
    ok = r.samples[r.samples["measured"] & ~failed]
    assert r.throughput_rps == pytest.approx(len(ok) / 1.5)
    assert r.workers == 1  # processes=0: one local process


def test_closed_model_names_its_think_time(seeded_url):
    r = run_locust(seeded_url, flavor="batched", model="closed", users=4, think_s=0.2, processes=0,
                   warmup_s=0.3, duration_s=1.5, config=SMALL, n_boot=20)
    assert (r.model, r.rate_rps, r.think_s, r.errors) == ("closed", None, 0.2, 0)
    # each user thinks uniform(0.5, 1.5) x 0.2 s between requests, so no user starts more than one
    # request per 0.1 s: at most 4 x (1.5 / 0.1 + 1) requests in the 1.5 s window. Without the think
    # time the batched requests (a few ms) would run at hundreds per second.
    ceiling = 4 * (1.5 / (0.5 * 0.2) + 1) / 1.5
    assert 5 < r.throughput_rps <= ceiling


def test_saturation_stops_at_the_first_rate_that_misses_the_target(seeded_url):
    sat = saturation(seeded_url, rates=(5.0, 10.0), p95_target_ms=10_000.0, flavor="batched", users=2,
                     processes=0, warmup_s=0.2, duration_s=1.0, config=SMALL, n_boot=10)
    assert sat.saturation_rps == 10.0
    assert list(sat.to_frame()["ok"]) == [True, True]
    none = saturation(seeded_url, rates=(5.0, 10.0), p95_target_ms=0.001, flavor="batched", users=2,
                      processes=0, warmup_s=0.2, duration_s=1.0, config=SMALL, n_boot=10)
    assert none.saturation_rps == 0.0
    assert len(none.to_frame()) == 1  # the first step failed: no second


def test_a_process_that_cannot_set_up_fails_the_run_in_one_line(fresh_db_url):
    with pytest.raises(LoadFailed, match="could not start their users: .*UndefinedTable.*kit seed"):
        run_locust(fresh_db_url, users=1, rate_rps=5.0, processes=0, warmup_s=0.0, duration_s=0.5)


def test_bad_arguments_are_refused_before_any_process_starts(seeded_url):
    with pytest.raises(ValueError, match="unknown model"):
        run_locust(seeded_url, model="spiky")
    with pytest.raises(ValueError, match="rate_rps > 0"):
        run_locust(seeded_url, rate_rps=0.0)


def test_commands_for_several_machines():
    master = master_command(["--kit-users", "10"], users=10, out="/tmp/x.json", expect_workers=3,
                            bind_host="0.0.0.0", bind_port=5600)
    assert master[:3] == [sys.executable, "-m", "locust"]
    assert master[master.index("--expect-workers") + 1] == "3" and "--master" in master
    assert master[master.index("--master-bind-port") + 1] == "5600"
    worker = worker_command(master_host="10.0.0.5", master_port=5600, processes=2)
    assert worker[worker.index("--master-host") + 1] == "10.0.0.5" and "--worker" in worker
    assert not any("postgresql" in part for part in master + worker)  # secrets travel in the environment only


def test_a_master_and_workers_started_apart_as_on_several_machines(seeded_url):
    """`kit load --master N` here, `kit load --worker HOST` elsewhere: the same code, the options
    from the master, the URL from each worker's own environment."""
    import os
    import subprocess

    from kit.servers.local import free_port

    port = free_port()
    env = {**os.environ, "KIT_DATABASE_URL": seeded_url}
    workers = subprocess.Popen(worker_command(master_host="127.0.0.1", master_port=port, processes=2), env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # 40 per second offered for 1 s: more than 10 arrive whatever the Poisson draw (20 gave 10 once)
        r = run_locust(seeded_url, flavor="batched", rate_rps=40.0, users=4, expect_workers=2, bind_port=port,
                       warmup_s=0.3, duration_s=1.0, config=SMALL, n_boot=10)
        _, err = workers.communicate(timeout=30)  # the master's quit ends them
    finally:
        workers.kill()
    assert (r.workers, r.errors, r.hung) == (2, 0, False)
    assert r.requests > 10
    assert workers.returncode == 0, err


def test_an_unreachable_database_is_one_line_before_any_process_starts(capsys):
    from kit.cli import main

    code = main(["load", "--database-url", "postgresql://app:Sup3r-secret@127.0.0.1:1/x", "--duration", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "cannot connect" in err and "Sup3r-secret" not in err
