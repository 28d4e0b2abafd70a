"""An index on a partitioned table on the safe path: each partition's concurrently, the parent's ON
ONLY, each attached; valid at the end, dropped whole, an interrupted sequence repaired, fixes.sql
spelling out the same steps (real PostgreSQL)."""

from __future__ import annotations

import subprocess

import psycopg
import pytest

from kit.config import libpq_url
from kit.db.engine import make_engine
from kit.indexes import apply_indexes, parse_index_sql
from kit.indexes.apply import drop_index
from kit.indexes.partitioned import attached, child_name, statements

INDEX = "CREATE INDEX kit_events_account_id_created_at_idx ON public.events (account_id, created_at)"
STATE = """SELECT i.relname, x.indisvalid, obj_description(i.oid, 'pg_class') LIKE 'dbperf-kit build %'
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
WHERE t.relname LIKE 'events%' ORDER BY 1"""


def test_a_partitions_index_name_is_plain_and_short():
    assert child_name("kit_events_account_id_idx", "events_m1") == "kit_events_account_id_idx_events_m1"
    assert child_name("kit_e_idx", 'Events "M1"\n') == "kit_e_idx_events_m1"
    long = child_name("kit_" + "x" * 58, "events_2024_01")
    assert len(long.encode()) == 63 and long != child_name("kit_" + "x" * 58, "events_2024_02")


@pytest.fixture
def events(fresh_db_url):
    """events partitioned by quarter, the first quarter partitioned again by month."""
    with psycopg.connect(libpq_url(fresh_db_url), autocommit=True) as conn:
        conn.execute("CREATE TABLE events (id bigint, account_id int, created_at timestamptz NOT NULL) "
                     "PARTITION BY RANGE (created_at)")
        conn.execute("CREATE TABLE events_q1 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2024-04-01') "
                     "PARTITION BY RANGE (created_at)")
        for month in (1, 2, 3):
            conn.execute(f"CREATE TABLE events_q1_m{month} PARTITION OF events_q1 FOR VALUES FROM "
                         f"('2024-{month:02d}-01') TO ('2024-{month + 1:02d}-01')")
        conn.execute("CREATE TABLE events_q2 PARTITION OF events FOR VALUES FROM ('2024-04-01') TO ('2024-07-01')")
        conn.execute("INSERT INTO events SELECT g, g % 100, timestamptz '2024-01-01' + g * interval '1 minute' "
                     "FROM generate_series(1, 200000) g")
    return fresh_db_url


def _state(url):
    with psycopg.connect(libpq_url(url)) as conn:
        return conn.execute(STATE).fetchall()


def test_an_index_on_a_partitioned_table_is_built_partition_by_partition(events):
    (spec,) = parse_index_sql(INDEX)
    engine = make_engine(events)
    try:
        result = apply_indexes(engine, [spec], apply=True, progress=None, out=None, sample_s=0)
    finally:
        engine.dispose()
    assert result.failed == [] and result.names("applied") == [spec.name]
    state = _state(events)
    assert len(state) == 1 + 1 + 3 + 1  # the parent, events_q1's own, its 3 months', events_q2's
    assert all(valid for _name, valid, _marked in state)
    marked = {name for name, _valid, is_marked in state if is_marked}
    assert spec.name in marked and child_name(child_name(spec.name, "events_q1"), "events_q1_m2") in marked
    with psycopg.connect(libpq_url(events)) as conn:
        assert len(attached(conn, "public", spec.name)) == 5
    drop_index(events, "public", spec.name)  # a revert: plain DROP INDEX drops the tree
    assert _state(events) == []


def test_an_interrupted_sequence_is_repaired_by_the_next_apply(events):
    """Two partitions' indexes built, the parent's made ON ONLY, nothing attached: INVALID."""
    (spec,) = parse_index_sql(INDEX)
    with psycopg.connect(libpq_url(events), autocommit=True) as conn:
        conn.execute(f"CREATE INDEX {child_name(spec.name, 'events_q2')} ON events_q2 (account_id, created_at)")
        conn.execute(f"CREATE INDEX {spec.name} ON ONLY events (account_id, created_at)")
    assert (spec.name, False, None) in _state(events)
    engine = make_engine(events)
    try:
        result = apply_indexes(engine, [spec], apply=True, progress=None, out=None, sample_s=0)
    finally:
        engine.dispose()
    assert result.names("applied") == [spec.name] and result.steps[0].state_before == "invalid"
    assert all(valid for _name, valid, _marked in _state(events)) and len(_state(events)) == 6


def test_fixes_sql_spells_out_the_steps_and_psql_runs_them(events, tmp_path):
    (spec,) = parse_index_sql(INDEX)
    with psycopg.connect(libpq_url(events)) as conn:
        steps = statements(conn, spec)
    assert [s.split(" ON ")[0] for s in steps[:3]] == ["CREATE INDEX CONCURRENTLY IF NOT EXISTS "
                                                       + child_name(child_name(spec.name, "events_q1"), f"events_q1_m{m}")
                                                       for m in (1, 2, 3)]
    assert sum(" ON ONLY " in s for s in steps) == 2 and sum("ATTACH PARTITION" in s for s in steps) == 5
    script = tmp_path / "steps.sql"
    script.write_text(";\n".join(steps) + ";\n")
    psql = subprocess.run(["psql", libpq_url(events), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(script)],
                          capture_output=True, text=True, timeout=120)
    assert psql.returncode == 0, psql.stderr
    assert all(valid for _name, valid, _marked in _state(events)) and len(_state(events)) == 6
