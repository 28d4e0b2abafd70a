from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import text

from kit.capture.budget import assert_max_queries, assert_num_queries
from kit.errors import QueryBudgetExceeded

COUNT = text("SELECT count(*) FROM generate_series(1, :n)")


def test_within_budget_passes_and_yields_the_log(fresh_engine):
    with fresh_engine.connect() as conn:
        with assert_max_queries(fresh_engine, 2) as log:
            conn.execute(COUNT, {"n": 1})
            conn.execute(COUNT, {"n": 2})
    assert len(log) == 2


def test_over_budget_message_names_counts_and_top_fingerprint(fresh_engine):
    with fresh_engine.connect() as conn:
        with pytest.raises(QueryBudgetExceeded) as info:
            with assert_max_queries(fresh_engine, 2):
                conn.execute(text("SELECT 1"))
                for n in range(40):
                    conn.execute(COUNT, {"n": n})
    lines = str(info.value).splitlines()
    assert lines[0].startswith("expected at most 2 queries, 41 were done; ")
    assert lines[1] == "top fingerprint x40: SELECT count(*) FROM generate_series($2, $1)"
    assert lines[2] == "queries:"
    assert lines[3] == "  1. SELECT $1"
    assert lines[-1] == "  ... and 21 more"
    assert isinstance(info.value, AssertionError)


def test_max_repeats_fails_even_within_the_total(fresh_engine):
    with fresh_engine.connect() as conn:
        with pytest.raises(QueryBudgetExceeded, match="no statement repeated more than 2 times, one ran 3 times"):
            with assert_max_queries(fresh_engine, 10, max_repeats=2):
                for n in range(3):
                    conn.execute(COUNT, {"n": n})


def test_exact_count(fresh_engine):
    with fresh_engine.connect() as conn:
        with assert_num_queries(fresh_engine, 1):
            conn.execute(COUNT, {"n": 1})
        with pytest.raises(QueryBudgetExceeded, match="^expected 3 queries, 1 were done; update the expected count"):
            with assert_num_queries(fresh_engine, 3):
                conn.execute(COUNT, {"n": 1})


def test_error_in_block_wins_over_budget(fresh_engine):
    with fresh_engine.connect() as conn:
        with pytest.raises(ZeroDivisionError):
            with assert_max_queries(fresh_engine, 0):
                conn.execute(COUNT, {"n": 1})
                1 / 0


@pytest.mark.parametrize(("n", "repeats", "exc"), [(-1, None, ValueError), (1, 0, ValueError), ("2", None, TypeError)])
def test_bad_budgets(fresh_engine, n, repeats, exc):
    with pytest.raises(exc):
        with assert_max_queries(fresh_engine, n, max_repeats=repeats):
            pass


def test_fixture_from_the_plugin(fresh_engine, assert_max_queries, assert_num_queries):
    with fresh_engine.connect() as conn:
        with assert_max_queries(fresh_engine, 1):
            conn.execute(COUNT, {"n": 1})
        with assert_num_queries(fresh_engine, 1):
            conn.execute(COUNT, {"n": 1})


THROWAWAY_SUITE = '''
import os
from sqlalchemy import create_engine, text

def test_kept(assert_max_queries):
    engine = create_engine(os.environ["THROWAWAY_DB_URL"])
    with engine.connect() as conn, assert_max_queries(engine, 1):
        conn.execute(text("SELECT 1"))

def test_broken(assert_max_queries):
    engine = create_engine(os.environ["THROWAWAY_DB_URL"])
    with engine.connect() as conn, assert_max_queries(engine, 2):
        for i in range(5):
            conn.execute(text("SELECT :i"), {"i": i})
'''


def test_plugin_works_in_a_suite_outside_the_repo(tmp_path, fresh_db_url):
    (tmp_path / "test_app.py").write_text(textwrap.dedent(THROWAWAY_SUITE))
    env = {**os.environ, "THROWAWAY_DB_URL": fresh_db_url}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:nbval", "test_app.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert "1 failed, 1 passed" in out
    assert "QueryBudgetExceeded: expected at most 2 queries, 5 were done" in out
    assert "top fingerprint x5: SELECT $1" in out
