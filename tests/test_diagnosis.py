"""Why each top statement is slow, on real sessions: a hot-row UPDATE under concurrent sessions is
lock waits on the same rows (no index helps), a CPU-bound SELECT beside it is not; a sort that spills
at a small work_mem is a spill, the same sort with room is not; the sampler's own cost is bounded."""

from __future__ import annotations

import threading
import time

import psycopg

from kit.config import libpq_url
from kit.db.engine import make_engine
from kit.servers import local
from kit.workload import read_workload
from kit.workload.diagnosis import diagnose_workload
from kit.workload.waits import WaitSampler, wait_class

SESSIONS = 12


def _run(dsn: str, statements: list[str], *, seconds: float, sessions: int, settings: tuple[str, ...] = ()) -> int:
    """``sessions`` threads running ``statements`` as one transaction each, in a loop, for ``seconds``."""
    done = [0]
    stop = time.monotonic() + seconds

    def work() -> None:
        with psycopg.connect(dsn) as conn:
            for setting in settings:
                conn.execute(setting)
            conn.commit()
            while time.monotonic() < stop:
                for stmt in statements:
                    conn.execute(stmt)
                conn.commit()
                done[0] += 1

    threads = [threading.Thread(target=work) for _ in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return done[0]


def _diagnosed(url: str, profile=None) -> dict[str, object]:
    engine = make_engine(url)
    try:
        work = read_workload(engine, top=10, min_calls=1)
        found = diagnose_workload(engine, work.statements, profile)
    finally:
        engine.dispose()
    return {s.text: d for s, d in zip(work.statements, found, strict=True)}


def _one(found: dict, start: str):
    (d,) = [d for text, d in found.items() if text.startswith(start)]
    return d


def test_a_hot_row_update_is_lock_waits_on_the_same_rows_and_a_cpu_bound_select_is_not(fresh_db_url):
    dsn = libpq_url(fresh_db_url)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE branches (bid int PRIMARY KEY, bbalance bigint NOT NULL)")
        conn.execute("INSERT INTO branches VALUES (1, 0)")
    hot = ["UPDATE branches SET bbalance = bbalance + 1 WHERE bid = 1", "SELECT pg_sleep(0.002)"]
    busy = ["SELECT count(*) FROM generate_series(1, 300000) g WHERE g % 7 = 3"]
    with WaitSampler(fresh_db_url) as sampler:
        side = threading.Thread(target=_run, args=(dsn, busy), kwargs={"seconds": 2.5, "sessions": 1})
        side.start()
        _run(dsn, hot, seconds=2.5, sessions=SESSIONS)
        side.join(60)
    profile = sampler.profile()
    assert profile.status == "ok" and profile.polls > 50, profile.message
    found = _diagnosed(fresh_db_url, profile)
    update = _one(found, "UPDATE branches")
    assert update.cause == "hot_rows", update
    assert "waiting on Lock/transactionid" in update.sentence and "update the same rows" in update.sentence
    assert "no index helps" in update.remedy and update.fix is None
    assert update.waits["Lock"] >= 50
    select = _one(found, "SELECT count(*) FROM generate_series")
    assert select.cause not in {"hot_rows", "lock_waits"}, select
    assert select.waits.get("Lock", 0.0) == 0.0 and select.waits["CPU"] >= 50


def test_a_sort_that_spills_is_a_spill_and_the_same_sort_with_room_is_not(pg_server):
    sort = "SELECT g FROM generate_series(1, 200000) g ORDER BY md5(g::text) LIMIT 5 OFFSET 100000"
    causes = {}
    for name, work_mem in (("spills", "64kB"), ("fits", "64MB")):
        url = local.create_database(pg_server, f"diag_{name}", replace=True)
        try:
            _run(libpq_url(url), [sort], seconds=0.5, sessions=2, settings=(f"SET work_mem = '{work_mem}'",))
            causes[name] = _one(_diagnosed(url), "SELECT g FROM generate_series")
        finally:
            local.drop_database(pg_server, f"diag_{name}")
    assert (causes["spills"].cause, causes["spills"].fix) == ("spill", "work_mem")
    assert "MB of temporary files per call" in causes["spills"].sentence
    assert causes["fits"].cause != "spill"


def test_wait_classes():
    assert [wait_class(t) for t in (None, "IO", "Lock", "LWLock", "Client", "IPC", "Timeout")] == [
        "CPU", "IO", "Lock", "LWLock", "Client", "IPC", "other"]


def test_a_sampler_on_a_server_it_cannot_reach_says_so():
    with WaitSampler(f"postgresql://nobody@127.0.0.1:{local.free_port()}/x") as sampler:
        time.sleep(0.3)
    profile = sampler.profile()
    assert profile.status == "unavailable" and "could not be sampled" in profile.message


def test_every_planted_cause_is_named_for_its_statement_and_no_other(fresh_db_url):
    """kit bench diagnose's database and workload: a hot-row counter, a spilling sort, a correlated-column
    misestimate, a lossy bitmap, a bloated table, and a primary-key lookup that has none of them."""
    from kit.benchmarks import diagnose as bench

    bench.build(fresh_db_url, rows=bench.ROWS["tiny"])
    found = bench.diagnosed(fresh_db_url, rows=bench.ROWS["tiny"])
    assert [(p["statement"], p["diagnosed"], p["named"]) for p in found["planted"]] == [
        ("UPDATE counters", "hot_rows", True),
        ("SELECT id, payload FROM events ORDER BY", "spill", True),
        ("SELECT count(*) FROM pairs p WHERE", "plan", True),
        ("SELECT count(pad) FROM wide", "plan", True),
        ("SELECT count(*) FROM ledger", "bloat", True),
    ], found["planted"]
    assert "it reads ledger, where" in found["planted"][4]["sentence"]  # 2 of 3 versions of every row dead
    assert (found["wrong_causes"], found["missed"]) == (0, 0)
    # the control is named no cause of slowness: many fast calls, or (its backends starved of CPU by a busy
    # machine: under 1,000 calls in the 6 s, or 1 ms each) the work it asks for
    assert found["control"] in {"frequency", "work"}
    assert "on (a, b, c)" in found["planted"][2]["sentence"] and "lossy" in found["planted"][3]["sentence"]
    assert found["sampler_server_pct"] > 0  # its own queries were counted (the bound is kit bench diagnose's)


def test_a_quiet_database_is_sampled_for_a_second_and_says_nothing_ran(fresh_db_url):
    from kit.workload.waits import sample_waits

    started = time.monotonic()
    profile = sample_waits(fresh_db_url, 10.0)
    assert time.monotonic() - started < 3.0
    assert profile.status == "ok" and profile.samples == {} and "no session of this database was active" in profile.message


def test_a_bloated_table_is_bloat_until_it_is_rewritten(fresh_db_url):
    """The bloat case and its negative: 150,000 rows updated once, autovacuum off (half the rows dead,
    or their space unused once a scan pruned them); still bloated after a plain VACUUM (its pages stay);
    rewritten (VACUUM FULL): no bloat."""
    dsn = libpq_url(fresh_db_url)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE ledger (id int PRIMARY KEY, flag int, amount int) WITH (autovacuum_enabled = off)")
        conn.execute("INSERT INTO ledger SELECT g, g % 4, 0 FROM generate_series(1, 150000) g")
        conn.execute("ANALYZE ledger")
        conn.execute("UPDATE ledger SET amount = amount + 1")
    _run(dsn, ["SELECT count(*) FROM ledger WHERE flag = 1"], seconds=0.3, sessions=1)
    causes = []
    for then in ("VACUUM (ANALYZE) ledger", "VACUUM (FULL, ANALYZE) ledger", None):
        time.sleep(0.6)  # the statistics of the statements before are flushed at most every 0.5 s
        d = _one(_diagnosed(fresh_db_url), "SELECT count(*) FROM ledger")
        causes.append((d.cause, d.fix))
        if then:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(then)
    assert causes[:2] == [("bloat", "vacuum")] * 2 and causes[2][0] != "bloat", causes
