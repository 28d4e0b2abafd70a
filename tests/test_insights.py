"""Plan insights from real ``EXPLAIN (ANALYZE, BUFFERS)`` plans on planted tables: each cause found
where it is, and not where it is not (a big statement estimated right is not misestimated; a sort
that fits in work_mem does not spill)."""

from __future__ import annotations

import re

import psycopg
import pytest

from kit.config import libpq_url
from kit.workload.insights import insights

ROWS = 100_000


@pytest.fixture(scope="module")
def planted(pg_server):
    """pairs(a, b): b always equals a, 100 values each (correlated); wide(id, g, pad): 100k rows,
    never vacuumed, an index on g."""
    from kit.servers import local

    url = local.create_database(pg_server, "insights")
    dsn = libpq_url(url)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE pairs (a int, b int)")
        conn.execute(f"INSERT INTO pairs SELECT g % 100, g % 100 FROM generate_series(1, {ROWS}) g")
        # autovacuum off: it would set the visibility map after the load (the heap-fetch case needs it unset)
        conn.execute("CREATE TABLE wide (id int PRIMARY KEY, g int, pad text) WITH (autovacuum_enabled = off)")
        conn.execute(f"INSERT INTO wide SELECT g, g % 1000, repeat('x', 200) FROM generate_series(1, {ROWS}) g")
        conn.execute("CREATE INDEX wide_g ON wide (g)")
        conn.execute("ANALYZE pairs")
        conn.execute("ANALYZE wide")
    yield dsn
    local.drop_database(pg_server, "insights")


def _plan(dsn: str, query: str, *settings: str) -> dict:
    with psycopg.connect(dsn) as conn:
        for setting in settings:
            conn.execute(setting)
        (row,) = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {query}").fetchone()
        conn.rollback()
    return row[0]


def _kinds(dsn: str, query: str, *settings: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for i in insights(_plan(dsn, query, *settings)):
        out.setdefault(i.kind, []).append(i)
    return out


def test_correlated_columns_are_a_misestimate_answered_by_extended_statistics(planted):
    found = _kinds(planted, "SELECT * FROM pairs WHERE a = 7 AND b = 7")
    (mis,) = found["misestimate"]
    assert (mis.fix, mis.columns, mis.relation) == ("create_statistics", ("a", "b"), "pairs")
    assert mis.evidence.startswith("Seq Scan on pairs on (a, b): planned") and "7" not in mis.evidence.split(":")[0]
    planned, ratio = re.search(r"planned (\d+) rows, returned 1,000 \((\d+)× more than planned\)", mis.evidence).groups()
    assert int(planned) <= 20 and int(ratio) >= 50  # 1 % × 1 % of the rows, where the real 1 % come back


def test_a_big_statement_estimated_right_is_not_misestimated(planted):
    assert "misestimate" not in _kinds(planted, "SELECT * FROM pairs WHERE a = 7")
    assert _kinds(planted, "SELECT count(*) FROM wide") == {}


def test_a_sort_that_does_not_fit_spills_and_one_that_fits_does_not(planted):
    query = "SELECT * FROM wide ORDER BY md5(pad || id)"
    (spill,) = _kinds(planted, query, "SET work_mem = '64kB'")["sort_spill"]
    assert spill.fix == "work_mem" and "external" in spill.evidence
    assert "sort_spill" not in _kinds(planted, query, "SET work_mem = '256MB'")


def test_a_hash_in_batches_spills(planted):
    query = "SELECT count(*) FROM wide w1 JOIN wide w2 ON w2.id = w1.id"
    settings = ("SET work_mem = '64kB'", "SET enable_mergejoin = off", "SET max_parallel_workers_per_gather = 0")
    (spill,) = _kinds(planted, query, *settings)["hash_spill"]
    assert spill.fix == "work_mem" and "batches" in spill.evidence


def test_a_bitmap_that_lost_its_pages_is_lossy(planted):
    query = "SELECT count(pad) FROM wide WHERE g < 400"
    forced = ("SET work_mem = '64kB'", "SET enable_seqscan = off", "SET enable_indexscan = off",
              "SET max_parallel_workers_per_gather = 0")
    (lossy,) = _kinds(planted, query, *forced)["lossy_bitmap"]
    assert (lossy.fix, lossy.relation) == ("work_mem", "wide")
    assert "lossy_bitmap" not in _kinds(planted, query, *forced[1:], "SET work_mem = '64MB'")


def test_a_filter_that_throws_most_rows_away_wants_an_index(planted):
    (discard,) = _kinds(planted, "SELECT * FROM pairs WHERE b = 3", "SET max_parallel_workers_per_gather = 0")[
        "filter_discards"
    ]
    assert (discard.fix, discard.relation) == ("index", "pairs") and "99.0% thrown away" in discard.evidence
    assert "filter on (b)" in discard.evidence and "3" not in discard.evidence.split("filter")[1]  # never a value


def test_a_nested_loop_run_for_every_outer_row(planted):
    query = "SELECT count(*) FROM pairs p JOIN wide w ON w.id = p.a + 1 WHERE p.a < 20"
    forced = ("SET enable_hashjoin = off", "SET enable_mergejoin = off", "SET max_parallel_workers_per_gather = 0")
    (loops,) = _kinds(planted, query, *forced)["many_loops"]
    assert loops.fix == "advice" and "ran 20,000 times" in loops.evidence


def test_an_index_only_scan_on_a_table_never_vacuumed_fetches_the_heap(planted):
    query = "SELECT count(*) FROM wide WHERE g < 500"
    forced = ("SET enable_seqscan = off", "SET enable_bitmapscan = off", "SET max_parallel_workers_per_gather = 0")
    (fetches,) = _kinds(planted, query, *forced)["heap_fetches"]
    assert (fetches.fix, fetches.relation) == ("vacuum", "wide")


def test_jit_and_planning_time_from_the_statement_level():
    plan = {"Plan": {"Node Type": "Result"}, "Planning Time": 4.0, "Execution Time": 40.0,
            "JIT": {"Timing": {"Total": 25.0}}}
    assert [(i.kind, i.fix) for i in insights(plan)] == [("jit", "advice")]
    plan = {"Plan": {"Node Type": "Result"}, "Planning Time": 6.0, "Execution Time": 0.5}
    assert [i.evidence for i in insights(plan)] == ["planning took 6.0 ms, executing 0.5 ms"]
