"""The one-page report: human units, readable statement names, ``kit report RUN`` (and ``--pdf``) on a
real run folder, a failed run's report says so. The report of a demo run and of a run on a database
the kit did not create are opened in chromium by test_demo and test_loop_other_owner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nbformat
import pytest
from plotly.offline import get_plotlyjs

from kit import report
from kit.errors import NotebookFailed
from kit.report import units
from kit.runs import runner
from kit.sqltext.label import short_name

KIT = str(Path(sys.executable).parent / "kit")
PLOTLY_BANNER = get_plotlyjs()[:60]


@pytest.mark.parametrize(
    ("value", "shown"),
    [(None, "—"), (512, "512 B"), (619060583, "590.4 MB"), (3 * 2**30, "3.0 GB"), (-2048, "−2.0 kB")],
)
def test_sizes_in_human_units(value, shown):
    assert units.size(value) == shown


@pytest.mark.parametrize(
    ("ms", "shown"),
    [(0.0456, "46 µs"), (12.345, "12.3 ms"), (1530, "1.53 s"), (90_000, "1.5 min"), (7_200_000, "2 h")],
)
def test_durations_in_human_units(ms, shown):
    assert units.duration(ms) == shown


def test_counts_ratios_and_ages():
    assert [units.count(n) for n in (950, 12_345, 4_500_000)] == ["950", "12.3k", "4.5M"]
    assert [units.speedup(x) for x in (2.4, 0.5, None)] == ["2.4× faster", "2× slower", "—"]
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    ages = [units.ago(now - timedelta(seconds=s), now) for s in (10, 600, 3 * 3600, 5 * 86_400)]
    assert ages == ["just now", "10 min ago", "3 h ago", "5 days ago"]
    assert units.moment(now) == "2026-12-06 12:00 UTC"


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("SELECT * FROM orders o JOIN customers c ON c.id = o.cid WHERE o.id = $1", "SELECT orders +1"),
        ("UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2", "UPDATE pgbench_branches"),
        ('INSERT INTO "Sales Ops"."Order" (id) VALUES ($1)', "INSERT Order"),
        ("select count(*) from a where b in (select c from d)", "SELECT a +1"),
        ("WITH page AS (SELECT * FROM projects WHERE name ILIKE $1 ORDER BY created_at DES", "WITH projects"),
        ("COMMIT", "COMMIT"),
        ("", "OTHER"),
    ],
)
def test_a_statement_is_named_by_its_kind_and_table(query, name):
    assert short_name(query) == name  # a truncated text (the WITH) falls back to the tables it names


def _notebook(path: Path, *cells: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell("x = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, *map(nbformat.v4.new_code_cell, cells)]
    nbformat.write(nb, str(path))


@pytest.fixture(scope="module")
def a_run(tmp_path_factory) -> Path:
    """A run of one notebook without a database (no URL, a kit home with no servers): the report has
    nothing but the run to say."""
    folder = tmp_path_factory.mktemp("nb")
    _notebook(folder / "a.ipynb", "import kit\nkit.record('double', x * 2)")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KIT_HOME", str(folder / "home"))
        for name in ("KIT_DATABASE_URL", "DATABASE_URL"):
            mp.delenv(name, raising=False)
        run = runner.run(notebooks_dir=folder, notebooks=("a.ipynb",), runs_dir=folder / "runs", progress=False)
    return run.folder


def test_every_run_ends_with_its_report_and_kit_report_writes_it_again_with_a_pdf(a_run, tmp_path):
    first = (a_run / report.REPORT_FILE).read_text(encoding="utf-8")
    assert first.count(PLOTLY_BANNER) == 1  # plotly.js embedded once: the page reads offline
    assert "no statement ran in the window" in first and "the fix loop did not run" in first  # one line each
    (a_run / report.REPORT_FILE).unlink()
    env = {**os.environ, "KIT_HOME": str(tmp_path)}
    proc = subprocess.run([KIT, "report", str(a_run), "--pdf"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"report: {a_run / report.REPORT_FILE}" in proc.stdout
    assert (a_run / "report.pdf").read_bytes()[:5] == b"%PDF-"
    facts = report.read_run(a_run)
    assert (facts.verdict, facts.statements, facts.fixes, facts.applied) == ("healthy", (), (), None)


def test_kit_report_of_a_folder_that_is_not_a_run_is_one_line_exit_2(tmp_path):
    proc = subprocess.run([KIT, "report", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"kit: error: run {tmp_path} not found (no bundle.json there") and "kit history" in line
    assert not (tmp_path / report.REPORT_FILE).exists()


def test_a_failed_run_has_a_report_that_says_incomplete(tmp_path):
    _notebook(tmp_path / "bad.ipynb", "raise RuntimeError('boom')")
    with pytest.raises(NotebookFailed):
        runner.run(notebooks_dir=tmp_path, notebooks=("bad.ipynb",), runs_dir=tmp_path / "runs", progress=False)
    (folder,) = (tmp_path / "runs").iterdir()
    facts = report.read_run(folder)
    assert (facts.verdict, facts.verdict_why) == ("incomplete", "the run failed in bad.ipynb: what follows is partial")
    page = (folder / report.REPORT_FILE).read_text(encoding="utf-8")
    assert "Incomplete" in page and "boom" not in page  # the error is in the notebook, not the summary page
    assert json.loads((folder / "bundle.json").read_text())["status"] == "failed"
