"""Benchmark: the loop on an analytical workload, TPC-H, judged by measurement (talks to PostgreSQL).

Steps:

1. TPC-H at scale factor ``sf``, generated offline by DuckDB's tpch extension, loaded into the empty
   database with primary keys only (:mod:`kit.benchmarks._tpch`);
2. the workload: the 22 queries, each with ``sets`` sets of substitution parameters drawn like qgen,
   sent as literals through psycopg so pg_stat_statements records them normalized; a query still
   over ``timeout_s`` with no secondary index is named in ``left_out`` and sent no more;
3. ``configs.none``: each query's time (median of ``runs`` timed runs after a warm-up, on its first
   parameter set) and planner cost; then the loop with apply, on the workload read from
   pg_stat_statements; ``configs.kit``: the same measurements with the indexes the loop kept.

The measurements of steps 3 are not workload: their session does not track statements. Each query
carries a ``/* tpch qN */`` comment (as an application's SQL commenter would) so the loop's
statements can be named by query.
"""

from __future__ import annotations

import inspect
import random
import re
import statistics
import time

import psycopg
from psycopg import sql

from kit.benchmarks import _tpch
from kit.config import libpq_url
from kit.db.engine import make_engine, one_row
from kit.fixes import run_loop
from kit.indexes.verify import plan_indexes
from kit.workload import MEASURED, NOT_MEASURED, read_workload

SCALES = ("demo", "tiny", "large")  # accepted and ignored: the size is the TPC-H scale factor
TAKES_SF = True  # kit bench advisor --sf
DEFAULT_SF = 0.1
SETS = 3  # parameter sets per query, as qgen would draw for several streams
RUNS = 3  # timed runs per query and configuration, after one warm-up
TIMEOUT_S = 60.0
SLOWER = 1.2  # a query more than 20 % slower with the kit's indexes is a regression

RESET = """SELECT /* kit */ pg_stat_statements_reset(0, (SELECT oid FROM pg_database
                                                      WHERE datname = current_database()), 0)"""
QUERY_IDS = """SELECT /* kit */ queryid::text, query FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"""
SECONDARY = """SELECT /* kit */ format('%%I.%%I', n.nspname, c.relname), pg_relation_size(c.oid)
FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class t ON t.oid = x.indrelid
WHERE NOT x.indisprimary AND t.relname = ANY(%s) AND n.nspname = 'public'
ORDER BY 1"""
_LABEL = re.compile(r"/\* tpch q(\d+) \*/")


def _text(n: int, params: dict) -> sql.Composed:
    return sql.SQL("/* tpch q{} */ ").format(sql.SQL(str(n))) + _tpch.query(n, params)


def _session(url: str, *, timeout_s: float, track: bool = True) -> psycopg.Connection:
    """A session with its statement timeout (and, for the kit's measurements, no statement tracking)
    set at connection: no SET statement of the benchmark's own lands in pg_stat_statements."""
    options = f"-c statement_timeout={int(timeout_s * 1000)}" + ("" if track else " -c pg_stat_statements.track=none")
    return psycopg.connect(libpq_url(url), autocommit=True, application_name="tpch-app", options=options)


def drive(url: str, workload: dict[int, list[dict]], *, timeout_s: float) -> tuple[dict[int, int], dict[str, str]]:
    """Send every query with each of its parameter sets (first sets first); (calls per query, left out
    query -> why). A query whose first set exceeds the timeout is sent no more."""
    calls, left_out = {n: 0 for n in workload}, {}
    with _session(url, timeout_s=timeout_s) as conn:
        conn.execute(RESET)
        for round_ in range(max(len(sets) for sets in workload.values())):
            for n, sets in workload.items():
                if f"q{n}" in left_out or round_ >= len(sets):
                    continue
                try:
                    conn.execute(_text(n, sets[round_])).fetchall()
                    calls[n] += 1
                except psycopg.errors.QueryCanceled:
                    left_out[f"q{n}"] = f"over the {timeout_s:.0f} s statement timeout with primary keys only"
    return calls, left_out


