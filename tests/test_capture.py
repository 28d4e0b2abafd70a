from __future__ import annotations

import pytest
from sqlalchemy import text

from kit.capture.recorder import capture

COUNT = text("SELECT count(*) FROM generate_series(1, :n)")


def test_records_sql_rows_duration_fingerprint_and_call_site(fresh_engine):
    with fresh_engine.connect() as conn, capture(fresh_engine, call_sites=True) as log:
        for n in (3, 4, 5):
            assert conn.execute(COUNT, {"n": n}).scalar_one() == n
        conn.execute(text("SELECT g FROM generate_series(1, 7) g")).all()
    assert len(log) == 4
    first = log.statements[0]
    assert first.normalized == "SELECT count(*) FROM generate_series($2, $1)"
    assert [s.fingerprint for s in log.statements[:3]] == [first.fingerprint] * 3
    assert [s.rowcount for s in log.statements] == [1, 1, 1, 7]
    assert all(s.duration_ms > 0 for s in log.statements) is True
    assert first.call_site.startswith(__file__ + ":")
    assert first.call_site.endswith("in test_records_sql_rows_duration_fingerprint_and_call_site")
    assert first.params is None
    assert log.top_fingerprints(1)[0][1] == 3


def test_call_sites_only_when_asked(fresh_engine):
    with fresh_engine.connect() as conn, capture(fresh_engine) as log:
        conn.execute(COUNT, {"n": 1})
    assert [s.call_site for s in log.statements] == [None]


def test_log_read_during_the_capture_keeps_order_and_clear_empties_it(fresh_engine):
    with fresh_engine.connect() as conn, capture(fresh_engine) as log:
        conn.execute(COUNT, {"n": 1})
        assert [s.seq for s in log.statements] == [1]
        conn.execute(COUNT, {"n": 2})
        conn.execute(text("/* kit */ SELECT 1"))
        conn.execute(COUNT, {"n": 3})
        assert [(s.seq, s.rowcount) for s in log.statements] == [(1, 1), (2, 1), (3, 1)]
        log.clear()
        conn.execute(text("SELECT g FROM generate_series(1, 2) g")).all()
    assert [(s.seq, s.rowcount) for s in log] == [(4, 2)]


def test_units_of_work_group_requests(fresh_engine):
    with fresh_engine.connect() as conn, capture(fresh_engine) as log:
        for _ in range(2):
            with log.unit("endpoint"):
                conn.execute(COUNT, {"n": 1})
                conn.execute(COUNT, {"n": 2})
        conn.execute(COUNT, {"n": 3})
    assert log.counts_per_unit("endpoint") == [2, 2]
    assert sorted(len(v) for v in log.units().values()) == [1, 2, 2]
    assert log.units()[0][0].unit is None
    frame = log.to_frame()
    assert list(frame["unit"].fillna("-")) == ["endpoint"] * 4 + ["-"]


def test_capture_on_one_connection_ignores_others(fresh_engine):
    with fresh_engine.connect() as mine, fresh_engine.connect() as other:
        with capture(mine) as log:
            mine.execute(COUNT, {"n": 1})
            other.execute(COUNT, {"n": 1})
    assert len(log) == 1


def test_listeners_are_removed_after_the_block(fresh_engine):
    with capture(fresh_engine) as log:
        pass
    with fresh_engine.connect() as conn:
        conn.execute(COUNT, {"n": 1})
    assert len(log) == 0


def test_kit_statements_are_left_out_unless_asked(fresh_engine):
    with fresh_engine.connect() as conn:
        with capture(fresh_engine) as log:
            conn.execute(text("/* kit */ SELECT 1"))
        with capture(fresh_engine, include_kit=True) as everything:
            conn.execute(text("/* kit */ SELECT 1"))
    assert (len(log), len(everything)) == (0, 1)


def test_params_recorded_only_when_asked_and_redacted(fresh_engine):
    stmt = text("SELECT CAST(:email AS text), CAST(:password AS text), CAST(:n AS int)")
    with fresh_engine.connect() as conn, capture(fresh_engine, record_params=True) as log:
        conn.execute(stmt, {"email": "a@b.c", "password": "hunter2", "n": 4})
        conn.execute(text("CREATE TEMP TABLE t (a int)"))
        conn.execute(text("INSERT INTO t VALUES (:a)"), [{"a": 1}, {"a": 2}, {"a": 3}, {"a": 4}])
    assert log.statements[0].params == {"email": "***", "password": "***", "n": 4}
    assert log.statements[2].executemany is True
    assert log.statements[2].params == [{"a": 1}, {"a": 2}, {"a": 3}]


def test_unparsable_statement_is_still_captured(fresh_engine):
    with fresh_engine.connect() as conn, capture(fresh_engine) as log:
        with pytest.raises(Exception):
            conn.execute(text("SELEC 1"))
        conn.rollback()
        conn.execute(text("SELECT 1"))
    # a statement the server rejected never reaches after_cursor_execute; the next one is intact
    assert [s.normalized for s in log.statements] == ["SELECT $1"]
    assert log.statements[0].duration_ms < 60_000


def test_capture_rejects_what_is_not_an_engine_or_connection():
    with pytest.raises(TypeError, match="got str"):
        with capture("postgresql://localhost/db"):
            pass


def test_secrets_in_statement_texts_never_reach_the_log(fresh_engine):
    canary = "Canary-cap-51d2"
    with fresh_engine.connect() as conn, capture(fresh_engine) as log:
        conn.execute(text(f"SELECT set_config('app.token', '{canary}', false) /* password={canary} */"))
        conn.execute(text(f"SET app.api_key = '{canary}'"))
        conn.rollback()
    frame = log.to_frame()
    assert len(frame) == 2
    assert not frame[["sql", "normalized"]].apply(lambda col: col.str.contains(canary)).any().any()
    assert log.statements[1].sql == "SET app.api_key = '***'"
    # the fingerprint is the statement's, not the mask's: a loop of the same text is one pattern
    assert log.statements[0].fingerprint == fp_of(f"SELECT set_config('app.token', 'x', false)")


def fp_of(sql: str) -> str:
    from kit.sqltext import fingerprint

    return fingerprint.fingerprint(sql)
