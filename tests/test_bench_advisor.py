"""kit bench advisor end to end on a tiny TPC-H (sf 0.01): the loop on an analytical workload times
nearly every statement once their texts are made preparable, and the figures have their keys."""

from __future__ import annotations

import pytest

from kit.benchmarks import advisor
from kit.cli import run_benchmark
from kit.errors import ConfigError

KEYS = {"sf", "queries", "left_out", "budget_bytes", "configs", "relative_cost_pct", "speedup_workload",
        "reproduced_share", "timed_statements", "statements", "loop_seconds", "regressions", "fixes", "not_timed"}
CONFIG_KEYS = {"indexes", "bytes", "est_cost", "workload_ms", "per_query_ms"}


def test_tpch_workload_is_timed_and_judged_by_the_loop(fresh_db_url, redis_url):
    """The benchmark's module on a fresh database, as `kit bench advisor --sf 0.01` runs it, with one
    parameter set per query, one timed run per configuration and two per statement in the loop."""
    figures = advisor.run(database_url=fresh_db_url, redis_url=redis_url, scale="tiny", seed=7, sf=0.01,
                          sets=1, runs=1, loop_repeats=2)
    assert KEYS <= set(figures) and figures["sf"] == 0.01
    assert set(figures["configs"]) == {"none", "kit"}
    for config in figures["configs"].values():
        assert CONFIG_KEYS <= set(config) and set(config["per_query_ms"]) == set(figures["queries"])
    assert figures["configs"]["none"]["indexes"] == [] and figures["configs"]["none"]["bytes"] == 0
    assert len(figures["queries"]) + len(figures["left_out"]) == 22
    # every query reached pg_stat_statements as its own statement, and the loop could time nearly all
    assert figures["statements"] == len(figures["queries"])
    assert figures["timed_statements"] >= 0.9 * figures["statements"]
    assert figures["retyped"]["q1"] and any("extract" in c for c in figures["retyped"]["q7"])
    kept = [f for f in figures["fixes"] if f["verdict"] == "kept" and f["kind"] == "create_index"]
    assert len(figures["configs"]["kit"]["indexes"]) == len(kept)
    assert 0 < figures["relative_cost_pct"] <= 100 + 1e-9  # a kept index never raises the planned cost
    assert 0.0 <= figures["reproduced_share"] <= 1.0


def test_only_the_tpch_benchmark_takes_a_scale_factor(kit_home):
    with pytest.raises(ConfigError, match="kit bench anydb has no TPC-H scale factor; drop --sf"):
        run_benchmark("anydb", scale="tiny", seed=1, home=kit_home, sf=0.1)
