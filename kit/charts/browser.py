"""Whether charts are *drawn* in a real browser: the system chromium driven by Playwright (talks to a browser).

A report can hold a figure's JSON and still show a blank box (plotly.js missing, fetched from a
CDN the reader cannot reach, a JupyterLab renderer that is not installed). This module opens a
page the way a reader would, offline, and reports every chart slot on it: drawn (plotly put a
sized ``.main-svg`` in it) or not. Used by the tests on the HTML reports of ``kit run`` and on
the notebooks in JupyterLab.

Playwright's own browser download cannot work on machines without internet, so the browser is
always Debian's ``chromium`` (``make install`` installs it with apt when run as root).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kit.errors import BrowserUnavailable, first_line
from kit.servers.sysdeps import CHROMIUM_EXECUTABLES, CHROMIUM_PACKAGE, find_chromium

# No sandbox: these machines run everything as root, where chromium refuses its sandbox. The rest
# keeps a headless chromium from calling home (updates, sync, metrics): there is no internet here,
# and a check must not wait on it.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-sync",
    "--no-first-run",
    "--no-pings",
    "--disable-dev-shm-usage",
)
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
PLOTLY_MIMETYPE = "application/vnd.plotly.v1+json"

# Chart slots, in document order: a JupyterLab output rendered from plotly's mimetype (by the
# jupyterlab-plotly extension: ``.jp-RenderedPlotly``; a generic one carries the mimetype), or a
# ``.plotly-graph-div`` (what plotly's HTML output puts on the page before plotly.js draws into it)
# that is not inside such an output. Drawn: plotly marked it ``.js-plotly-plot`` and a ``.main-svg``
# of non-zero size is in it. The cell is the slot's index among the page's ``.jp-Cell`` elements
# (JupyterLab and nbconvert's lab template both use that class), -1 outside cells.
_CHARTS_JS = """
(mime) => {
  const outputs = `[data-mime-type="${mime}"], .jp-RenderedPlotly`;
  const cells = [...document.querySelectorAll('.jp-Cell')];
  const slots = [...document.querySelectorAll(`${outputs}, .plotly-graph-div`)]
    .filter(el => !(el.parentElement && el.parentElement.closest(outputs)));
  return slots.map(slot => {
    const plot = slot.classList.contains('js-plotly-plot') ? slot : slot.querySelector('.js-plotly-plot');
    const sized = [...slot.querySelectorAll('.main-svg')].filter(svg => {
      const box = svg.getBoundingClientRect();
      return box.width > 0 && box.height > 0;
    });
    const cell = slot.closest('.jp-Cell');
    const title = slot.querySelector('.gtitle');
    return {
      cell: cell ? cells.indexOf(cell) : -1,
      title: title ? title.textContent : '',
      drawn: plot !== null && sized.length > 0,
      svgs: sized.length,
      traces: slot.querySelectorAll('g.trace, g.slice').length,
    };
  });
}
"""
_ALL_DRAWN_JS = f"(mime) => ({_CHARTS_JS})(mime).every(chart => chart.drawn)"


@dataclass(frozen=True)
class Chart:
    """One chart slot on a page."""

    cell: int  # index of the page's cell holding it; -1 when outside a cell
    title: str
    drawn: bool
    svgs: int  # sized .main-svg layers plotly drew
    traces: int  # trace groups (bars, lines, pie slices) plotly drew


@dataclass(frozen=True)
class ChartCheck:
    """Every chart slot of one page, and the requests refused because they would leave the machine."""

    page: str
    charts: tuple[Chart, ...]
    blocked: tuple[str, ...] = ()

    @property
    def drawn(self) -> tuple[Chart, ...]:
        return tuple(c for c in self.charts if c.drawn)

    @property
    def undrawn(self) -> tuple[Chart, ...]:
        return tuple(c for c in self.charts if not c.drawn)

    def problems(self, *, expected_cells: list[int] | None = None) -> list[str]:
        """One line per chart that is not drawn, naming its cell (then the refused requests); with
        ``expected_cells`` (the cells that showed a figure, see :func:`figure_cells`) also the
        figures with no chart slot at all (a renderer the page cannot display)."""
        lines = [
            f"{self.page}: chart {i + 1} of {len(self.charts)} (cell {c.cell}) is not drawn"
            for i, c in enumerate(self.charts)
            if not c.drawn
        ]
        if lines and self.blocked:  # the likely reason a chart is blank; harmless when all are drawn
            lines.append(
                f"{self.page}: requests that would leave the machine were refused: "
                + ", ".join(sorted(set(self.blocked))[:5])
            )
        if expected_cells is not None:
            slots = [c.cell for c in self.charts]
            for cell in sorted(set(expected_cells)):
                if expected_cells.count(cell) > slots.count(cell):
                    lines.append(
                        f"{self.page}: cell {cell} showed {expected_cells.count(cell)} figure(s), "
                        f"the page has {slots.count(cell)} chart(s) there"
                    )
        return lines


def figure_cells(notebook: Path) -> list[int]:
    """The index of the cell of every figure an executed notebook shows (a cell once per figure):
    outputs carrying plotly's mimetype or the ``plotly-graph-div`` of its HTML renderers."""
    import nbformat  # its validator's imports take ~1 s: paid only where a notebook is read

    nb = nbformat.read(str(notebook), as_version=4)
    return [
        index
        for index, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        for output in cell.get("outputs", ())
        if _is_figure(output.get("data", {}))
    ]