def measure(url: str, workload: dict[int, list[dict]], *, runs: int, timeout_s: float) -> dict:
    """Per query (its first parameter set): the median of ``runs`` timed runs after a warm-up, as the
    client waits for them, and the planner's total cost; the secondary indexes there are. A query
    that exceeds the timeout is named in ``timed_out`` and has no time."""
    per_query, costs, used, timed_out = {}, {}, {}, []
    with _session(url, timeout_s=timeout_s, track=False) as conn:
        for n, sets in workload.items():
            text = _text(n, sets[0])
            plan = one_row(conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) {}").format(text)))[0]
            costs[f"q{n}"] = round(float(plan[0]["Plan"]["Total Cost"]), 1)
            used[f"q{n}"] = sorted(set(plan_indexes(plan[0]["Plan"])))
            times = []
            try:
                for i in range(1 + runs):
                    started = time.perf_counter()
                    conn.execute(text).fetchall()
                    if i:
                        times.append(1000 * (time.perf_counter() - started))
            except psycopg.errors.QueryCanceled:
                timed_out.append(f"q{n}")
            per_query[f"q{n}"] = round(statistics.median(times), 3) if times and len(times) == runs else None
        indexes = conn.execute(SECONDARY, [list(_tpch.TABLES)]).fetchall()
    return {
        "indexes": [name for name, _size in indexes],
        "bytes": sum(size for _name, size in indexes),
        "per_query_ms": per_query,
        "per_query_cost": costs,
        "per_query_indexes": used,
        "timed_out": timed_out,
    }


def _totals(config: dict, queries: list[str]) -> dict:
    """The config's sums over ``queries`` (those timed in both configurations)."""
    return {
        **config,
        "est_cost": round(sum(config["per_query_cost"][q] for q in queries), 1),
        "workload_ms": round(sum(config["per_query_ms"][q] or 0.0 for q in queries), 3),
        "per_query_ms": {q: config["per_query_ms"][q] for q in queries},
        "per_query_cost": {q: config["per_query_cost"][q] for q in queries},
        "per_query_indexes": {q: config["per_query_indexes"][q] for q in queries},
    }


def _regression(q: str, none: dict, kit: dict) -> dict:
    """A query slower with the kit's indexes; ``plan_changed``: its plan names another index than
    before, or its planned cost moved by more than 1 % (else the same plan ran: the difference is the
    machine's noise between the two measurements, minutes apart, not the fix); ``kit_index``: that
    plan uses one of the kit's new indexes (else the statistics the apply's ANALYZE sampled again
    changed it)."""
    before, after = none["per_query_ms"][q], kit["per_query_ms"][q]
    cost_b, cost_a = none["per_query_cost"][q], kit["per_query_cost"][q]
    changed = none["per_query_indexes"][q] != kit["per_query_indexes"][q] or abs(cost_a - cost_b) > 0.01 * cost_b
    return {
        "query": q,
        "none_ms": before,
        "kit_ms": after,
        "slower_pct": round(100 * (after / before - 1), 1) if after is not None else None,
        "plan_changed": changed,
        "kit_indexes_in_plan": kit["per_query_indexes"][q],
        "kit_index": any(i.startswith("kit_") for i in kit["per_query_indexes"][q]),
    }


