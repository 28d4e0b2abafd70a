"""Verify: the representative query of each index, before and after, used or not and why."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from kit.indexes.advisor import advise
from kit.indexes.apply import apply_indexes
from kit.indexes.verify import measure, verify
from kit.schema import create_schema

REASONS = ("plan names the index", "table too small", "table is empty", "low selectivity",
           "planner chose another index", "the index cannot serve")


@pytest.fixture
def small_engine(fresh_engine):
    """Schema plus enough users and jobs that some indexes win and small tables lose."""
    with fresh_engine.begin() as conn:
        create_schema(conn)
        conn.execute(text("INSERT INTO users (email, first_name, last_name, role, is_active) "
                          "SELECT 'U' || g || '@x.org', 'f', 'l', 'analyst', g % 10 <> 0 "
                          "FROM generate_series(1, 3000) g"))
        conn.execute(text("INSERT INTO projects (name, owner_id, status) "
                          "SELECT 'p' || g, 1 + g % 3000, 'active' FROM generate_series(1, 300) g"))
        conn.execute(text("INSERT INTO reconciliation_jobs (project_id, name, status, created_by) "
                          "SELECT 1 + g % 300, 'j', (ARRAY['completed', 'failed', 'pending'])[1 + g % 3], "
                          "1 + g % 3000 FROM generate_series(1, 60000) g"))
        conn.execute(text("ANALYZE"))
    return fresh_engine


def test_before_and_after_for_all_23(small_engine):
    before = measure(small_engine, warmup=1, repeats=3, settle_s=0)
    apply_indexes(small_engine, apply=True, sample_s=0, progress=None, out=None)
    after = measure(small_engine, params=before, warmup=1, repeats=3)
    frame = verify(small_engine, before, after).to_frame().set_index("name")
    assert len(frame) == 23
    jobs = frame.loc["idx_reconciliation_jobs_created_by"]
    assert (bool(jobs["used"]), jobs["reason"], jobs["idx_scan_delta"]) == (True, "plan names the index", 4)
    assert "Seq Scan on reconciliation_jobs" in jobs["plan_before"]
    empty = frame.loc["idx_audit_logs_resource"]
    assert (bool(empty["used"]), empty["reason"]) == (False, "table is empty (or never analyzed): nothing for an index to find")
    for name, row in frame.iterrows():
        assert row["reason"].startswith(REASONS), (name, row["reason"])
        assert bool(row["used"]) == (name in after[name].indexes)


def test_advisor_suggests_and_rejects_with_costs(small_engine):
    advice = advise(small_engine, queries=["SELECT * FROM reconciliation_jobs WHERE created_by = $1",
                                           "SELECT * FROM reconciliation_jobs WHERE name = 'j'"])
    frame = advice.to_frame()
    best = frame[frame["verdict"] == "suggest"]
    assert best["columns"].tolist() == ["created_by"]
    assert best["create_sql"].iloc[0] == 'CREATE INDEX CONCURRENTLY ON "reconciliation_jobs" ("created_by")'
    name_row = frame[frame["columns"] == "name"].iloc[0]
    assert (name_row["verdict"], name_row["reason"]) == ("rejected", "the planner did not use it")
    with small_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM hypopg_list_indexes")).scalar_one() == 0
