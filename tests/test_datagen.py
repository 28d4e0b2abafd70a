"""kit.demo.datagen on a real throwaway PostgreSQL: exact counts, determinism, the seed platform's shapes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from psycopg import sql
from sqlalchemy import Connection, Engine, create_engine

from kit.db.engine import make_engine
from kit.errors import KitError
from kit.demo import datagen, schema

TINY = datagen.SCALES["tiny"]


@pytest.fixture
def tiny_engine(tiny_db_url: str) -> Iterator[Engine]:
    """A copy of the session's tiny database (seed 42), seeded independently of this test."""
    engine = make_engine(tiny_db_url)
    yield engine
    engine.dispose()


def _fingerprint(conn: Connection) -> dict[str, str]:
    """md5 of every table's rows in id order."""
    stmt = sql.SQL("SELECT md5(string_agg(t::text, '|' ORDER BY t.id)) FROM {} AS t")
    pg = conn.connection.driver_connection
    return {
        table: conn.exec_driver_sql(stmt.format(sql.Identifier(table)).as_string(pg)).scalar_one()
        for table in schema.TABLES
    }


def _scalar(conn: Connection, stmt: str) -> float:
    return float(conn.exec_driver_sql(stmt).scalar_one())


def test_tiny_loads_exactly_the_declared_rows(fresh_engine: Engine):
    result = datagen.seed(fresh_engine, scale="tiny", seed=42, progress=False)
    assert list(result.tables) == list(schema.TABLES)
    assert {t: load.rows for t, load in result.tables.items()} == TINY.rows
    assert result.rows_total == TINY.rows_total == 29_000
    with fresh_engine.connect() as conn:
        stats = schema.table_stats(conn).set_index("table")
        estimated = schema.table_stats(conn, exact=False).set_index("table")
        assert datagen.seeded_scale(conn) == ("tiny", 42)
    assert stats["rows"].to_dict() == TINY.rows
    assert estimated["rows"].to_dict() == TINY.rows  # ANALYZEd before commit


def test_seed_result_has_the_benchmark_shape(fresh_engine: Engine):
    result = datagen.seed(fresh_engine, scale="tiny", seed=1, progress=False)
    data = result.to_dict()
    assert list(data) == ["scale", "rows_total", "seconds", "rows_per_s", "tables"]
    assert (data["scale"], data["rows_total"]) == ("tiny", TINY.rows_total)
    assert data["rows_per_s"] == pytest.approx(TINY.rows_total / result.seconds)
    assert data["tables"]["users"] == {"rows": TINY.users, "seconds": result.tables["users"].seconds}
    frame = result.to_frame()
    assert list(frame.columns) == ["table", "rows", "seconds", "rows_per_s"]
    assert frame["rows"].sum() == TINY.rows_total


def test_same_seed_gives_the_same_data_and_another_seed_does_not(fresh_engine: Engine, tiny_engine: Engine):
    datagen.seed(fresh_engine, scale="tiny", seed=42, progress=False)
    with fresh_engine.connect() as a, tiny_engine.connect() as b:
        assert _fingerprint(a) == _fingerprint(b)
    datagen.seed(fresh_engine, scale="tiny", seed=43, progress=False)
    with fresh_engine.connect() as a, tiny_engine.connect() as b:
        other, same = _fingerprint(a), _fingerprint(b)
    assert all(other[t] != same[t] for t in schema.TABLES)


def test_reseeding_keeps_keys_indexes_and_working_identities(tiny_engine: Engine):
    with tiny_engine.begin() as conn:
        conn.exec_driver_sql("CREATE INDEX idx_users_email_lower ON users (lower(email))")
    datagen.seed(tiny_engine, scale="tiny", seed=42, progress=False)
    with tiny_engine.begin() as conn:
        indexes = conn.exec_driver_sql(
            "SELECT count(*) FILTER (WHERE indexname LIKE '%%_pkey'), "
            "       count(*) FILTER (WHERE indexname = 'idx_users_email_lower') "
            "FROM pg_indexes WHERE schemaname = 'public'"
        ).one()
        fks = _scalar(conn, "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND convalidated")
        new_id = conn.exec_driver_sql(
            "INSERT INTO users (email, first_name, last_name, role) "
            "VALUES ('new@x.io', 'N', 'U', 'viewer') RETURNING id"
        ).scalar_one()
    assert tuple(indexes) == (11, 1)
    assert fks == 17
    assert new_id == TINY.users + 1


