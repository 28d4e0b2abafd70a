from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from kit.charts import trends as charts_trends
from kit.errors import ConfigError
from kit.store import history
from kit.store.evidence import SCHEMA_VERSION, Bundle

A, B = "postgresql://u@h:5432/a", "postgresql://u@h:5432/b"


def _write(runs, run, target, figures, findings=(), scale="tiny", status="ok"):
    folder = runs / run
    folder.mkdir(parents=True)
    bundle = {"schema": SCHEMA_VERSION, "run": run, "created_at": f"2026-01-0{run[-1]}T00:00:00+00:00",
              "status": status, "target": target,
              "parameters": {"scale": scale}, "notebooks": [{"name": "01_audit.ipynb", "status": "ok"}],
              "figures": figures, "derived": {},
              "findings": [{"kind": k, "subject": s, "severity": "high"} for k, s in findings]}
    (folder / history.BUNDLE_FILE).write_text(json.dumps(bundle))
    return bundle


@pytest.fixture
def runs(tmp_path):
    runs = tmp_path / "runs"
    _write(runs, "20260101T000000Z-1", A, {"p95_ms": 100.0, "p95_ms_lo": 90.0, "p95_ms_hi": 110.0, "label": "x"},
           [("missing_indexes", "idx_a")])
    _write(runs, "20260101T000000Z-2", B, {"p95_ms": 7.0})
    _write(runs, "20260101T000000Z-3", A, {"p95_ms": 150.0, "p95_ms_lo": 140.0, "p95_ms_hi": 160.0, "rows": 5},
           [("missing_indexes", "idx_b"), ("n_plus_one", "fp")], scale="demo")
    (runs / "20260101T000000Z-4").mkdir()  # crashed before its bundle
    return runs


def test_list_runs_per_target(runs):
    listed = history.list_runs(runs)
    assert listed["run"].str[-1].tolist() == ["1", "2", "3", "4"]
    assert listed["target"].tolist()[:3] == [A, B, A]
    assert listed["status"].tolist() == ["ok", "ok", "ok", "no bundle"]
    assert listed["findings"].tolist() == [1, 0, 2, 0]
    assert history.list_runs(runs / "nothing").empty


def test_previous_bundle_is_the_same_targets(runs):
    assert history.previous_bundle(runs, target=A, before="20260101T000000Z-3").run == "20260101T000000Z-1"
    assert history.previous_bundle(runs, target=B, before="20260101T000000Z-3").run == "20260101T000000Z-2"
    assert history.previous_bundle(runs, target=A, before="20260101T000000Z-1") is None


def test_trend_frame_folds_ci_companions(runs):
    trend = history.trend_frame(runs, target=A)
    assert sorted(set(trend["figure"])) == ["p95_ms", "rows"]  # label is not numeric, _lo/_hi fold in
    p95 = trend[trend["figure"] == "p95_ms"]
    assert p95[["value", "lo", "hi"]].values.tolist() == [[100.0, 90.0, 110.0], [150.0, 140.0, 160.0]]
    assert p95["scale"].tolist() == ["tiny", "demo"]
    assert history.trend_frame(runs)["target"].unique().tolist() == [A]  # default: the latest bundled run's
    assert len(history.trend_frame(runs, target=A, last=1)["run"].unique()) == 1


def test_compare_with_confidence_intervals_and_findings(runs):
    a = history.read_bundle(runs / "20260101T000000Z-1")
    b = history.read_bundle(runs / "20260101T000000Z-3")
    result = history.compare(a, b)
    row = result.figures.set_index("figure").loc["p95_ms"]
    assert (row["a"], row["b"], row["change"], row["change_pct"]) == (100.0, 150.0, 50.0, 50.0)
    assert (row["a_lo"], row["a_hi"], row["b_lo"], row["b_hi"], row["significant"]) == (90.0, 110.0, 140.0, 160.0, True)
    assert result.changed()["figure"].tolist() == ["p95_ms"]  # rows only exists in b: no change to show
    assert result.findings.values.tolist() == [["missing_indexes", "idx_b", "new"], ["n_plus_one", "fp", "new"],
                                               ["missing_indexes", "idx_a", "gone"]]
    assert history.finding_changes(a, b) == {"new_missing_indexes": 1.0, "gone_missing_indexes": 1.0,
                                             "new_n_plus_one": 1.0, "gone_n_plus_one": 0.0}
    assert history.finding_changes(None, b) == {}


