from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from kit.capture.budget import assert_max_queries, assert_num_queries
from kit.db.engine import make_engine
from kit.demo.services import ENDPOINTS, batched, naive


@pytest.fixture(scope="module")
def seeded(tiny_module_url) -> Iterator[Engine]:
    """A database seeded at scale tiny, shared by this module."""
    engine = make_engine(tiny_module_url)
    yield engine
    engine.dispose()


def test_both_implementations_have_the_same_endpoints():
    for endpoint in ENDPOINTS:
        assert callable(getattr(naive, endpoint)) and callable(getattr(batched, endpoint))


def test_search_projects_equal_and_41_vs_1_statements(seeded):
    word = "reconcil"  # every generated description says "Reconciles ...": a full page
    with seeded.connect() as conn:
        with assert_num_queries(seeded, 41):
            slow = naive.search_projects(conn, query=word, page=1, per_page=20)
        with assert_num_queries(seeded, 1):
            fast = batched.search_projects(conn, query=word, page=1, per_page=20)
    assert len(slow["items"]) == 20
    assert slow == fast
    json.dumps(fast)  # cacheable as JSON
    assert sum(i["job_count"] for i in fast["items"]) > 0
    assert {"id", "name", "owner_email", "job_count", "data_source_count"} <= set(fast["items"][0])


def test_list_users_equal_and_21_vs_1_statements(seeded):
    with seeded.connect() as conn:
        with assert_num_queries(seeded, 21):
            slow = naive.list_users(conn, page=2, per_page=20)
        with assert_num_queries(seeded, 1):
            fast = batched.list_users(conn, page=2, per_page=20)
    assert slow == fast
    assert len(fast["items"]) == 20
    assert sum(u["project_count"] for u in fast["items"]) > 0


def test_single_statement_endpoints(seeded):
    with seeded.connect() as conn:
        with assert_num_queries(seeded, 1):
            projects = batched.list_projects(conn, page=1, per_page=5)
        first = projects["items"][0]
        assert naive.get_project(conn, first["id"]) == batched.get_project(conn, first["id"]) == first
        assert batched.get_project(conn, -1) is None
        pid = conn.execute(text("SELECT project_id FROM reconciliation_jobs ORDER BY id LIMIT 1")).scalar_one()
        jobs = batched.get_reconciliation_jobs(conn, project_id=pid, page=1, per_page=50)
        assert jobs == naive.get_reconciliation_jobs(conn, project_id=pid, page=1, per_page=50)
        assert {j["project_id"] for j in jobs["items"]} == {pid}


def test_update_project_changes_and_returns_the_project(seeded):
    with seeded.connect() as conn:
        pid = batched.list_projects(conn, page=1, per_page=1)["items"][0]["id"]
        after = batched.update_project(conn, pid, name="Renamed by test", status="archived")
        assert (after["name"], after["status"]) == ("Renamed by test", "archived")
        assert naive.get_project(conn, pid)["name"] == "Renamed by test"
        assert batched.update_project(conn, -5, name="x") is None
        with pytest.raises(ValueError, match="owner_id"):
            batched.update_project(conn, pid, owner_id=1)


RESULT_ROWS = text("""
SELECT left_record_id, right_record_id, confidence, status FROM reconciliation_results
WHERE job_id = :job_id ORDER BY left_record_id
""")
MATCH_ROWS = text("""
SELECT left_record_id, right_record_id, confidence, match_type FROM reconciliation_matches
WHERE job_id = :job_id ORDER BY left_record_id
""")


def test_run_reconciliation_job_writes_the_same_rows(seeded):
    with seeded.connect() as conn:
        job = conn.execute(text("SELECT id, project_id FROM reconciliation_jobs ORDER BY id LIMIT 1")).one()
        with assert_max_queries(seeded, 100) as slow_log:
            slow = naive.run_reconciliation_job(conn, project_id=job.project_id, job_id=job.id)
        slow_rows = (conn.execute(RESULT_ROWS, {"job_id": job.id}).all(), conn.execute(MATCH_ROWS, {"job_id": job.id}).all())
        with assert_max_queries(seeded, 7) as fast_log:  # job, records, 2 deletes, <= 2 bulk inserts, finish
            fast = batched.run_reconciliation_job(conn, project_id=job.project_id, job_id=job.id)
        fast_rows = (conn.execute(RESULT_ROWS, {"job_id": job.id}).all(), conn.execute(MATCH_ROWS, {"job_id": job.id}).all())
        status = conn.execute(text("SELECT status, total_records FROM reconciliation_jobs WHERE id = :j"), {"j": job.id}).one()
    assert slow == fast
    assert slow_rows == fast_rows
    assert fast["results_written"] == len(fast_rows[0]) and fast["results_written"] > 0
    assert len(slow_log) == 5 + fast["results_written"] + fast["matches_written"]
    assert len(fast_log) == 5 + (fast["results_written"] > 0) + (fast["matches_written"] > 0)
    assert tuple(status) == ("completed", fast["total_records"])


def test_run_reconciliation_job_rejects_a_job_of_another_project(seeded):
    with seeded.connect() as conn:
        with pytest.raises(ValueError, match="no reconciliation job 1 in project -1"):
            batched.run_reconciliation_job(conn, project_id=-1, job_id=1)


@pytest.mark.parametrize(("page", "per_page", "exc"), [(0, 20, ValueError), (1, 0, ValueError), (1, 5000, ValueError), ("1", 20, TypeError)])
def test_bad_pages(seeded, page, per_page, exc):
    with seeded.connect() as conn:
        with pytest.raises(exc):
            batched.list_users(conn, page=page, per_page=per_page)


_QUERIES = st.one_of(st.sampled_from(["", "a", "e", "zzzz-none", "%", "_", "\\", "Pro", "an"]),
                     st.text(alphabet="abcdeo %_\\", max_size=4))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=_QUERIES, page=st.integers(1, 40), per_page=st.integers(1, 60))
def test_search_projects_property(seeded, query, page, per_page):
    with seeded.connect() as conn:
        assert naive.search_projects(conn, query=query, page=page, per_page=per_page) == \
            batched.search_projects(conn, query=query, page=page, per_page=per_page)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(page=st.integers(1, 30), per_page=st.integers(1, 60))
def test_list_users_property(seeded, page, per_page):
    with seeded.connect() as conn:
        slow = naive.list_users(conn, page=page, per_page=per_page)
        assert slow == batched.list_users(conn, page=page, per_page=per_page)
        users = conn.execute(text("SELECT count(*) FROM users")).scalar_one()
    assert len(slow["items"]) == max(0, min(per_page, users - (page - 1) * per_page))
