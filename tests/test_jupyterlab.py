"""The analysts' path in a real browser: JupyterLab, started from the project's environment, runs each
notebook with Run > Run All Cells; no cell fails, every figure is a drawn chart, the parameters cell
is there; a full-page screenshot per notebook lands in ``.kit/artifacts/jupyterlab/``.

The layout is a project's, as ``make lab`` sees it: ``<project>/.kit`` records the suite's servers,
``<project>/notebooks`` holds copies of the notebooks (JupyterLab never writes to the repository's)
with the shortest load runs in their parameters cells (``LAB_PARAMETERS``),
``<project>/runs`` the runs of ``kit run``. The kernels get no ``KIT_*`` variable: like make lab's,
they find the servers and the database from their own folder (the servers' default database, a copy
of the suite's tiny one). The notebooks run in name order in one JupyterLab page, each opened and
closed in turn, as an analyst goes through them: 03 charts what 01 and 02 left in ``.kit/artifacts``,
04 the bundle of a ``kit run`` made first.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from kit.charts import browser
from kit.runs import runner
from kit.servers import local

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / ".kit" / "artifacts" / "jupyterlab"
NOTEBOOKS = sorted(p.name for p in runner.NOTEBOOKS_DIR.glob("*.ipynb"))
RUN_ALL_TIMEOUT_S = 600
# The screenshot's height is the notebook's, up to what chromium captures in one piece.
MAX_SHOT_HEIGHT = 16000
# What the notebooks measure here is not under test (nbval runs them with their defaults): the
# shortest load runs and the fewest repeats the notebooks' own checks hold with, as `kit run` tests use.
LAB_PARAMETERS = {"load_users": "2", "load_seconds": "0.5", "repeats": "2", "wait_sample_s": "0.5"}
_KIT_VARIABLES = ("KIT_HOME", "KIT_RUN_DIR", "KIT_DATABASE_URL", "DATABASE_URL", "KIT_REDIS_URL", "REDIS_URL")

# JupyterLab's user settings for the test: every cell in the DOM (the default windowing leaves
# cells off screen out of it, so plots would go uncounted), no blank space after the last cell
# (it grows with the window and would defeat the full-height screenshot), no news toast over the
# notebook, no autosave (the copies stay as they were).
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none", "scrollPastEnd": False},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
}

_PANEL = "window.jupyterapp.shell.currentWidget"
_KERNEL_IDLE_JS = f"""(path) => {{
  const panel = window.jupyterapp && {_PANEL};
  if (!panel || !panel.context || panel.context.path !== path || !panel.context.isReady || !panel.sessionContext)
    return false;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  return !!kernel && kernel.status === 'idle';
}}"""
# One page of JupyterLab opens each notebook in turn (its app loads once: 5-6 CPU-seconds of chromium
# and the server each time it does) and closes it after, unchanged (autosave is off): no dialog. The
# plotly.js an earlier notebook's output loaded is taken off the page first: each notebook must bring
# its own, as when an analyst opens it alone (else a chart needing a CDN would draw here).
_APP_READY_JS = "() => !!window.jupyterapp && window.jupyterapp.restored.then(() => true)"
_OPEN_JS = """(path) => {
  window.Plotly = window._Plotly = undefined;
  return window.jupyterapp.commands.execute('docmanager:open', {path, factory: 'Notebook'}).then(() => true);
}"""
_CLOSE_JS = f"""(path) => {{
  const panel = {_PANEL};
  if (panel && panel.context && panel.context.path === path) {{ panel.context.model.dirty = false; panel.close(); }}
}}"""
_NONE_OPEN_JS = "() => document.querySelectorAll('.jp-NotebookPanel').length === 0"
# A notebook saved with outputs or counts would look finished (or failed) before it starts.
_CLEAR_JS = f"""() => {{
  for (const cell of {_PANEL}.content.widgets) {{
    if (cell.model.type === 'code') {{ cell.model.outputs.clear(); cell.model.executionCount = null; }}
  }}
}}"""
# Finished: the kernel is idle, no cell waits ('[*]'), and every code cell ran or one failed
# (JupyterLab stops Run All at the first error).
_FINISHED_JS = f"""() => {{
  const panel = {_PANEL};
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const code = panel.content.widgets.map(w => w.model).filter(m => m.type === 'code');
  const waiting = [...panel.node.querySelectorAll('.jp-InputPrompt')].some(p => p.textContent.includes('*'));
  const failed = code.some(m => Array.from({{length: m.outputs.length}}, (_, j) => m.outputs.get(j).type)
    .includes('error'));
  return !!kernel && kernel.status === 'idle' && !waiting && (failed || code.every(m => m.executionCount !== null));
}}"""
# What the kernel sent, per cell, from JupyterLab's own model: figures (plotly's mimetype or the
# plotly-graph-div of its HTML renderers) and figures shown as data instead of a chart (a json
# or plain-text renderer).
_CELLS_JS = f"""(mime) => {{
  const text = (o, type) => [].concat((o.data || {{}})[type] || []).join('');
  const isFigure = o => mime in (o.data || {{}}) || text(o, 'text/html').includes('class="plotly-graph-div"');
  const asData = o => {{
    const json = (o.data || {{}})['application/json'];
    return (json && json.data !== undefined && json.layout !== undefined) || text(o, 'text/plain').startsWith('Figure(');
  }};
  return {_PANEL}.content.widgets.map((widget, index) => {{
    const model = widget.model;
    const outputs = model.type === 'code'
      ? Array.from({{length: model.outputs.length}}, (_, j) => model.outputs.get(j).toJSON()) : [];
    return {{
      index, kind: model.type, tags: model.getMetadata('tags') || [],
      count: model.type === 'code' ? model.executionCount : null,
      errors: outputs.filter(o => o.output_type === 'error').map(o => `${{o.ename}}: ${{o.evalue}}`),
      figures: outputs.filter(isFigure).length,
      figures_as_data: outputs.filter(o => !isFigure(o) && asData(o)).length,
    }};
  }});
}}"""
_WAITING_JS = f"""() => [...{_PANEL}.node.querySelectorAll('.jp-Cell')]
  .map((cell, index) => [index, cell.querySelector('.jp-InputPrompt')])
  .filter(([, prompt]) => prompt && prompt.textContent.includes('*')).map(([index]) => index)"""
_SCROLLER = f"{_PANEL}.node.querySelector('.jp-WindowedPanel-outer')"
_CHROME_HEIGHT_JS = f"() => [{_SCROLLER}.scrollHeight, window.innerHeight - {_SCROLLER}.clientHeight]"
_ALL_VISIBLE_JS = f"() => {{ const s = {_SCROLLER}; s.scrollTop = 0; return s.clientHeight >= s.scrollHeight - 2; }}"


@dataclass(frozen=True)
class LabCell:
    index: int
    kind: str
    tags: list[str]
    count: int | None
    errors: list[str]
    figures: int
    figures_as_data: int


@dataclass(frozen=True)
class LabRun:
    """One notebook run with Run All Cells in JupyterLab."""

    name: str
    cells: tuple[LabCell, ...]
    charts: browser.ChartCheck
    screenshot: Path
    seconds: float

    @property
    def figure_cells(self) -> list[int]:
        return [c.index for c in self.cells for _ in range(c.figures)]

    def problems(self) -> list[str]:
        """Everything an analyst would see go wrong, one line each (empty: the notebook is fine)."""
        code = [c for c in self.cells if c.kind == "code"]
        lines = [] if code and "parameters" in code[0].tags else \
            [f"{self.name}: the first code cell is not tagged 'parameters'"]
        lines += [f"{self.name}: cell {c.index} failed: {e}" for c in code for e in c.errors]
        lines += [f"{self.name}: cell {c.index} did not run" for c in code if c.count is None]
        lines += [f"{self.name}: cell {c.index} shows a figure as data, not as a chart"
                  for c in code if c.figures_as_data]
        return lines + self.charts.problems(expected_cells=self.figure_cells)


@dataclass(frozen=True)
class Lab:
    url: str
    token: str
    root: Path

    @property
    def app_url(self) -> str:
        # ?reset: a fresh workspace, no notebook open
        return f"{self.url}/lab?reset&token={self.token}"


@dataclass(frozen=True)
class LabPage:
    """JupyterLab loaded once in a chromium page without internet; ``blocked``: what it tried to reach."""

    page: Any
    blocked: list[str]


def _sha(paths: list[Path]) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def _write_settings(folder: Path) -> None:
    for plugin, values in LAB_SETTINGS.items():
        package, name = plugin.rsplit("/", 1)
        path = folder / package / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def _wait_ready(url: str, proc: subprocess.Popen, log: Path, *, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"jupyter lab exited with {proc.returncode}: {log.read_text()[-2000:]}", pytrace=False)
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"jupyter lab did not answer {url.split('?')[0]} within {timeout_s:.0f} s: "
                f"{log.read_text()[-2000:]}", pytrace=False)


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)  # the server shuts its kernels down
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the server and its kernels only
        proc.wait(timeout=10)


def _set_parameters(notebook: Path, values: dict[str, str]) -> set[str]:
    """Change the values of the parameters cell's assignments in ``values``, as an analyst does in
    JupyterLab before Run All (the comments stay); the names the notebook has and were set."""
    nb = nbformat.read(notebook, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    found = set()
    for name, value in values.items():
        cell.source, n = re.subn(rf"^{name} = [^#\n]*?(\s*#|$)", rf"{name} = {value}\1", cell.source, flags=re.M)
        found |= {name} if n else set()
    nbformat.write(nb, notebook)
    return found


@pytest.fixture(scope="module")
def project(tmp_path_factory, kit_home, pg_server, tiny_template) -> Iterator[Path]:
    """A project folder whose .kit records the suite's servers, their default database a copy of the
    tiny one, and copies of the notebooks with ``LAB_PARAMETERS``; the servers' default database is
    emptied afterwards."""
    folder = tmp_path_factory.mktemp("lab-project")
    (folder / ".kit").mkdir()
    shutil.copy(kit_home / local.STATE_FILE, folder / ".kit" / local.STATE_FILE)
    shutil.copytree(runner.NOTEBOOKS_DIR, folder / "notebooks", ignore=shutil.ignore_patterns("*.py", ".*"))
    changed = set().union(*(_set_parameters(nb, LAB_PARAMETERS) for nb in (folder / "notebooks").glob("*.ipynb")))
    assert changed == set(LAB_PARAMETERS), f"no notebook declares {set(LAB_PARAMETERS) - changed}"
    local.create_database(pg_server, local.DATABASE, replace=True, template=tiny_template)
    yield folder
    local.create_database(pg_server, local.DATABASE, replace=True)


@pytest.fixture(scope="module")
def recorded_run(project) -> Path:
    """One `kit run` of the audit on the project's database, for 04 to chart: a bundle with figures."""
    with pytest.MonkeyPatch.context() as mp:
        for name in _KIT_VARIABLES:
            mp.delenv(name, raising=False)
        mp.setenv("KIT_HOME", str(project / ".kit"))
        result = runner.run(notebooks=runner.NOTEBOOKS[:1], runs_dir=project / "runs", progress=False,
                            parameters=LAB_PARAMETERS)
    assert [nb.status for nb in result.notebooks] == ["ok"]
    return result.folder


