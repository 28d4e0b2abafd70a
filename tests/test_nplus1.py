from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import text

from kit.capture.nplus1 import find_n_plus_one, link_pg_stat_statements, suggest_fix
from kit.capture.recorder import capture
from kit.charts.nplus1 import latency_figure, queries_per_request_figure

COUNT = text("SELECT count(*) FROM pg_class WHERE relpages = :n")
ONE = text("SELECT 1")


def _loop(engine, repeats_per_unit):
    with engine.connect() as conn, capture(engine, call_sites=True) as log:
        for repeats in repeats_per_unit:
            with log.unit("endpoint"):
                conn.execute(ONE)
                for n in range(repeats):
                    conn.execute(COUNT, {"n": n})
    return log


def test_finds_the_repeated_fingerprint_per_unit(fresh_engine):
    report = find_n_plus_one(_loop(fresh_engine, [6, 8]), min_repeats=5)
    assert len(report) == 1
    f = report.findings[0]
    assert (f.unit, f.repeats, f.units) == ("endpoint", 8, 2)
    assert f.normalized == "SELECT count(*) FROM pg_class WHERE relpages = $1"
    assert f.call_site.endswith("in _loop")
    assert f.suggestion.startswith("fetch all relpagess of the page in one query with relpages = ANY(...)")
    assert f.summary == "endpoint endpoint: 8 calls of SELECT count(*) FROM pg_class WHERE relpages = $1 per request"
    assert (report.statements, report.units) == (16, 2)
    assert list(report.to_frame()["repeats"]) == [8]


def test_thresholds_and_allowlist(fresh_engine):
    log = _loop(fresh_engine, [4])
    assert len(find_n_plus_one(log, min_repeats=5)) == 0
    assert len(find_n_plus_one(log, min_repeats=4)) == 1
    assert len(find_n_plus_one(log, min_repeats=4, min_total_ms=1e9)) == 0
    fingerprint = find_n_plus_one(log, min_repeats=4).findings[0].fingerprint
    assert len(find_n_plus_one(log, min_repeats=4, allowlist=[fingerprint])) == 0
    with pytest.raises(ValueError):
        find_n_plus_one(log, min_repeats=1)


def test_links_to_pg_stat_statements(fresh_engine):
    log = _loop(fresh_engine, [7])
    report = link_pg_stat_statements(find_n_plus_one(log), fresh_engine)
    f = report.findings[0]
    assert f.pgss_calls >= 7
    assert f.pgss_mean_ms > 0


@pytest.mark.parametrize(("sql", "start"), [
    ("INSERT INTO reconciliation_results (job_id) VALUES (%(j)s)", "insert the rows into reconciliation_results in one round trip"),
    ("UPDATE projects SET name = %(n)s WHERE id = %(id)s", "update projects in one statement with id = ANY(...)"),
    ("SELECT * FROM users WHERE id = %(id)s", "load the rows of users for all ids at once with id = ANY(...)"),
    ("SELEC broken", "run it once for the whole unit of work"),
])
def test_suggestions(sql, start):
    assert suggest_fix(sql).startswith(start)


def test_figures_from_measured_frames():
    df = pd.DataFrame({
        "implementation": ["naive", "naive", "batched", "batched"],
        "endpoint": ["search_projects", "list_users"] * 2,
        "queries": [41, 21, 1, 1], "ms": [80.0, 20.0, 3.0, 2.0],
    })
    bars = queries_per_request_figure(df)
    assert [list(t.y) for t in bars.data[:2]] == [[41, 21], [1, 1]]
    assert list(bars.data[2].y) == [41, 21]
    boxes = latency_figure(df)
    assert [t.name for t in boxes.data] == ["naive", "batched", "naive", "batched"]
    assert len(boxes.layout.shapes) == 4