def test_overlapping_intervals_are_not_significant():
    at = datetime(2026, 1, 1, tzinfo=UTC)
    a = Bundle(run="a", created_at=at, status="ok", figures={"x": 10.0, "x_lo": 8.0, "x_hi": 12.0})
    b = Bundle(run="b", created_at=at, status="ok", figures={"x": 11.0, "x_lo": 9.0, "x_hi": 13.0})
    result = history.compare(a, b)
    assert result.figures["significant"].tolist() == [False]
    assert result.changed().empty


def test_resolve_run(runs):
    assert history.resolve_run("latest", runs_dir=runs).name == "20260101T000000Z-3"
    assert history.resolve_run("previous", runs_dir=runs).name == "20260101T000000Z-2"
    assert history.resolve_run("20260101T000000Z-1", runs_dir=runs) == runs / "20260101T000000Z-1"
    assert history.resolve_run(runs / "20260101T000000Z-2") == runs / "20260101T000000Z-2"
    with pytest.raises(ConfigError, match="run nope not found"):
        history.resolve_run("nope", runs_dir=runs)
    with pytest.raises(ConfigError, match="no bundle.json in .*Z-4: not a finished kit run"):
        history.read_bundle(runs / "20260101T000000Z-4")


def test_trends_for_a_target_and_with_no_runs(runs, tmp_path, monkeypatch):
    monkeypatch.setenv("KIT_DATABASE_URL", "postgresql://u:secret@h:5432/a")
    found = history.trends(runs, last=10)
    assert (found.target, found.runs["run"].str[-1].tolist()) == (A, ["1", "3"])
    assert found.last.a == "20260101T000000Z-1" and found.changes()["figure"].tolist() == ["p95_ms"]
    assert found.message == f"2 run(s) of {A} in {runs}"
    fig = charts_trends.trend_figure(found.trend)
    assert [t.name for t in fig.data] == ["p95_ms", "rows"]
    assert list(fig.data[0].error_y.array) == [10.0, 10.0]
    assert list(charts_trends.comparison_figure(found.last).data[0].y) == ["p95_ms"]
    monkeypatch.chdir(tmp_path)
    empty = history.trends("elsewhere", last=10)
    assert empty.runs.empty and empty.last is None and empty.changes().empty and empty.findings().empty
    assert empty.message.startswith("no runs yet for postgresql://u@h:5432/a in ")
    assert charts_trends.trend_figure(empty.trend).layout.title.text == "No runs yet"


def test_locate_runs_dir_prefers_the_run_in_progress(tmp_path, monkeypatch):
    (tmp_path / "runs" / "r1").mkdir(parents=True)
    monkeypatch.setenv("KIT_RUN_DIR", str(tmp_path / "runs" / "r1"))
    monkeypatch.chdir(tmp_path / "runs" / "r1")
    assert history.locate_runs_dir("runs") == (tmp_path / "runs").resolve()
    monkeypatch.delenv("KIT_RUN_DIR")
    (tmp_path / "nb").mkdir()
    monkeypatch.chdir(tmp_path / "nb")
    assert history.locate_runs_dir("runs") == (tmp_path / "runs").resolve()  # the parent's, as from notebooks/
    assert history.locate_runs_dir(tmp_path / "x") == tmp_path / "x"


def test_interrupted_and_failed_runs_are_listed_and_never_a_baseline(runs, monkeypatch, capsys):
    from kit.cli import main

    _write(runs, "20260101T000000Z-5", A, {"p95_ms": 900.0}, [("missing_indexes", "idx_c")], status="interrupted")
    _write(runs, "20260101T000000Z-6", A, {"p95_ms": 800.0}, status="failed")
    listed = history.list_runs(runs)
    assert listed["status"].tolist() == ["ok", "ok", "ok", "no bundle", "interrupted", "failed"]
    assert history.previous_bundle(runs, target=A, before="20260101T000000Z-7").run == "20260101T000000Z-3"
    assert history.trend_frame(runs, target=A)["run"].unique().tolist() == ["20260101T000000Z-1", "20260101T000000Z-3"]
    monkeypatch.setenv("KIT_DATABASE_URL", A)
    found = history.trends(runs, last=10)
    assert found.runs["status"].tolist() == ["ok", "ok", "interrupted", "failed"]  # listed
    assert (found.last.a, found.last.b) == ("20260101T000000Z-1", "20260101T000000Z-3")  # compared: the ok ones
    assert main(["history", "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"Z-5 +interrupted ", out) and re.search(r"Z-6 +failed ", out) and re.search(r"Z-4 +no bundle ", out)
    assert out.rstrip().endswith("runs not ok (interrupted, failed, no bundle: not finished) are never a baseline: "
                                 "the gate, the trends and the next run compare with the last run that finished ok")
