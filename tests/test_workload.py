"""The workload of a database that is not the platform: top statements of every kind over a
window, parameter values from the data, timings on them (writes rolled back)."""

from __future__ import annotations

import psycopg
from sqlalchemy import text

from kit.audit.statements import CONTROL, statements_frame
from kit.config import libpq_url
from kit.workload import ESTIMATED, MEASURED, NOT_MEASURED, measure, read_workload, targets_for
from kit.workload.measure import Target
from kit.workload.sample import Parameters, sample_parameters

ITEMS = "SELECT product_id, qty, price FROM order_items WHERE order_id = $1"
UPDATE = "UPDATE orders SET status = $1 WHERE id = $2"


def _url(engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def test_top_statements_of_every_kind_and_the_window_since_a_previous_run(shop_engine):
    work = read_workload(shop_engine, top=20, min_calls=10)
    frame = work.to_frame()
    assert work.status == "ok" and work.basis == "since the statistics were reset"
    assert {"select", "update", "insert"} <= set(frame["kind"])
    assert frame["calls"].ge(10).all() and not frame["query"].str.contains("/* kit */", regex=False).any()
    assert frame["total_ms"].is_monotonic_decreasing
    items = next(s for s in work.statements if s.text == ITEMS)
    assert (items.calls, items.rows_per_call) == (60, 4.0)  # 4 items per order, one per scan (conftest.shop_url)
    assert abs(sum(s.share_pct for s in work.statements) - 100 * sum(s.total_ms for s in work.statements)
               / work.total_ms) < 1e-6
    # the next run sees only what ran since: 3 more lookups
    previous = {"run": "20260101T000000Z", "reset": work.reset,
                "snapshot": [{"queryid": s.queryid, "calls": s.calls, "total_ms": s.total_ms, "rows": s.rows}
                             for s in work.statements]}
    with psycopg.connect(libpq_url(_url(shop_engine)), autocommit=True) as conn:
        for order in (1, 2, 3):
            conn.execute("SELECT product_id, qty, price FROM order_items WHERE order_id = %s", [order])
    since = read_workload(shop_engine, previous=previous, top=20, min_calls=3)
    assert since.basis == "since run 20260101T000000Z"
    assert [(s.text, s.calls) for s in since.statements] == [(ITEMS, 3)]
    stale = read_workload(shop_engine, previous={**previous, "reset": "1999-01-01T00:00:00+00:00"}, top=20)
    assert stale.basis == "since the statistics were reset"  # reset in between: the window is unknown


def test_parameters_come_from_the_data(shop_engine):
    with psycopg.connect(libpq_url(_url(shop_engine)), autocommit=True) as conn:
        conn.execute("CREATE TABLE fresh (id int, kind text)")  # never analyzed: sampled
        conn.execute("INSERT INTO fresh SELECT g, 'k' || (g % 3) FROM generate_series(1, 300) g")
        items = sample_parameters(conn, ITEMS)
        orders = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
        assert items.complete and 1 <= int(items.values[0]) <= orders
        assert items.sources == ("order_items.order_id (pg_stats, =)",)
        fresh = sample_parameters(conn, "SELECT * FROM fresh WHERE kind = $1 AND id > $2 LIMIT $3")
        assert fresh.values[0] in {"k0", "k1", "k2"} and 1 <= int(fresh.values[1]) <= 300 and fresh.values[2] == "20"
        assert "sample" in fresh.sources[0]
        # two equalities on one table: the values of one real row
        pair = sample_parameters(conn, "SELECT * FROM orders WHERE customer_id = $1 AND status = $2")
        row = conn.execute("SELECT count(*) FROM orders WHERE customer_id = %s AND status = %s",
                           list(pair.values)).fetchone()[0]
        assert row >= 1 and "the row of customer_id = $1" in pair.sources[1]
        # no column: a value from the type and the part it plays, said to be a guess; a date no column
        # bounds gets none (there is no range of the data to pick it from)
        guessed = sample_parameters(conn, "SELECT $1::int + id, $2 - total FROM orders")
        assert guessed.values == ("1", "1") and guessed.complete
        assert guessed.sources == ("an integer in an expression: 1 guessed", "a numeric in an expression: 1 guessed")
        unknown = sample_parameters(conn, "SELECT $1::date FROM orders")
        assert unknown.values == (None,) and not unknown.complete


def _counts(frame) -> dict:
    """Calls per statement, transaction control aside: PostgreSQL gives every BEGIN one queryid,
    whatever comment it carries, so the kit's own BEGIN/ROLLBACK cannot be told apart (they are
    never a target nor a finding)."""
    keep = ~frame["kind"].isin(CONTROL)
    return dict(zip(frame.loc[keep, "query"], frame.loc[keep, "calls"]))


def test_timings_on_real_values_writes_rolled_back_and_never_counted(shop_engine):
    url = _url(shop_engine)
    with shop_engine.connect() as conn:
        before_status = conn.execute(text("SELECT /* kit */ md5(string_agg(status, ',' ORDER BY id)) FROM orders")).scalar_one()
        seen_before = _counts(statements_frame(conn))
    targets = targets_for(url, [s for s in read_workload(shop_engine, top=20).statements if s.text in (ITEMS, UPDATE)])
    timed = measure(url, targets, warmup=1, repeats=3, writes=True)
    items, update = (timed[t.key] for t in sorted(targets, key=lambda t: t.text != ITEMS))
    assert items.mode == MEASURED and len(items.exec_ms) == 3 and "Seq Scan on order_items" in items.plan
    assert items.actual_rows is not None and items.buffers > 0
    assert update.mode == MEASURED and update.plan.startswith("ModifyTable")
    assert measure(url, targets, warmup=0, repeats=1, writes=False)[update.key].mode == ESTIMATED
    with shop_engine.connect() as conn:
        assert conn.execute(text("SELECT /* kit */ md5(string_agg(status, ',' ORDER BY id)) FROM orders")).scalar_one() \
            == before_status  # every UPDATE was rolled back
        seen_after = _counts(statements_frame(conn))
    assert {k: v for k, v in seen_after.items() if k in seen_before} == seen_before  # the kit's runs: not counted
    missing = Target("k", "SELECT * FROM orders WHERE id = $1::int + 0 * $2", "select", Parameters(("1", None), ("", "")))
    assert measure(url, [missing])["k"].mode == ESTIMATED
    broken = Target("b", "SELECT nope FROM orders", "select", Parameters((), ()))
    assert measure(url, [broken])["b"].mode == NOT_MEASURED
