"""``kit demo`` end to end at scale tiny, as a user runs it: own servers, seed, three notebooks, reports."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kit import report
from kit.charts import browser
from kit.demo import run as demo

KIT = str(Path(sys.executable).parent / "kit")
ARTIFACTS = Path(__file__).resolve().parents[1] / ".kit" / "artifacts" / "report"  # the README shows demo.png


@pytest.fixture
def demo_env(tmp_path):
    env = {**os.environ, "KIT_HOME": str(tmp_path / "home")}
    for name in ("KIT_DATABASE_URL", "DATABASE_URL", "KIT_REDIS_URL", "REDIS_URL"):
        env.pop(name, None)
    yield env
    subprocess.run([KIT, "services", "down", "--purge"], env=env, capture_output=True, timeout=60)


def _demo(env, runs: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([KIT, "demo", "--scale", "tiny", "--users", "4", "--seconds", "1", "--processes", "0", "--runs-dir", str(runs)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def test_demo_writes_notebooks_offline_html_and_summary_then_reuses_the_seed(demo_env, tmp_path, chromium):
    runs = tmp_path / "runs"
    first = _demo(demo_env, runs)
    assert "seeding the demo database at scale tiny" in first.stdout
    (folder,) = runs.iterdir()
    names = sorted(p.name for p in folder.iterdir())
    for stem in ("01_audit", "02_apply_fixes", "03_report"):
        assert f"{stem}.ipynb" in names and f"{stem}.html" in names
    _assert_reports_draw_their_charts_offline(folder, chromium)
    _assert_the_report_reads_in_a_minute(folder, chromium)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["figures"]["workload.statements"] >= 5  # the mix ran before 01: the audit sees a workload
    assert summary["parameters"] == {"scale": "tiny", "apply": True, "load_users": 4, "load_seconds": 1.0,
                                     "load_processes": 0}
    assert [n["status"] for n in summary["notebooks"]] == ["ok", "ok", "ok"]
    assert summary["figures"]["rows_total"] > 0
    assert f"reports: {folder}/" in first.stdout

    # a second demo would only run the notebooks again: its first step, on the servers the demo left
    said = []
    demo.prepare(scale="tiny", seed=42, home=Path(demo_env["KIT_HOME"]), say=said.append)
    assert "demo database already seeded at scale tiny (seed 42)" in said
    assert any(line.startswith("reset the demo database: dropped") for line in said), said


def _assert_reports_draw_their_charts_offline(folder: Path, chromium) -> None:
    """Each HTML report opened in chromium without internet draws a chart for every figure its
    executed notebook showed; the report (03) has charts at all."""
    drawn = {}
    for html in sorted(folder.glob("0*.html")):
        check = browser.check_report(html, chromium)
        expected = browser.figure_cells(html.with_suffix(".ipynb"))
        assert check.problems(expected_cells=expected) == []
        assert [c.cell for c in check.drawn] == expected
        drawn[html.stem] = len(check.drawn)
    assert drawn["03_report"] > 0, drawn
    audit_html = (folder / "01_audit.html").read_text(encoding="utf-8")
    assert "kit.record(" not in audit_html and "assert " not in audit_html  # checks' code hidden, not outputs
    assert "read_workload" in audit_html  # the analysis code stays


def _assert_the_report_reads_in_a_minute(folder: Path, chromium) -> None:
    """report.html: charts drawn, the verdict and the top findings on the first screen at 1280 px, no
    code, no sideways scroll, statements by readable labels; its first screen kept for the README."""
    check = report.check(folder / report.REPORT_FILE, chromium, screenshot=ARTIFACTS / "demo.png")
    assert check.problems() == []
    assert check.top_rows >= 5 and check.top_rows_first_screen >= 3
    assert len(check.charts.drawn) >= 3  # share, timings, load
    facts = report.read_run(folder)
    assert facts.declared_applied and len(facts.declared_applied) == facts.indexes["applied"] == 23
    assert all(re.fullmatch(r"[A-Z]+( \S+( \+\d+)?)? #\d+", s.label) for s in facts.statements), facts.statements
    assert (ARTIFACTS / "demo.png").stat().st_size > 10_000