@pytest.fixture(scope="module")
def lab(project, tmp_path_factory) -> Iterator[Lab]:
    """JupyterLab from the project's environment on a free port, with a token, on the notebook copies."""
    work = tmp_path_factory.mktemp("lab")
    _write_settings(work / "settings")
    port, token = local.free_port(), hashlib.sha256(os.urandom(16)).hexdigest()[:32]
    env = {k: v for k, v in os.environ.items() if k not in _KIT_VARIABLES}
    # the kernels on unix sockets (as `kit run`'s): no TCP port that a parallel test can take first;
    # a short runtime folder, as a socket's path may not exceed 107 bytes
    runtime = Path(tempfile.mkdtemp(prefix="kit-lab-"))
    env.update(JUPYTER_CONFIG_DIR=str(work / "config"), JUPYTER_RUNTIME_DIR=str(runtime),
               IPYTHONDIR=str(work / "ipython"))
    cmd = [str(Path(sys.executable).parent / "jupyter"), "lab", "--allow-root", "--no-browser",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={project / 'notebooks'}",
           f"--LabApp.user_settings_dir={work / 'settings'}", f"--LabApp.workspaces_dir={work / 'workspaces'}",
           "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: the notebook's model
           "--KernelManager.transport=ipc"]
    log = work / "lab.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=project, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(f"{url}/api/status?token={token}", proc, log)
        yield Lab(url=url, token=token, root=project / "notebooks")
    finally:
        _stop(proc)
        shutil.rmtree(runtime, ignore_errors=True)


