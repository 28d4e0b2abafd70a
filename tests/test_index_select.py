"""Workload-wide index selection: candidates from every statement, one index for several
statements, partial indexes for a rare value, the write cost of an index on a write-heavy table,
the storage budget (real PostgreSQL with hypopg; hypothetical indexes only)."""

from __future__ import annotations

import psycopg
import pytest

from kit.config import libpq_url
from kit.indexes.advisor import candidate_keys, covered
from kit.indexes.select import Statement, select_indexes
from kit.db import sessions
from kit.sqltext.refs import ColumnUse

BY_A = "SELECT * FROM t WHERE a = $1"
BY_A_B = "SELECT * FROM t WHERE a = $1 AND b = $2"
BY_A_RANGE = "SELECT count(*) FROM t WHERE a = $1 AND c >= $2 AND c < $3 ORDER BY 1"
OPEN = "SELECT id FROM tickets WHERE status = $1 AND assignee_id = $2"
HOT_READ = "SELECT id FROM w WHERE x = $1"
HOT_UPDATE = "UPDATE w SET x = $1 WHERE id = $2"


def _u(column, op):
    return ColumnUse(None, column, "where" if op != "order" else "order", op)


def test_candidates_put_equality_first_then_a_range_or_the_sort_key():
    uses = [_u("c", ">="), _u("a", "="), _u("b", "="), _u("c", "<"), _u("d", "order")]
    keys = candidate_keys(uses)
    assert keys[:3] == [("a", "b"), ("a", "b", "c"), ("a", "b", "d")]  # equalities, then a range or the sort key
    assert ("c",) in keys and ("c", "a") in keys  # each column, and pairs
    assert candidate_keys([_u("a", "="), _u("b", "="), _u("e", "="), _u("c", "<")])[:2] == [("a", "b", "e"),
                                                                                         ("a", "b", "c")]
    assert covered(("a",), frozenset({("a", "b")})) and not covered(("a", "b"), frozenset({("a",)}))


@pytest.fixture(scope="module")
def selection_db(pg_server):
    from kit.servers import local

    url = local.create_database(pg_server, "select_db", replace=True)
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id bigint PRIMARY KEY, a int, b int, c int, pad text)")
        conn.execute("INSERT INTO t SELECT g, g % 2000, g % 7, g % 1000, repeat('p', 40) FROM generate_series(1, 200000) g")
        conn.execute("CREATE TABLE tickets (id bigint PRIMARY KEY, status text, assignee_id int, body text)")
        conn.execute("INSERT INTO tickets SELECT g, CASE WHEN g % 200 = 0 THEN 'open' ELSE 'closed' END, g % 300, "
                     "repeat('b', 40) FROM generate_series(1, 150000) g")
        conn.execute("CREATE TABLE w (id bigint PRIMARY KEY, x int, y int)")
        conn.execute("INSERT INTO w SELECT g, g % 500, g FROM generate_series(1, 50000) g")
        conn.execute("ANALYZE")
        for i in range(2000):  # a write-heavy table: HOT updates of x
            conn.execute("UPDATE w SET x = %s WHERE id = %s", [i % 500, 1 + i % 50000])
        conn.execute("SELECT pg_stat_force_next_flush()")
    yield url
    local.drop_database(pg_server, "select_db")


def _select(url, statements, **kw):
    with sessions.connect(url) as conn:
        conn.prepare_threshold = None
        return select_indexes(conn, statements, **kw)


def test_one_index_serves_two_statements(selection_db):
    picked = _select(selection_db, [Statement("q1", BY_A, ("42",), 500.0), Statement("q2", BY_A_B, ("42", "3"), 500.0)])
    assert [c.candidate.columns for c in picked.chosen] == [("a", "b")]
    assert set(picked.chosen[0].statements) == {"q1", "q2"} and picked.chosen[0].saved_ms > 900


def test_a_range_after_the_equality_is_planned_on_the_values(selection_db):
    picked = _select(selection_db, [Statement("r", BY_A_RANGE, ("42", "100", "200"), 300.0)])
    assert picked.chosen and picked.chosen[0].candidate.columns[0] == "a"
    base, after = picked.chosen[0].costs["r"]
    assert after < base / 10


def test_a_rare_value_of_an_enum_like_column_gets_a_partial_index(selection_db):
    picked = _select(selection_db, [Statement("o", OPEN, ("open", "0"), 400.0)])
    (chosen,) = picked.chosen
    assert chosen.candidate.where == ("status", "open") and chosen.candidate.columns == ("assignee_id",)
    common = _select(selection_db, [Statement("c", OPEN, ("closed", "1"), 400.0)])
    assert all(c.candidate.where is None for c in common.chosen)  # a common value: no partial index


def test_an_index_whose_writes_cost_more_than_it_saves_is_not_chosen(selection_db):
    """The workload's UPDATEs set x 200,000 times, most of them HOT: an index on x would write an
    entry in every index of w for each; a read that takes 5 ms in all cannot pay for that."""
    writes = Statement("u", HOT_UPDATE, ("1", "2"), 4_000.0, rows=200_000)
    rare_read = _select(selection_db, [Statement("h", HOT_READ, ("7",), 5.0), writes])
    assert rare_read.chosen == ()
    hot = _select(selection_db, [Statement("h", HOT_READ, ("7",), 50_000.0), writes])
    assert [c.candidate.columns for c in hot.chosen] == [("x",)]
    assert hot.chosen[0].rows_written == 200_000 and hot.chosen[0].write_ms > 2_000  # HOT lost: 2 entries a row


def test_the_budget_caps_what_is_chosen(selection_db):
    statements = [Statement("q1", BY_A, ("42",), 500.0), Statement("o", OPEN, ("open", "0"), 400.0)]
    assert _select(selection_db, statements, budget_bytes=1).chosen == ()
    roomy = _select(selection_db, statements, budget_bytes=2**30)
    assert len(roomy.chosen) == 2 and roomy.budget_bytes == 2**30
    assert sum(c.est_bytes for c in roomy.chosen) <= 2**30


def test_an_existing_index_the_new_one_extends_is_dropped_with_it(selection_db):
    """t2 has (a); the workload filters on a and b: the plan builds (a, b) and drops (a), the drop
    kept only if (a, b) is."""
    from kit.db.engine import make_engine
    from kit.fixes import CREATE, DROP
    from kit.fixes.plan import plan_fixes
    from kit.workload.model import Statement as WorkStatement
    from kit.workload.model import Workload

    with psycopg.connect(libpq_url(selection_db), autocommit=True) as conn:
        conn.execute("CREATE TABLE t2 AS SELECT * FROM t")
        conn.execute("CREATE INDEX t2_a_idx ON t2 (a)")
        conn.execute("ANALYZE t2")
    text = "SELECT * FROM t2 WHERE a = $1 AND b = $2"
    stmt = WorkStatement("k", 1, text, "select", calls=100, total_ms=900.0, rows=1400, share_pct=90.0)
    engine = make_engine(selection_db)
    try:
        plan = plan_fixes(engine, Workload("ok", "", "", (stmt,), 1000.0, 100), values={"k": ("42", "3")})
    finally:
        engine.dispose()
    create = next(f for f in plan.fixes if f.kind == CREATE and f.table == "t2")
    drop = next(f for f in plan.fixes if f.kind == DROP and f.table == "t2")
    assert create.index_name == "kit_t2_a_b_idx" and (drop.index_name, drop.depends_on) == ("t2_a_idx", "kit_t2_a_b_idx")
    assert drop.source == "covered by a new index" and drop.statements[-1] == "probe:t2_a_idx"
