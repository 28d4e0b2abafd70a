"""Static PNG images of the figures executed notebooks showed, for e-mail or tickets: kaleido draws
them in the system chromium (talks to a browser).

Optional: needs kaleido >= 1 (``pip install 'dbperf-kit[images]'``; the dev extra has it). Kaleido 1.x
no longer ships a browser; it finds Debian's ``chromium`` on PATH by itself (``make install``
installs it as root), so nothing is downloaded.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import plotly.io as pio

from kit.charts.browser import CHROMIUM_PACKAGE, PLOTLY_MIMETYPE
from kit.errors import BrowserUnavailable, ConfigError, first_line


@dataclass(frozen=True)
class Figure:
    """One figure an executed notebook showed: its cell, its rank in the cell, plotly's JSON."""

    notebook: str
    cell: int
    number: int  # 1 for the first figure of the cell
    spec: dict[str, Any]

    @property
    def filename(self) -> str:
        return f"{Path(self.notebook).stem}_cell{self.cell:02d}_{self.number}.png"


def notebook_figures(notebook: Path) -> list[Figure]:
    """Every figure output (plotly's mimetype) of an executed notebook, in order."""
    nb = nbformat.read(str(notebook), as_version=4)
    found = []
    for index, cell in enumerate(nb.cells):
        specs = [
            out["data"][PLOTLY_MIMETYPE] for out in cell.get("outputs", ()) if PLOTLY_MIMETYPE in out.get("data", {})
        ]
        found += [Figure(Path(notebook).name, index, rank, spec) for rank, spec in enumerate(specs, start=1)]
    return found


def write_pngs(
    notebooks: list[Path], folder: Path, *, width: int | None = None, height: int | None = None, scale: float = 1.0
) -> list[Path]:
    """One PNG per figure of ``notebooks`` in ``folder`` (``<notebook>_cell<NN>_<n>.png``); the figure's
    own size unless ``width``/``height`` are given. All or nothing: a failure leaves no image behind."""
    figures = [f for nb in notebooks for f in notebook_figures(nb)]
    if not figures:
        return []
    try:
        import kaleido  # noqa: F401  (plotly.io imports it lazily and says less when it is missing)
    except ImportError as exc:
        raise ConfigError("PNG export needs kaleido >= 1: pip install 'dbperf-kit[images]'") from exc
    partial = Path(folder).with_name(Path(folder).name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        pio.write_images(
            [f.spec for f in figures],
            [partial / f.filename for f in figures],
            format="png",
            width=width,
            height=height,
            scale=scale,
        )
    except Exception as exc:  # kaleido and choreographer raise assorted types when the browser fails
        shutil.rmtree(partial, ignore_errors=True)
        raise BrowserUnavailable(
            f"kaleido could not draw the figures in a browser ({first_line(exc)}); it needs chromium "
            f"or Chrome on PATH: apt-get install {CHROMIUM_PACKAGE}"
        ) from exc
    Path(folder).mkdir(parents=True, exist_ok=True)
    paths = []
    for figure in figures:
        target = Path(folder) / figure.filename
        (partial / figure.filename).replace(target)
        paths.append(target)
    partial.rmdir()
    return paths