@pytest.fixture(scope="module")
def lab_page(chromium, lab) -> Iterator[LabPage]:
    page, blocked = browser.offline_page(chromium, viewport=(1280, 900))
    try:
        page.goto(lab.app_url)
        page.wait_for_function(_APP_READY_JS, timeout=180_000, polling=250)
        page.evaluate("() => window.jupyterapp.commands.execute('application:close-all').then(() => true)")  # the Launcher
        yield LabPage(page=page, blocked=blocked)
    finally:
        page.context.close()


def run_in_lab(lab_page: LabPage, name: str, *, settle_s: float = 15.0) -> LabRun:
    """Open ``name`` in JupyterLab, Run > Run All Cells, wait until done (and ``settle_s`` at most for
    the charts to draw); what the page shows. The notebook is closed after, its kernel shut down."""
    started, page, already_blocked = time.monotonic(), lab_page.page, len(lab_page.blocked)
    page.set_viewport_size({"width": 1280, "height": 900})  # the last screenshot made it as tall as a notebook
    page.evaluate(_OPEN_JS, name)
    try:
        page.wait_for_function(_KERNEL_IDLE_JS, arg=name, timeout=180_000, polling=250)
        page.evaluate(_CLEAR_JS)
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        try:
            page.wait_for_function(_FINISHED_JS, timeout=RUN_ALL_TIMEOUT_S * 1000, polling=500)
        except PlaywrightTimeout:  # a hung cell or widget: say which, keep what the page showed
            waiting = page.evaluate(_WAITING_JS)
            shot = _screenshot(page, SCREENSHOTS / f"{Path(name).stem}.timeout.png")
            pytest.fail(f"{name}: Run All Cells did not finish within {RUN_ALL_TIMEOUT_S} s; cells still "
                        f"waiting: {waiting}; screenshot {shot}", pytrace=False)
        cells = tuple(LabCell(**c) for c in page.evaluate(_CELLS_JS, browser.PLOTLY_MIMETYPE))
        charts = browser.check_charts(page, name=name, blocked=lab_page.blocked[already_blocked:], settle_s=settle_s)
        shot = _screenshot(page, SCREENSHOTS / f"{Path(name).stem}.png")
        page.evaluate(f"() => {_PANEL}.sessionContext.shutdown()")
    finally:
        page.evaluate(_CLOSE_JS, name)
        page.wait_for_function(_NONE_OPEN_JS, timeout=30_000)
    return LabRun(name=name, cells=cells, charts=charts, screenshot=shot, seconds=time.monotonic() - started)


