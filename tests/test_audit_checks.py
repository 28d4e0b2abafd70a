"""Each audit check's positive and negative cases on small real databases: top statements by share
of time, sequential scans, the duplicate-index rule, foreign keys without an index, never-analyzed
row counts."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text

from kit.audit import duplicate_indexes, run_audit, seq_scan_tables, top_queries, unindexed_foreign_keys
from kit.audit.base import run_check
from kit.config import libpq_url
from kit.db import inventory


def _pg(engine) -> psycopg.Connection:
    return psycopg.connect(libpq_url(engine.url.render_as_string(hide_password=False)), autocommit=True)


def _flush(conn: psycopg.Connection) -> None:
    conn.execute("SELECT pg_stat_force_next_flush()")  # counters reach the shared stats before the reply


def _run(engine, check, **kwargs):
    return run_check(engine, lambda conn: check(conn, **kwargs))


def test_top_statements_of_every_kind_graded_by_share_of_time_with_enough_calls(fresh_engine):
    with _pg(fresh_engine) as c:
        c.execute("CREATE TABLE acct (id int PRIMARY KEY, balance int, note text)")
        c.execute("INSERT INTO acct SELECT g, 0, 'n' FROM generate_series(1, 60000) g")
        c.execute("CREATE TABLE ledger (id serial PRIMARY KEY, acct int, amount int)")
        for i in range(60):  # many updates that each scan the table: most of the database's time, however busy the machine
            c.execute("UPDATE acct SET balance = balance + %s WHERE note = %s AND id %% 20000 = %s", [1, "n", i + 1])
        for i in range(60):
            c.execute("INSERT INTO ledger (acct, amount) SELECT %s, g FROM generate_series(1, 200) g", [i])
        c.execute("SELECT count(*) FROM acct WHERE note <> %s", ["x"])  # one call: never a finding
        c.execute("SELECT /* kit */ count(*) FROM acct")  # the kit's own: never listed
    res = _run(fresh_engine, top_queries, min_total_ms=0)
    assert {"update", "insert", "select"} <= set(res.rows["kind"])
    rows = res.rows[res.rows["calls"] == 60].set_index("kind")
    assert not res.rows["query"].str.contains("/\\* kit \\*/", regex=True).any()
    assert res.rows["share_pct"].iloc[0] == res.rows["share_pct"].max()  # ranked by share of total time
    one_call = res.rows[res.rows["calls"] == 1]
    assert len(one_call) >= 1 and set(one_call["severity"]) == {"info"}
    upd, ins = rows.loc["update"], rows.loc["insert"]
    assert (upd["calls"], ins["calls"]) == (60, 60) and ins["rows_per_call"] == 200
    for row in (upd, ins):
        expected = "high" if row["share_pct"] >= 20 else "medium" if row["share_pct"] >= 5 else "info"
        assert row["severity"] == expected
    assert "high" in set(res.rows["severity"])  # two statements share nearly all the time
    # with a minimum of calls above what ran, nothing is a finding
    assert set(_run(fresh_engine, top_queries, min_calls=61, min_total_ms=0).rows["severity"]) == {"info"}


def test_seq_scan_grading_needs_scans_and_size(fresh_engine):
    with _pg(fresh_engine) as c:
        c.execute("CREATE TABLE big (id int, v int)")
        c.execute("INSERT INTO big SELECT g, g FROM generate_series(1, 20000) g")
        c.execute("CREATE TABLE small (id int, v int)")
        c.execute("INSERT INTO small SELECT g, g FROM generate_series(1, 100) g")
        c.execute("CREATE TABLE once (id int, v int)")
        c.execute("INSERT INTO once SELECT g, g FROM generate_series(1, 20000) g")
        c.execute("ANALYZE")
        for _ in range(60):
            c.execute("SELECT count(*) FROM big WHERE v = 7")
            c.execute("SELECT count(*) FROM small WHERE v = 7")
        c.execute("SELECT count(*) FROM once WHERE v = 7")  # a single scan, say a nightly export
        _flush(c)
    sev = _run(fresh_engine, seq_scan_tables).rows.set_index("table")["severity"]
    assert (sev["big"], sev["small"], sev["once"]) == ("high", "info", "info")
    assert _run(fresh_engine, seq_scan_tables, min_scans=100).rows.set_index("table").loc["big", "severity"] == "info"


DUPLICATES = [
    # (first index, second index, the one reported as redundant or None)
    ("CREATE INDEX a ON t (x, y)", "CREATE INDEX b ON t (x, y DESC)", None),  # sort order differs
    ("CREATE INDEX a ON t (s)", 'CREATE INDEX b ON t (s COLLATE "C")', None),  # collation differs
    ("CREATE INDEX a ON t (s)", "CREATE INDEX b ON t (s text_pattern_ops)", None),  # opclass differs
    ("CREATE INDEX a ON t (x) WHERE y > 0", "CREATE INDEX b ON t (x)", None),  # partial vs whole table
    ("CREATE INDEX a ON t (x) WHERE y > 0", "CREATE INDEX b ON t (x, y) WHERE y > 0", "a"),  # same predicate
    ("CREATE INDEX a ON t (lower(s))", "CREATE INDEX b ON t (s)", None),  # expression vs column
    ("CREATE INDEX a ON t (lower(s))", "CREATE INDEX b ON t (lower(s), x)", "a"),  # same expression, prefix
    ("CREATE INDEX a ON t (x) INCLUDE (y)", "CREATE INDEX b ON t (x)", "b"),  # b lacks y: a covers b only
    ("CREATE INDEX a ON t (x) INCLUDE (y)", "CREATE INDEX b ON t (x, y)", "a"),  # y is a key of b
    ("CREATE INDEX a ON t USING hash (x)", "CREATE INDEX b ON t (x)", None),  # method differs
    ("CREATE INDEX a ON t (x)", "CREATE UNIQUE INDEX b ON t (x)", "a"),  # plain created first: unique kept
    ("CREATE UNIQUE INDEX a ON t (x)", "CREATE INDEX b ON t (x)", "b"),  # either order
    ("CREATE UNIQUE INDEX a ON t (x)", "CREATE INDEX b ON t (x, y)", None),  # a enforces uniqueness
    ("CREATE INDEX a ON t (x)", "CREATE INDEX b ON t (x)", "b"),  # exact duplicates: the younger goes
    ("CREATE INDEX a ON t (x)", "CREATE INDEX b ON t (x, y)", "a"),  # prefix
]


@pytest.mark.parametrize("first, second, redundant", DUPLICATES)
def test_duplicate_rule(fresh_engine, first, second, redundant):
    with _pg(fresh_engine) as c:
        c.execute("DROP TABLE IF EXISTS t")
        c.execute("CREATE TABLE t (id int PRIMARY KEY, x int, y int, s text)")
        c.execute(first)
        c.execute(second)
    rows = _run(fresh_engine, duplicate_indexes).rows
    assert rows["index"].tolist() == ([redundant] if redundant else [])
    if redundant:
        other = "b" if redundant == "a" else "a"
        assert rows["covered_by"].iloc[0] == f"public.{other}"
        assert rows["detail"].iloc[0].startswith(f"covered by public.{other}: CREATE ")
        assert rows["remediation"].iloc[0] == f"DROP INDEX CONCURRENTLY public.{redundant};  -- covered by public.{other}"


def test_a_constraints_index_is_kept_and_the_covering_index_is_named_in_the_findings(fresh_engine):
    with _pg(fresh_engine) as c:
        c.execute("CREATE TABLE p (id int, sku text, CONSTRAINT p_sku_key UNIQUE (sku))")
        c.execute("CREATE INDEX p_sku_idx ON p (sku)")
        c.execute("CREATE UNIQUE INDEX p_sku_again ON p (sku)")
    rows = _run(fresh_engine, duplicate_indexes).rows.set_index("index")
    assert sorted(rows.index) == ["p_sku_again", "p_sku_idx"]
    assert set(rows["covered_by"]) == {"public.p_sku_key"}
    found = run_audit(fresh_engine).findings()
    dup = found[found["check"] == "duplicate_indexes"].set_index("subject")
    assert dup.loc["p_sku_idx", "detail"] == ("covered by public.p_sku_key: "
                                              "CREATE UNIQUE INDEX p_sku_key ON public.p USING btree (sku)")


def test_foreign_keys_without_an_index(fresh_engine):
    with _pg(fresh_engine) as c:
        c.execute("CREATE TABLE parent (id int PRIMARY KEY, a int, b int, UNIQUE (a, b))")
        c.execute("INSERT INTO parent SELECT g, g, g FROM generate_series(1, 100) g")
        c.execute("CREATE TABLE bare (id int, pid int REFERENCES parent)")  # no index: a finding
        c.execute("CREATE TABLE led (id int, pid int REFERENCES parent)")
        c.execute("CREATE INDEX ON led (pid, id)")  # led by the key: served
        c.execute("CREATE TABLE second (id int, pid int REFERENCES parent)")
        c.execute("CREATE INDEX ON second (id, pid)")  # the key is not leading: a finding
        c.execute("CREATE TABLE pair (a int, b int, FOREIGN KEY (a, b) REFERENCES parent (a, b))")
        c.execute("CREATE INDEX ON pair (b, a)")  # both columns, another order: served
        c.execute("CREATE TABLE part (id int, pid int REFERENCES parent)")
        c.execute("CREATE INDEX ON part (pid) WHERE id > 0")  # partial: cannot serve every check
        for t in ("bare", "led", "second", "pair", "part"):
            c.execute(f"INSERT INTO {t} SELECT 1 + g % 100, 1 + g % 100 FROM generate_series(1, 2000) g")
        c.execute("ANALYZE")
    res = _run(fresh_engine, unindexed_foreign_keys, min_rows=1000)
    rows = res.rows.set_index("table")
    assert sorted(rows.index) == ["bare", "part", "second"]
    assert rows.loc["bare", "columns"] == ["pid"] and rows.loc["bare", "references"] == "parent"
    assert rows.loc["bare", "severity"] == "medium"
    assert rows.loc["bare", "remediation"] == 'CREATE INDEX CONCURRENTLY ON "public"."bare" ("pid");'
    assert res.status == "findings"
    assert set(_run(fresh_engine, unindexed_foreign_keys).rows["severity"]) == {"info"}  # below 10,000 rows


def test_never_analyzed_tables_count_their_live_rows(fresh_engine):
    with _pg(fresh_engine) as c:
        c.execute("CREATE TABLE fresh (id int)")
        c.execute("INSERT INTO fresh SELECT generate_series(1, 500)")
        c.execute("CREATE TABLE done (id int)")
        c.execute("INSERT INTO done SELECT generate_series(1, 300)")
        c.execute("ANALYZE done")
        _flush(c)
    inv = inventory.snapshot(fresh_engine)
    tables = inv.tables.set_index("table")
    assert tables.loc["fresh", ["rows_estimate", "rows_from", "statistics"]].tolist() == [500, "live tuples",
                                                                                         "never analyzed"]
    assert tables.loc["done", ["rows_estimate", "rows_from", "statistics"]].tolist() == [300, "reltuples", "analyzed"]
    assert inv.rows_total == 800
    with fresh_engine.connect() as conn:
        assert conn.execute(text("SELECT reltuples FROM pg_class WHERE relname = 'fresh'")).scalar_one() == -1
