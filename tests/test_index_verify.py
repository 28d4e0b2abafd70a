"""Verify: the representative query of each index, before and after, used or not and why."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from kit.indexes.advisor import advise
from kit.indexes.apply import apply_indexes
from kit.indexes.verify import measure, verify
from kit.demo.schema import create_schema

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
    assert best["create_sql"].iloc[0] == 'CREATE INDEX CONCURRENTLY ON "public"."reconciliation_jobs" ("created_by")'
    assert best["est_bytes"].iloc[0] > 8192 and best["statement"].iloc[0] == 0
    name_row = frame[frame["columns"] == "name"].iloc[0]
    assert (name_row["verdict"], name_row["reason"]) == ("rejected", "the planner did not use it")
    with small_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM hypopg_list_indexes")).scalar_one() == 0


def test_advisor_tries_only_user_tables_and_columns_no_index_leads(small_engine):
    advice = advise(small_engine, queries=[
        "SELECT calls FROM pg_stat_statements WHERE queryid = $1",  # a view: not a table
        "SELECT 1 FROM ONLY public.users x WHERE id = $1 FOR KEY SHARE OF x",  # the primary key leads an index
        "UPDATE reconciliation_jobs SET status = $1 WHERE created_by = $2 AND name = $3",
        "INSERT INTO users (email) VALUES ($1)"])
    frame = advice.to_frame()
    by = frame.groupby("statement")
    assert by.get_group(0)[["verdict", "reason"]].values.tolist() == [
        ["skipped", "public.pg_stat_statements is not a user table"]]
    assert by.get_group(1)[["verdict", "reason"]].values.tolist() == [
        ["skipped", "an index on users already starts with every candidate"]]
    update = by.get_group(2)
    assert update[update["verdict"] == "suggest"]["columns"].iloc[0].startswith("created_by")
    assert set(update["table"]) == {"reconciliation_jobs"}
    assert by.get_group(3)[["verdict", "reason"]].values.tolist() == [
        ["skipped", "an index does not speed up INSERT"]]


def test_the_advisors_own_statements_never_count_as_workload(small_engine):
    from kit.audit.statements import statements_frame

    with small_engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_statements_reset()"))
        conn.commit()
    advise(small_engine, queries=["SELECT * FROM reconciliation_jobs WHERE created_by = $1 AND status = $2"])
    with small_engine.connect() as conn:
        seen = statements_frame(conn)
        everything = conn.execute(text("SELECT query FROM pg_stat_statements WHERE dbid = "
                                       "(SELECT oid FROM pg_database WHERE datname = current_database())")).scalars().all()
    assert "PREPARE" in " ".join(everything)  # pg_stat_statements did see the advisor ...
    assert not seen["query"].str.contains("kit_advise|hypopg|plan_cache_mode", regex=True).any()  # ... as the kit's
