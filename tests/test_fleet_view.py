"""The fleet view reads run folders generically: what a run recorded is counted, what it did not is
"not recorded" (pure: run folders written here in the bundle's format, no database)."""

from __future__ import annotations

import json
from pathlib import Path

from kit.fleet import charts
from kit.fleet.target import ATTEMPTS_FILE, Outcome
from kit.fleet.view import NOT_RECORDED, NOT_RUN, fleet_view
from kit.store.evidence import SCHEMA_VERSION


def _bundle(runs: Path, target: str, run: str, **extra) -> Path:
    folder = runs / target / run
    folder.mkdir(parents=True)
    content = {"schema": SCHEMA_VERSION, "run": run, "created_at": f"2026-11-{run[6:8]}T02:00:00+00:00",
               "status": "ok", "target": f"postgresql://kit@db:5432/{target}", "parameters": {},
               "notebooks": [{"name": "01_audit.ipynb", "status": "ok"}],
               "findings": [], "figures": {}, "derived": {}, **extra}
    (folder / "bundle.json").write_text(json.dumps(content), encoding="utf-8")
    return folder


def _attempt(runs: Path, target: str, status: str, run: str | None) -> None:
    outcome = Outcome(target=target, status=status, message=f"{target}: {status}", round_id="r", run=run,
                      folder=None, started_at="2026-11-30T02:00:00+00:00", seconds=1.0)
    with open(runs / target / ATTEMPTS_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(outcome.to_dict()) + "\n")


def _fleet(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    # alpha: two runs; the latest has findings, statements, index status and fixes.* figures
    _bundle(runs, "alpha", "20261129T020000Z", derived={"findings_total": 1.0})
    _bundle(runs, "alpha", "20261130T020000Z",
            findings=[{"kind": "missing_indexes", "subject": "ix_a", "severity": "high"},
                      {"kind": "missing_indexes", "subject": "ix_b", "severity": "high"},
                      {"kind": "n_plus_one", "subject": "SELECT 1", "severity": None}],
            statements={"reset": None, "basis": "since the statistics were reset",
                        "snapshot": [{"query": "SELECT a", "calls": 10, "total_ms": 60.0},
                                     {"query": "SELECT b", "calls": 5, "total_ms": 30.0},
                                     {"query": "SELECT c", "calls": 1, "total_ms": 10.0}]},
            indexes={"counts": {"applied": 21, "missing": 2}},
            figures={"fixes.planned": 3, "fixes.applied": 2, "fixes.kept": 1, "fixes.reverted": 1},
            derived={"findings_total": 3.0, "new_missing_indexes": 2.0})
    _attempt(runs, "alpha", "ok", "20261129T020000Z")
    _attempt(runs, "alpha", "regression", "20261130T020000Z")
    # beta: one run that left a fixes.json (no fixes.* figures) and recorded no statements
    folder = _bundle(runs, "beta", "20261130T020000Z", derived={"findings_total": 0.0})
    (folder / "fixes.json").write_text(json.dumps([{"verdict": "kept"}, {"verdict": "reverted"},
                                                   {"verdict": "failed"}, {"verdict": "planned"}]))
    _attempt(runs, "beta", "ok", "20261130T020000Z")
    # ghost: attempts only (its URL variable was never set), no run folder
    (runs / "ghost").mkdir()
    _attempt(runs, "ghost", "failed", None)
    # a plain `kit run` folder and the fleet's report folder are not targets
    _bundle(runs, "_fleet", "20261130T030000Z")
    (runs / "20261130T040000Z").mkdir()
    return runs


def test_every_target_side_by_side(tmp_path):
    view = fleet_view(_fleet(tmp_path), top=2)
    assert view.targets == ("alpha", "beta", "ghost")
    status = view.status.set_index("target")
    assert status["status"].to_dict() == {"alpha": "regression", "beta": "ok", "ghost": "failed"}
    assert status.loc["alpha", "runs"] == 2 and status.loc["alpha", "attempts"] == 2
    assert status.loc["alpha", "findings"] == 3 and status.loc["alpha", "new_findings"] == 2
    assert status.loc["ghost", "runs"] == 0 and str(status.loc["ghost", "findings"]) == "<NA>"
    assert view.message == "3 target(s) in " + str(tmp_path / "runs") + ": 1 regression, 1 ok, 1 failed"

    matrix = view.findings_matrix()
    assert matrix.loc["alpha"].to_dict() == {"missing_indexes": 2, "n_plus_one": 1}
    assert matrix.loc["ghost"].sum() == 0
    by_sev = view.findings.groupby("severity")["count"].sum().to_dict()
    assert by_sev == {"high": 2, "unrated": 1}

    # the top 2 statements of alpha: 60 % and 30 % of the 100 ms the database spent
    top = view.statements[view.statements["target"] == "alpha"]
    assert top["share_pct"].round(6).tolist() == [60.0, 30.0] and top["rank"].tolist() == [1, 2]
    assert status.loc["alpha", "top_share_pct"] == 90.0
    assert str(status.loc["beta", "top_share_pct"]) == "<NA>"

    assert view.indexes.set_index("state")["count"].to_dict() == {"applied": 21, "missing": 2}

    fixes = view.fixes.set_index("target")
    assert fixes.loc["alpha", ["planned", "applied", "kept", "reverted"]].tolist() == [3, 2, 1, 1]
    assert fixes.loc["alpha", "source"] == "figures"
    assert fixes.loc["beta", ["planned", "applied", "kept", "reverted", "failed"]].tolist() == [4, 2, 1, 1, 1]
    assert fixes.loc["beta", "source"] == "fixes.json"
    assert fixes.loc["ghost", "source"] == NOT_RECORDED
    assert view.fixes_table().set_index("target").loc["ghost", "kept"] == NOT_RECORDED

    trend = view.trend[view.trend["figure"] == "findings_total"]
    assert trend.groupby("target")["value"].apply(list).to_dict() == {"alpha": [1.0, 3.0], "beta": [0.0]}


def test_the_fleet_file_lists_targets_that_never_ran(tmp_path):
    fleet_file = tmp_path / "fleet.toml"
    fleet_file.write_text('[[targets]]\nname = "alpha"\nurl_env = "A"\n[[targets]]\nname = "new-db"\nurl_env = "B"\n')
    view = fleet_view(_fleet(tmp_path), fleet_file=fleet_file)
    assert view.targets == ("alpha", "new-db")
    assert view.status.set_index("target").loc["new-db", "status"] == NOT_RUN


def test_nothing_yet_is_a_message_and_empty_figures(tmp_path):
    view = fleet_view(tmp_path / "runs")
    assert view.targets == () and view.status.empty
    assert view.message.startswith("no fleet runs yet in")
    for make in (charts.findings_figure, charts.statements_figure, charts.indexes_figure, charts.fixes_figure,
                 charts.trend_figure):
        assert make(view).layout.title.text  # each says what is missing instead of failing


def test_charts_have_one_trace_per_series(tmp_path):
    view = fleet_view(_fleet(tmp_path), top=2)
    assert [t.name for t in charts.statements_figure(view).data] == ["#1", "#2"]
    assert {t.name for t in charts.indexes_figure(view).data} == {"applied", "missing"}
    assert [t.name for t in charts.fixes_figure(view).data] == ["planned", "applied", "kept", "reverted", "failed"]
    trend = charts.trend_figure(view)
    assert {t.name for t in trend.data} == {"alpha", "beta"}
    heat = charts.findings_figure(view).data[0]
    assert list(heat.y) == ["alpha", "beta", "ghost"] and list(heat.x) == ["missing_indexes", "n_plus_one"]