def _labels(url: str) -> dict[str, str]:
    """queryid -> "qN" for the statements of this database that carry a TPC-H label."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        rows = conn.execute(QUERY_IDS).fetchall()
    return {qid: f"q{m.group(1)}" for qid, text in rows if (m := _LABEL.search(text or ""))}


def _budget() -> int | None:
    """The index budget the loop applies by default, when it has one."""
    param = inspect.signature(run_loop).parameters.get("budget_bytes")
    return param.default if param is not None and isinstance(param.default, int) else None


def _loop_figures(result, labels: dict[str, str]) -> dict:
    """Which of the workload's statements the loop could time, which reproduced the workload, and
    why the others could not be prepared or run."""
    targets = result.workload.targets
    timed = [s for s in targets if (t := result.before.get(s.key)) is not None and t.mode == MEASURED]
    reproduced = [s for s in timed if result.before[s.key].reproduced is True]
    untimed = []
    for s in targets:
        t = result.before.get(s.key)
        if t is None or t.mode != MEASURED:
            untimed.append(
                {
                    "query": labels.get(s.key, s.key),
                    "mode": t.mode if t else None,
                    "prepared": bool(t) and t.mode != NOT_MEASURED,
                    "reason": t.reason if t else "not measured",
                }
            )
    return {
        "statements": len(targets),
        "timed_statements": len(timed),
        "reproduced_share": round(len(reproduced) / len(timed), 3) if timed else None,
        "reproduced": sorted(labels.get(s.key, s.key) for s in reproduced),
        "not_reproduced": {
            labels.get(s.key, s.key): result.before[s.key].evidence
            for s in timed
            if result.before[s.key].reproduced is not True
        },
        "not_timed": untimed,
        "retyped": {labels.get(s.key, s.key): list(s.rewrites) for s in targets if s.rewrites},
    }


def run(
    *,
    database_url: str,
    redis_url: str,
    scale: str,
    seed: int,
    sf: float = DEFAULT_SF,
    sets: int = SETS,
    runs: int = RUNS,
    timeout_s: float = TIMEOUT_S,
    loop_repeats: int = 5,
) -> dict:
    """Build, drive, measure, loop with apply (``loop_repeats`` timed runs per statement), measure
    again; the figures of issue 23."""
    del redis_url, scale
    built = time.monotonic()
    rows = _tpch.load(database_url, sf=sf)
    build_s = time.monotonic() - built
    rnd = random.Random(seed)
    workload = {n: [_tpch.parameters(n, rnd, sf=sf) for _ in range(sets)] for n in sorted(_tpch.QUERIES)}
    calls, left_out = drive(database_url, workload, timeout_s=timeout_s)
    kept = {n: s for n, s in workload.items() if f"q{n}" not in left_out}
    none = measure(database_url, kept, runs=runs, timeout_s=timeout_s)
    for q in none["timed_out"]:  # near the timeout: over it once measured again
        left_out[q] = f"over the {timeout_s:.0f} s statement timeout with primary keys only (when measured)"
    kept = {n: s for n, s in kept.items() if f"q{n}" not in left_out}
    engine = make_engine(database_url)
    try:
        started = time.monotonic()
        read = read_workload(engine, top=len(_tpch.QUERIES) + 8, min_calls=1)
        result = run_loop(engine, read, apply=True, repeats=loop_repeats, out=None)
        loop_seconds = time.monotonic() - started
    finally:
        engine.dispose()
    kit = measure(database_url, kept, runs=runs, timeout_s=timeout_s)
    labels = _labels(database_url)
    names = [f"q{n}" for n in kept]
    none, kit = _totals(none, names), _totals(kit, names)
    slower = [
        _regression(q, none, kit)
        for q in names
        if kit["per_query_ms"][q] is None or kit["per_query_ms"][q] > SLOWER * none["per_query_ms"][q]
    ]
    return {
        "sf": sf,
        "rows": rows,
        "build_seconds": round(build_s, 2),
        "sets": sets,
        "runs": runs,
        "queries": [f"q{n}" for n in kept],
        "left_out": left_out,
        "calls": {f"q{n}": c for n, c in calls.items()},
        "budget_bytes": _budget(),
        "configs": {"none": none, "kit": kit},
        "relative_cost_pct": round(100 * kit["est_cost"] / none["est_cost"], 1) if none["est_cost"] else None,
        "speedup_workload": round(none["workload_ms"] / kit["workload_ms"], 2) if kit["workload_ms"] else None,
        **_loop_figures(result, labels),
        "loop_seconds": round(loop_seconds, 2),
        "regressions": [r for r in slower if r["plan_changed"] and r["kit_index"]],
        # listed, not counted: the same plan (noise), or another plan that uses no kit index (new statistics)
        "slower_same_plan": [r for r in slower if not r["plan_changed"]],
        "slower_other_plan_no_kit_index": [r for r in slower if r["plan_changed"] and not r["kit_index"]],
        "fixes": [f.to_record() for f in result.fixes],
        "statement_queries": labels,  # the fixes' statements (queryids) by TPC-H query
    }