def test_tiny_has_the_seed_platforms_shape(tiny_engine: Engine):
    with tiny_engine.connect() as conn:
        per_project = conn.exec_driver_sql(
            "SELECT count(j.id) FROM projects p LEFT JOIN reconciliation_jobs j ON j.project_id = p.id "
            "GROUP BY p.id"
        ).scalars().all()
        first_page = _scalar(conn, """
            SELECT avg((SELECT count(*) FROM reconciliation_jobs j WHERE j.project_id = p.id))
            FROM (SELECT id FROM projects ORDER BY created_at DESC, id DESC LIMIT 20) AS p""")
        top_owner = _scalar(conn, "SELECT max(n) FROM (SELECT count(*) AS n FROM projects GROUP BY owner_id) AS o")
        active = _scalar(conn, "SELECT avg(is_active::int) FROM users")
        completed = _scalar(conn, "SELECT avg((status = 'completed')::int) FROM reconciliation_jobs")
        sources = conn.exec_driver_sql(
            "SELECT min(n), avg(n) FROM (SELECT count(d.id) AS n FROM projects p "
            "LEFT JOIN data_sources d ON d.project_id = p.id GROUP BY p.id) AS s"
        ).one()
        early_jobs = _scalar(conn, """
            SELECT count(*) FROM reconciliation_jobs j JOIN projects p ON p.id = j.project_id
            WHERE j.created_at < p.created_at""")
        pairs = _scalar(conn, """
            SELECT count(*) FROM reconciliation_records a JOIN reconciliation_records b ON b.id = a.id + 1
            WHERE a.id %% 2 = 1 AND (a.external_id, a.amount, a.project_id) = (b.external_id, b.amount, b.project_id)
              AND a.data_source_id <> b.data_source_id""")
        span = conn.exec_driver_sql(
            "SELECT min(created_at)::date::text, max(created_at)::date::text FROM audit_logs"
        ).one()
        distinct_emails = _scalar(conn, "SELECT count(DISTINCT lower(email)) FROM users")
    mean = sum(per_project) / len(per_project)
    assert mean == TINY.reconciliation_jobs / TINY.projects == 20
    assert 8 <= first_page <= 60  # a page of 20 projects: ~20 jobs each on average
    assert max(per_project) >= 5 * mean  # ...with a long tail
    assert top_owner >= 5 * TINY.projects / TINY.users  # a few owners own many projects
    assert 0.85 <= active <= 0.95
    assert 0.7 <= completed <= 0.9
    assert sources[0] >= 2 and 2.5 <= float(sources[1]) <= 3.5
    assert early_jobs == 0
    assert 0.6 <= pairs / (TINY.reconciliation_records / 2) <= 0.8
    assert span[0] >= "2023-01-01" and span[1] <= "2024-12-31"
    assert distinct_emails == TINY.users


def test_seeded_scale_is_none_until_seeded(fresh_engine: Engine):
    with fresh_engine.connect() as conn:
        assert datagen.seeded_scale(conn) is None
    with fresh_engine.begin() as conn:
        schema.create_schema(conn)
    with fresh_engine.connect() as conn:
        assert datagen.seeded_scale(conn) is None


def test_unknown_scale_is_refused_before_connecting():
    engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")  # never connected
    with pytest.raises(ValueError, match=r"unknown scale 'huge'; expected one of 'tiny', 'demo', 'large'"):
        datagen.seed(engine, scale="huge", progress=False)
    with pytest.raises(TypeError, match="seed must be an int"):
        datagen.seed(engine, scale="tiny", seed="42", progress=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seed must fit in a bigint"):
        datagen.seed(engine, scale="tiny", seed=2**63, progress=False)


def test_a_session_holding_the_tables_gets_advice_not_a_hang(tiny_engine: Engine):
    with tiny_engine.connect() as other:
        other.exec_driver_sql("SELECT count(*) FROM users")  # its open transaction holds a lock
        with pytest.raises(KitError, match="another session is using them.*Commit or close it"):
            datagen.seed(tiny_engine, scale="tiny", seed=42, progress=False, lock_timeout_ms=200)
        other.rollback()
    with tiny_engine.connect() as conn:
        assert datagen.seeded_scale(conn) == ("tiny", 42)  # the failed seed changed nothing


def test_scales_grow_and_keep_the_platforms_ratios():
    tiny, demo, large = (datagen.SCALES[n] for n in ("tiny", "demo", "large"))
    assert max(demo.rows.values()) >= 1_000_000
    assert all(large.rows[t] >= 10 * demo.rows[t] for t in schema.TABLES)
    assert tiny.rows_total < 50_000
    for scale in (tiny, demo, large):
        assert scale.reconciliation_jobs == 20 * scale.projects
        assert scale.data_sources == 3 * scale.projects
    with pytest.raises(ValueError, match="data_sources >= 2 \\* projects"):
        datagen.Scale("bad", 1, 10, 5, 1, 2, 1, 1, 1, 1, 1)


def test_progress_shows_one_bar_per_table(fresh_engine: Engine, capsys: pytest.CaptureFixture[str]):
    datagen.seed(fresh_engine, scale="tiny", seed=5, progress=True)
    err = capsys.readouterr().err
    assert all(f"{table}:" in err for table in schema.TABLES)
