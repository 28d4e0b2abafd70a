"""``kit demo`` end to end at scale tiny, as a user runs it: own servers, seed, three notebooks, reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kit.charts import browser
from kit.demo import run as demo

KIT = str(Path(sys.executable).parent / "kit")


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
    summary = json.loads((folder / "summary.json").read_text())
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
    for html in sorted(folder.glob("*.html")):
        check = browser.check_report(html, chromium)
        expected = browser.figure_cells(html.with_suffix(".ipynb"))
        assert check.problems(expected_cells=expected) == []
        assert [c.cell for c in check.drawn] == expected
        drawn[html.stem] = len(check.drawn)
    assert drawn["03_report"] > 0, drawn
