"""kit.charts.browser: a chart counts as shown only when chromium drew it, offline; the check tells drawn
charts from blank boxes and from figures the report lost."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from kit.charts import browser
from kit.errors import BrowserUnavailable
from kit.runs import runner
from kit.runs.notebook import PLOTLY_RENDERER

# the "lost" figure: nbconvert warns it cannot show plotly's mimetype alone, which is the point
pytestmark = pytest.mark.filterwarnings("ignore:Your element with mimetype")

BAR = "px.bar(x=['a', 'b'], y=[1, 2], title={title!r}).show()"


def _notebook(path: Path, *cells: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell("x = 1")
    params.metadata["tags"] = ["parameters"]
    setup = nbformat.v4.new_code_cell("import plotly.express as px\nimport plotly.io as pio")
    nb.cells = [params, setup, *map(nbformat.v4.new_code_cell, cells)]
    nbformat.write(nb, str(path))


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """Executed notebooks and their HTML reports from `kit run`: one with the kit's renderer, then a
    figure whose renderer the report cannot show; one with plotly.js fetched from a CDN."""
    folder = tmp_path_factory.mktemp("reports")
    _notebook(folder / "kit.ipynb",
              f"pio.renderers.default = {PLOTLY_RENDERER!r}\n" + BAR.format(title="drawn"),
              BAR.format(title="also drawn") + "\n" + BAR.format(title="and this"),
              "pio.renderers.default = 'plotly_mimetype'  # a headless kernel's default\n"
              + BAR.format(title="lost"))
    _notebook(folder / "cdn.ipynb", "pio.renderers.default = 'notebook_connected'\n" + BAR.format(title="cdn"))
    result = runner.run(notebooks_dir=folder, notebooks=("kit.ipynb", "cdn.ipynb"), runs_dir=folder / "runs",
                        progress=False, bundle=False)
    return {Path(nb.name).stem: (Path(nb.output), Path(nb.html)) for nb in result.notebooks}


def test_figure_cells_counts_every_figure_a_notebook_showed(reports):
    assert browser.figure_cells(reports["kit"][0]) == [2, 3, 3, 4]
    assert browser.figure_cells(reports["cdn"][0]) == [2]


def test_a_report_with_the_kits_renderer_draws_its_charts_offline(reports, chromium, tmp_path):
    notebook, html = reports["kit"]
    check = browser.check_report(html, chromium, screenshot=tmp_path / "kit.png")
    assert [(c.cell, c.title, c.drawn) for c in check.charts] == [
        (2, "drawn", True), (3, "also drawn", True), (3, "and this", True)]
    assert all(c.svgs >= 1 and c.traces == 1 for c in check.charts)
    # the headless default renderer's figure never reaches the HTML: found by comparing with the notebook
    assert check.problems(expected_cells=browser.figure_cells(notebook)) == [
        "kit.html: cell 4 showed 1 figure(s), the page has 0 chart(s) there"]
    assert (tmp_path / "kit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_report_that_needs_a_cdn_shows_a_blank_box_and_the_check_says_so(reports, chromium):
    notebook, html = reports["cdn"]
    check = browser.check_report(html, chromium, settle_s=3.0)
    assert [(c.cell, c.drawn, c.svgs) for c in check.charts] == [(2, False, 0)]
    problems = check.problems(expected_cells=browser.figure_cells(notebook))
    assert problems[0] == "cdn.html: chart 1 of 1 (cell 2) is not drawn"
    assert problems[1].startswith("cdn.html: requests that would leave the machine were refused: ")
    assert "https://cdn.plot.ly/" in problems[1]
    assert len(problems) == 2


def test_no_chromium_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(BrowserUnavailable, match=r"chromium not found on PATH .*apt-get install chromium"):
        browser.require_chromium()