def _screenshot(page, path: Path) -> Path:
    """The whole notebook: the window made as tall as its cells, scrolled to the top."""
    page.evaluate("() => window.jupyterapp.shell.collapseLeft()")  # the notebook, not the file browser
    content, chrome = page.evaluate(_CHROME_HEIGHT_JS)
    page.set_viewport_size({"width": 1280, "height": min(content + chrome, MAX_SHOT_HEIGHT)})
    if content + chrome <= MAX_SHOT_HEIGHT:
        page.wait_for_function(_ALL_VISIBLE_JS, timeout=30_000)
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture(scope="module")
def repo_notebooks() -> Iterator[dict[str, str]]:
    before = _sha(sorted(runner.NOTEBOOKS_DIR.glob("*.ipynb")))
    yield before
    assert _sha(sorted(runner.NOTEBOOKS_DIR.glob("*.ipynb"))) == before, "a test changed a notebook on disk"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_clean_in_jupyterlab(name, lab, lab_page, recorded_run, repo_notebooks):
    copied = _sha([lab.root / name])
    run = run_in_lab(lab_page, name)
    print(f"{name}: {run.seconds:.1f} s in JupyterLab, {len(run.charts.charts)} chart(s), {run.screenshot}")
    assert run.problems() == []
    assert [c.cell for c in run.charts.drawn] == run.figure_cells
    assert run.screenshot.stat().st_size > 10_000
    assert _sha([lab.root / name]) == copied  # JupyterLab saved nothing


def test_the_check_reports_failed_cells_and_undrawn_charts(lab, lab_page):
    """A notebook that goes wrong three ways: plotly.js from a CDN the reader cannot reach, figures
    rendered as JSON, a cell that raises. The check names each, and the cell that never ran."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell("title = 'bars'")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, *map(nbformat.v4.new_code_cell, [
        "import plotly.express as px\nimport plotly.io as pio\n\npio.renderers.default = 'notebook_connected'\n"
        "px.bar(x=['a', 'b'], y=[1, 2], title=title).show()",
        "pio.renderers.default = 'json'\npx.bar(x=['a', 'b'], y=[1, 2], title=title).show()",
        "1 / 0",
        "print('never')",
    ])]
    nbformat.write(nb, str(lab.root / "broken_on_purpose.ipynb"))
    run = run_in_lab(lab_page, "broken_on_purpose.ipynb", settle_s=3.0)
    *lines, blocked = run.problems()
    assert lines == [
        "broken_on_purpose.ipynb: cell 3 failed: ZeroDivisionError: division by zero",
        "broken_on_purpose.ipynb: cell 4 did not run",
        "broken_on_purpose.ipynb: cell 2 shows a figure as data, not as a chart",
        "broken_on_purpose.ipynb: chart 1 of 1 (cell 1) is not drawn",
    ]
    assert blocked.startswith("broken_on_purpose.ipynb: requests that would leave the machine were refused: ")
    assert "https://cdn.plot.ly/" in blocked
