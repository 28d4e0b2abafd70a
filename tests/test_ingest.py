"""kit.demo.services.ingest: COPY streaming into the throwaway PostgreSQL, malformed rows, concurrency."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import text

from kit.db.engine import make_engine
from kit.demo.metrics import KitMetrics
from kit.demo.services.ingest import compare_ingest, generate_csv, ingest_file, ingest_files

COUNT = text("SELECT count(*) FROM reconciliation_records")


@pytest.fixture(scope="module")
def engine(tiny_module_url):
    """A database seeded at scale tiny (300 projects, 900 data sources), shared by this module."""
    engine = make_engine(tiny_module_url)
    yield engine
    engine.dispose()


def _count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(COUNT).scalar_one()


def test_generator_is_deterministic(tmp_path):
    a = generate_csv(tmp_path / "a.csv", rows=500, seed=7)
    b = generate_csv(tmp_path / "b.csv", rows=500, seed=7)
    c = generate_csv(tmp_path / "c.csv", rows=500, seed=8)
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    assert digest(a) == digest(b) != digest(c)
    lines = a.read_text().splitlines()
    assert len(lines) == 501
    assert lines[0] == "project_id,data_source_id,source_system,external_id,amount,currency,transaction_date,status"
    sized = generate_csv(tmp_path / "s.csv", target_bytes=50_000)
    assert 50_000 <= sized.stat().st_size < 50_200


def test_file_streams_in_small_chunks_and_commits(engine, tmp_path):
    before = _count(engine)
    path = generate_csv(tmp_path / "ok.csv", rows=2_000, seed=1)
    load = ingest_file(engine, path, chunk_size=1000)  # many chunks, rows split across them
    assert (load.rows, load.error, load.bytes) == (2_000, None, path.stat().st_size)
    assert _count(engine) == before + 2_000


def test_malformed_row_reports_file_and_line_and_keeps_nothing(engine, tmp_path):
    before = _count(engine)
    path = generate_csv(tmp_path / "bad.csv", rows=3_000, seed=2, malformed_lines=[2_500])
    load = ingest_file(engine, path, chunk_size=8192)
    assert load.rows == 0
    assert load.line == 2_500
    assert load.error.startswith("bad.csv line 2500: invalid input syntax for type numeric")
    assert _count(engine) == before  # rows 2..2499 were sent, and rolled back


def test_concurrent_files_fail_alone(engine, tmp_path):
    before = _count(engine)
    paths = [generate_csv(tmp_path / f"f{i}.csv", rows=1_000, seed=10 + i) for i in range(4)]
    paths.append(generate_csv(tmp_path / "broken.csv", rows=1_000, seed=20, malformed_lines=[3]))
    metrics = KitMetrics()
    result = ingest_files(engine, paths, chunk_size=64 * 1024, concurrency=5, metrics=metrics)
    assert [f.rows for f in result.files] == [1_000, 1_000, 1_000, 1_000, 0]
    assert result.rows == 4_000
    assert len(result.errors) == 1 and result.errors[0].startswith("broken.csv line 3:")
    assert _count(engine) == before + 4_000
    assert metrics.registry.get_sample_value("file_uploads_active") == 0.0
    assert list(result.to_frame()["concurrency"]) == [5] * 5


def test_compare_leaves_the_table_as_found(engine, tmp_path):
    before = _count(engine)
    paths = [generate_csv(tmp_path / f"c{i}.csv", rows=500, seed=30 + i) for i in range(2)]
    frame = compare_ingest(engine, paths, chunk_sizes=(8192, 1 << 20), concurrencies=(1, 2), trials=1)
    assert list(frame["chunk"]) == ["8 KB", "1 MB", "8 KB", "1 MB"]
    assert list(frame["concurrency"]) == [1, 1, 2, 2]
    assert list(frame["rows"]) == [1_000] * 4
    assert _count(engine) == before


def test_arguments_are_checked(engine, tmp_path):
    with pytest.raises(ValueError, match="exactly one"):
        generate_csv(tmp_path / "x.csv")
    with pytest.raises(ValueError, match="chunk_size"):
        ingest_file(engine, tmp_path / "x.csv", chunk_size=0)
    with pytest.raises(ValueError, match="concurrency"):
        ingest_files(engine, [], concurrency=0)
