"""kit.charts.images / `kit images RUN`: a PNG per figure of a run, drawn by kaleido in Debian's chromium."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import nbformat
import pytest

from kit.charts import images
from kit.cli import main
from kit.errors import BrowserUnavailable
from kit.runs import runner
from kit.runs.notebook import PLOTLY_RENDERER


def _png(path: Path) -> tuple[int, int, int]:
    """Width, height and the number of distinct byte values of the pixel data (a blank image has ~2)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = struct.unpack(">II", data[16:24])
    pixels, pos = b"", 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            pixels += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    return width, height, len(set(zlib.decompress(pixels)))


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """A `kit run` of a notebook showing three figures (two in one cell), one cell without."""
    folder = tmp_path_factory.mktemp("images")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell("title = 'requests'")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, *map(nbformat.v4.new_code_cell, [
        f"import plotly.express as px\nimport plotly.io as pio\npio.renderers.default = {PLOTLY_RENDERER!r}",
        "px.bar(x=['naive', 'batched'], y=[41, 2], title=title).show()\n"
        "px.pie(values=[3, 1], names=['hit', 'miss'], title='cache').show()",
        "print('no figure here')",
        "px.line(x=[1, 2, 3], y=[30, 12, 9], title='p95').show()",
    ])]
    nbformat.write(nb, str(folder / "charts.ipynb"))
    with pytest.MonkeyPatch.context() as mp:
        for name in ("KIT_DATABASE_URL", "DATABASE_URL", "KIT_REDIS_URL", "REDIS_URL"):
            mp.delenv(name, raising=False)
        mp.setenv("KIT_HOME", str(folder / ".kit"))  # no servers: the bundle holds the files only
        result = runner.run(notebooks_dir=folder, notebooks=("charts.ipynb",), runs_dir=folder / "runs",
                            progress=False)
    return result.folder


def test_notebook_figures_in_order(run_folder):
    found = images.notebook_figures(run_folder / "charts.ipynb")
    assert [(f.cell, f.number, f.spec["layout"]["title"]["text"]) for f in found] == [
        (2, 1, "requests"), (2, 2, "cache"), (4, 1, "p95")]
    assert [f.filename for f in found] == ["charts_cell02_1.png", "charts_cell02_2.png", "charts_cell04_1.png"]


def test_write_pngs_draws_every_figure_at_the_size_asked(run_folder, tmp_path):
    paths = images.write_pngs([run_folder / "charts.ipynb"], tmp_path / "png", width=480, height=320)
    assert [p.name for p in paths] == ["charts_cell02_1.png", "charts_cell02_2.png", "charts_cell04_1.png"]
    for path in paths:
        width, height, shades = _png(path)
        assert (width, height) == (480, 320)
        assert shades > 50, f"{path.name} looks blank ({shades} distinct byte values)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["png"]  # no partial folder left


def test_kit_images_writes_into_the_run_folder(run_folder, capsys):
    assert main(["images", str(run_folder)]) == 0
    assert capsys.readouterr().out.strip() == f"3 image(s) in {run_folder / 'images'}"
    assert sorted(p.name for p in (run_folder / "images").iterdir()) == [
        "charts_cell02_1.png", "charts_cell02_2.png", "charts_cell04_1.png"]
    assert _png(run_folder / "images" / "charts_cell04_1.png")[:2] == (700, 500)  # plotly's default size


def test_a_browser_that_cannot_start_writes_nothing_and_says_what_to_install(run_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-such-chromium"))  # choreographer's override
    with pytest.raises(BrowserUnavailable, match="apt-get install chromium"):
        images.write_pngs([run_folder / "charts.ipynb"], tmp_path / "png")
    assert not (tmp_path / "png").exists() and not (tmp_path / "png.partial").exists()
