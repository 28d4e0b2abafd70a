"""After-commit invalidation and the cached services on real PostgreSQL + Redis."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import text

from kit.cache import MISSING, AfterCommit, CacheConfig, TieredCache
from kit.db.engine import make_engine
from kit.demo.services import batched
from kit.demo.services.cached import CachedServices


@pytest.fixture(scope="module")
def seeded_engine(tiny_module_url):
    engine = make_engine(tiny_module_url, pool_size=8)
    yield engine
    engine.dispose()


@pytest.fixture
def cache(redis_url):
    with TieredCache(redis_url=redis_url, namespace=f"s{uuid.uuid4().hex[:10]}", config=CacheConfig(ttl=60)) as c:
        yield c
        c.clear()


@pytest.fixture
def svcs(cache, seeded_engine):
    svc = CachedServices(cache, seeded_engine)
    yield svc
    svc.close()


def _first_project(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT min(id) FROM projects")).scalar_one()


def test_invalidations_run_after_commit(cache, seeded_engine):
    after = AfterCommit(seeded_engine, cache, track_tables=False)
    try:
        cache.set("x", 1)
        with seeded_engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            after.register(conn, keys=["x"])
            assert cache.get("x") == 1  # not committed yet: others still see the committed value
            conn.commit()
            assert cache.get("x") is MISSING
    finally:
        after.close()


def test_invalidations_discarded_on_rollback(cache, seeded_engine):
    after = AfterCommit(seeded_engine, cache, track_tables=False)
    try:
        cache.set("x", 1)
        with seeded_engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            after.register(conn, keys=["x"])
            conn.rollback()
            conn.execute(text("SELECT 1"))
            conn.commit()
        assert cache.get("x") == 1
    finally:
        after.close()


def test_tables_written_invalidate_their_tag(cache, seeded_engine):
    """A write nobody registered still invalidates entries tagged with the table it touched."""
    after = AfterCommit(seeded_engine, cache)
    pid = _first_project(seeded_engine)
    try:
        cache.set("by-table", 1, tags=["table:projects"])
        cache.set("other", 2, tags=["table:users"])
        with seeded_engine.begin() as conn:
            conn.execute(text("UPDATE projects SET description = description WHERE id = :id"), {"id": pid})
        assert (cache.get("by-table"), cache.get("other")) == (MISSING, 2)
    finally:
        after.close()


def test_cached_services_equal_batched(svcs, seeded_engine):
    pid = _first_project(seeded_engine)
    with seeded_engine.connect() as conn:
        for _ in range(2):
            assert svcs.get_project(conn, pid) == batched.get_project(conn, pid)
            assert svcs.get_project(conn, -1) is None
            assert svcs.list_projects(conn, page=1, per_page=20) == batched.list_projects(conn, page=1, per_page=20)
            assert svcs.list_users(conn, page=2, per_page=5) == batched.list_users(conn, page=2, per_page=5)
            assert (svcs.get_reconciliation_jobs(conn, project_id=pid)
                    == batched.get_reconciliation_jobs(conn, project_id=pid))
    assert svcs.cache.stats.get("db", "loads") == 5
    assert svcs.cache.stats.get("l1", "hits") == 5
    assert svcs.cache.l2.get("projects:list:1:20") == batched.list_projects(seeded_engine.connect(), page=1, per_page=20)


@pytest.mark.parametrize("safety_net", [True, False])
def test_update_project_invalidates_project_and_lists(cache, seeded_engine, safety_net):
    svc = CachedServices(cache, seeded_engine, safety_net=safety_net)
    pid = _first_project(seeded_engine)
    try:
        with seeded_engine.connect() as conn:
            svc.get_project(conn, pid)
            svc.list_projects(conn, page=1, per_page=100)
            new_name = f"renamed-{uuid.uuid4().hex[:6]}"
            svc.update_project(conn, pid, name=new_name)
            assert svc.get_project(conn, pid)["name"] == new_name
            names = {p["id"]: p["name"] for p in svc.list_projects(conn, page=1, per_page=100)["items"]}
            assert names.get(pid, new_name) == new_name
    finally:
        svc.close()


def test_without_invalidation_reads_are_stale(cache, seeded_engine):
    """The seed's bug, reproduced on purpose: no invalidation on update."""
    svc = CachedServices(cache, seeded_engine, invalidate=False)
    pid = _first_project(seeded_engine)
    with seeded_engine.connect() as conn:
        before = svc.get_project(conn, pid)["name"]
        svc.update_project(conn, pid, name=f"stale-{uuid.uuid4().hex[:6]}")
        assert svc.get_project(conn, pid)["name"] == before


def test_reads_inside_a_writing_transaction_bypass_the_cache(svcs, seeded_engine):
    pid = _first_project(seeded_engine)
    with seeded_engine.connect() as conn:
        committed = svcs.get_project(conn, pid)
        conn.execute(text("UPDATE projects SET name = 'uncommitted' WHERE id = :id"), {"id": pid})
        assert svcs.get_project(conn, pid)["name"] == "uncommitted"
        conn.rollback()
    assert svcs.cache.get(f"project:{pid}") == committed


def test_no_stale_read_after_commit_in_the_writers_process(svcs, seeded_engine):
    """Writers and readers in threads; a read that starts after a commit never sees an older name."""
    pid = _first_project(seeded_engine)
    committed = {"version": 0}
    stale, reads, stop = [], [0], threading.Event()

    def reader():
        with seeded_engine.connect() as conn:
            while not stop.is_set():
                floor = committed["version"]
                got = int(svcs.get_project(conn, pid)["name"].rsplit("-", 1)[-1])
                conn.commit()
                reads[0] += 1
                if got < floor:
                    stale.append((floor, got))

    with seeded_engine.connect() as conn:
        svcs.update_project(conn, pid, name="v-0")
    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    with seeded_engine.connect() as conn:
        for version in range(1, 151):
            svcs.update_project(conn, pid, name=f"v-{version}")
            committed["version"] = version  # update_project returned: committed and invalidated
    while reads[0] < 10_000:
        threading.Event().wait(0.01)
    stop.set()
    for t in threads:
        t.join()
    assert stale == []
    assert reads[0] >= 10_000
    assert svcs.cache.stats.get("l1", "hits") > 1000