def _is_figure(data: dict[str, Any]) -> bool:
    html = data.get("text/html", "")
    html = "".join(html) if isinstance(html, list) else html
    return PLOTLY_MIMETYPE in data or 'class="plotly-graph-div"' in html


def require_chromium() -> str:
    path = find_chromium()
    if path is None:
        raise BrowserUnavailable(
            f"chromium not found on PATH (looked for {', '.join(CHROMIUM_EXECUTABLES)}); install it with "
            f"`apt-get install {CHROMIUM_PACKAGE}` (`make install` does it when run as root)"
        )
    return path


@contextmanager
def launch(*, executable: str | None = None) -> Iterator[Any]:
    """A headless Playwright ``Browser`` on the system chromium; closed on exit."""
    path = executable or require_chromium()
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise BrowserUnavailable(
            "playwright is not installed; install the kit's dev extra: pip install -e '.[dev]' (make install does it)"
        ) from exc
    with sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=path, args=list(CHROMIUM_ARGS))
        except PlaywrightError as exc:
            raise BrowserUnavailable(f"chromium at {path} did not start: {first_line(exc)}") from exc
        try:
            yield browser
        finally:
            browser.close()


def offline_page(
    browser: Any, *, viewport: tuple[int, int] = (1280, 900), allowed_hosts: frozenset[str] = LOCAL_HOSTS
) -> tuple[Any, list[str]]:
    """A new page whose requests to anything but files and ``allowed_hosts`` are refused (and listed
    in the returned list): what a reader without internet sees, without waiting on DNS timeouts."""
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    blocked: list[str] = []

    def _route(route: Any) -> None:
        url = urlsplit(route.request.url)
        if url.scheme in {"file", "data", "blob", "about"} or url.hostname in allowed_hosts:
            route.continue_()
        else:
            blocked.append(f"{url.scheme}://{url.netloc}{url.path}")
            route.abort("internetdisconnected")

    context.route("**/*", _route)
    return context.new_page(), blocked


def check_charts(
    page: Any, *, name: str, blocked: list[str] | tuple[str, ...] = (), settle_s: float = 15.0
) -> ChartCheck:
    """The chart slots of ``page`` once every one is drawn, or after ``settle_s`` seconds."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(_ALL_DRAWN_JS, arg=PLOTLY_MIMETYPE, timeout=settle_s * 1000)
    except PlaywrightTimeout:
        pass  # some chart never drew: the slots below say which
    found = page.evaluate(_CHARTS_JS, PLOTLY_MIMETYPE)
    return ChartCheck(page=name, charts=tuple(Chart(**c) for c in found), blocked=tuple(blocked))


def check_report(html: Path, browser: Any, *, screenshot: Path | None = None, settle_s: float = 15.0) -> ChartCheck:
    """Open the self-contained HTML report ``html`` offline and check its charts; optionally keep a
    full-page screenshot."""
    page, blocked = offline_page(browser)
    try:
        page.goto(Path(html).resolve().as_uri(), wait_until="load")
        check = check_charts(page, name=Path(html).name, blocked=blocked, settle_s=settle_s)
        if screenshot is not None:
            Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
        return check
    finally:
        page.context.close()
