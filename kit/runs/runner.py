"""``kit run``: execute the notebooks in order with papermill into ``runs/<UTC timestamp>/``.

Stages kept apart, as papermill does: validate parameters (before anything runs:
:mod:`kit.runs.parameters`), execute each notebook, export it to self-contained HTML, gather the
recorded figures into ``summary.json``, write the evidence bundle (``bundle.json``,
:mod:`kit.runs.bundle`) and, when ``fail_on`` rules are given, judge the run against the previous
run of the same target (:mod:`kit.runs.gate`). A failing notebook's executed copy (and the bundle,
with status ``failed``) is written before :class:`NotebookFailed` is raised.

A run with ``apply`` holds the database's apply lock (:mod:`kit.safety.applylock`) from before its
checks to its end: a second one is refused before anything runs (exit 2), and its kernels work
under it. Ctrl-C or SIGTERM interrupts the kernel so its cell cleans up (:mod:`kit.runs.signals`);
the run then stops with status ``interrupted`` (exit 130 / 143) and is never a baseline.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from sqlalchemy.exc import DBAPIError

from kit import report
from kit.config import DATABASE_ENV, HOME_ENV, RUN_DIR_ENV, kit_home, mask_url, url_from_env
from kit.db.engine import make_engine, refused
from kit.db.seeded import seeded
from kit.errors import ConfigError, Interrupted, KitError, NotebookFailed
from kit.runs import bundle as bundles
from kit.runs import gate, signals
from kit.runs.gate import GateResult
from kit.runs.parameters import NOTEBOOKS, NOTEBOOKS_DIR, declared_parameters, validate_parameters
from kit.safety import applylock, preflight
from kit.store.evidence import FAILED, INTERRUPTED, OK, Bundle, NotebookEntry, Status
from kit.store.history import previous_bundle
from kit.store.records import read_records

if TYPE_CHECKING:
    from traitlets.config import Config

# Jupyter's machinery (papermill, nbformat, nbconvert, jupyter_client: ~1 s of imports) is imported
# where a notebook is run or exported, so that a run refused by its checks says so at once.

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 1800
KERNEL_NAME = "python3"
CONNECTION_FILE = "kernel.json"  # in the kernel's own sockets folder; signals.py finds the kernel by it
# Cells that need the Reconciliation Platform's tables (its services, the migration's indexes,
# load on its data) carry this tag; they are left out for any other database.
PLATFORM_TAG = "platform"
# Cells whose code a reader of the exported HTML does not need: the asserts and kit.record lines that
# make a run fail when a claim fails ("check"), the session set-up ("plumbing").
HIDDEN_INPUT_TAGS = ("check", "plumbing")


@dataclass(frozen=True)
class NotebookResult:
    name: str
    output: str
    html: str | None
    seconds: float
    status: Status

    def entry(self) -> NotebookEntry:
        """How the summary and the bundle list it: file names, not paths."""
        return NotebookEntry(
            name=self.name,
            status=self.status,
            seconds=round(self.seconds, 2),
            output=Path(self.output).name,
            html=Path(self.html).name if self.html else None,
        )


@dataclass(frozen=True)
class RunResult:
    folder: Path
    notebooks: list[NotebookResult]
    figures: dict[str, Any] = field(default_factory=dict)
    gate: GateResult | None = None  # when fail_on rules were given

    @property
    def summary_path(self) -> Path:
        return self.folder / "summary.json"

    @property
    def bundle_path(self) -> Path:
        return self.folder / "bundle.json"

    @property
    def report_path(self) -> Path:
        return self.folder / report.REPORT_FILE


def check_kernel(name: str) -> None:
    """A ConfigError unless Jupyter knows a kernel called ``name`` (checked before anything runs)."""
    from jupyter_client.kernelspec import KernelSpecManager

    known = KernelSpecManager().find_kernel_specs()
    if name not in known:
        raise ConfigError(
            f"no Jupyter kernel named {name!r}; installed: {', '.join(sorted(known)) or 'none'} "
            "(the kit's environment provides python3)"
        )


def new_run_folder(runs_dir: Path, *, create: bool = True) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    # absolute: the kernels run in the notebooks' folder and find it through the environment
    folder = Path(runs_dir).resolve() / stamp
    if create:
        folder.mkdir(parents=True, exist_ok=False)
    return folder


def run(
    *,
    parameters: dict[str, Any] | None = None,
    runs_dir: Path = Path("runs"),
    notebooks_dir: Path = NOTEBOOKS_DIR,
    notebooks: tuple[str, ...] = NOTEBOOKS,
    kernel_name: str = KERNEL_NAME,
    timeout_s: int = DEFAULT_TIMEOUT_S,
    progress: bool = True,
    bundle: bool = True,
    fail_on: tuple[str, ...] = (),
    interrupt_grace_s: float = signals.GRACE_S,
) -> RunResult:
    """Run ``notebooks`` in order; return where the outputs are. Raises NotebookFailed on a failing cell,
    Interrupted on SIGINT / SIGTERM (the kernel interrupted first, so that its cell cleans up).

    ``fail_on`` rules (kit.runs.gate's grammar) are parsed before anything runs and judged after the
    bundle is written; the verdicts are in ``RunResult.gate`` (the caller decides to raise)."""
    rules = gate.parse_rules(fail_on)
    if rules and not bundle:
        raise ConfigError("--fail-on needs the run's bundle; drop --no-bundle")
    paths = [Path(notebooks_dir) / name for name in notebooks]
    per_notebook = validate_parameters(dict(parameters or {}), paths, runs_dir=runs_dir)
    check_kernel(kernel_name)
    with signals.forwarding(interrupt_grace_s) as caught:
        try:
            return _run(
                paths,
                per_notebook,
                parameters=parameters or {},
                runs_dir=runs_dir,
                kernel_name=kernel_name,
                timeout_s=timeout_s,
                progress=progress,
                bundle=bundle,
                rules=rules,
                caught=caught,
            )
        except KeyboardInterrupt:  # before the first notebook, or asked twice
            raise _interrupted(caught, None, None) from None


def _run(
    paths: list[Path],
    per_notebook: dict[Path, dict[str, Any]],
    *,
    parameters: dict[str, Any],
    runs_dir: Path,
    kernel_name: str,
    timeout_s: int,
    progress: bool,
    bundle: bool,
    rules: tuple[gate.Rule, ...],
    caught: signals.Caught,
) -> RunResult:
    folder = new_run_folder(runs_dir, create=False)
    with contextlib.ExitStack() as held:  # the apply lock, with apply: from before the checks to the end
        lock_as = applylock.run_application(folder.name) if _applies(per_notebook) else None
        skip = () if _check_database(per_notebook, lock_as=lock_as, held=held) else (PLATFORM_TAG,)
        folder.mkdir(parents=True, exist_ok=False)
        results, written = _notebooks(
            paths,
            per_notebook,
            folder,
            parameters=parameters,
            kernel_name=kernel_name,
            timeout_s=timeout_s,
            progress=progress,
            bundle=bundle,
            skip=skip,
            caught=caught,
        )
    if caught.signum and (written is None or written.status == INTERRUPTED):  # came as the summary was written
        raise _interrupted(caught, None, folder)
    verdict = None
    if rules and written is not None:  # rules need the bundle: run() refused them without one
        before = previous_bundle(folder.parent, target=written.target, before=folder.name) if written.target else None
        verdict = gate.evaluate(rules, written, before)
    return RunResult(folder=folder, notebooks=results, figures=_figures(folder), gate=verdict)


def _notebooks(
    paths: list[Path],
    per_notebook: dict[Path, dict[str, Any]],
    folder: Path,
    *,
    parameters: dict[str, Any],
    kernel_name: str,
    timeout_s: int,
    progress: bool,
    bundle: bool,
    skip: tuple[str, ...],
    caught: signals.Caught,
) -> tuple[list[NotebookResult], Bundle | None]:
    """Execute each notebook into ``folder``; then (also when one fails or a signal stops the run) write
    the summary and the bundle. Returns the notebooks' results and the bundle (None without one)."""
    results: list[NotebookResult] = []
    written: Bundle | None = None
    # Kernels inherit the environment: this is how kit.record finds the run folder.
    # Kernels run in the notebooks' folder: they get this process's kit home (where its servers
    # are recorded) explicitly rather than searching from their own working directory.
    exported = {RUN_DIR_ENV: str(folder), HOME_ENV: str(kit_home())}
    previous = {name: os.environ.get(name) for name in exported}
    os.environ.update(exported)
    try:
        for path in paths:
            try:
                results.append(
                    _execute(
                        path,
                        folder,
                        per_notebook[path],
                        kernel_name=kernel_name,
                        timeout_s=timeout_s,
                        progress=progress,
                        skip=skip,
                        caught=caught,
                    )
                )
            except NotebookFailed as exc:
                results.append(
                    NotebookResult(path.name, exc.output, None, 0.0, INTERRUPTED if caught.signum else FAILED)
                )
                if caught.signum:  # the cell ended with the KeyboardInterrupt the kernel was sent
                    raise _interrupted(caught, path.name, folder) from None
                raise
            except KeyboardInterrupt:
                results.append(NotebookResult(path.name, str(folder / path.name), None, 0.0, INTERRUPTED))
                raise _interrupted(caught, path.name, folder) from None
            if caught.signum:  # it came as the notebook ended: stop before the next
                raise _interrupted(caught, path.name, folder)
    finally:
        caught.closing = True  # from here a signal is only recorded: the bundle must be written
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        entries = [r.entry() for r in results]
        _write_summary(folder, parameters, entries)
        if bundle:
            status = INTERRUPTED if caught.signum else run_status([e.to_json() for e in entries], expected=len(paths))
            written = _write_bundle(
                folder, parameters, entries, database_env=_database_env(per_notebook), status=status
            )
            _write_report(folder)
    return results, written


def _write_report(folder: Path) -> None:
    """The run's one-page report, also for a failed run (its verdict says "incomplete"). It never
    hides the run's own outcome: a report that cannot be written is one warning line."""
    try:
        report.write(folder)
    except Exception as exc:  # a report bug must not turn a finished run into a failed one
        log.warning("kit: warning: the report of %s was not written (%s: %s)", folder.name, type(exc).__name__, exc)


def run_status(notebooks: Sequence[Mapping[str, Any]], *, expected: int) -> Status:
    """``ok`` when every notebook asked for (the summary's ``notebooks``) ran ok, else ``failed``
    (pure; ``interrupted`` is the caller's to say)."""
    return OK if len(notebooks) == expected and all(n["status"] == OK for n in notebooks) else FAILED


def _interrupted(caught: signals.Caught, notebook: str | None, folder: Path | None) -> Interrupted:
    during = f" during {notebook}" if notebook else ""
    if folder is None:
        return Interrupted(
            f"interrupted by {caught.name}{during} before any notebook ran; nothing was written",
            signum=caught.signum or 2,
        )
    return Interrupted(
        f"interrupted by {caught.name}{during}: its kernel was interrupted so that the cell could clean up (an "
        f"apply cancels its builds and drops what they left INVALID); the run is kept at {folder}, marked "
        "interrupted (never a baseline) — run it again",
        signum=caught.signum or 2,
    )


def _applies(per_notebook: dict[Path, dict[str, Any]]) -> bool:
    return any(params.get("apply") is True for params in per_notebook.values())


def _check_database(
    per_notebook: dict[Path, dict[str, Any]], *, lock_as: str | None = None, held: contextlib.ExitStack | None = None
) -> bool:
    """Whether the audited database has the Reconciliation Platform's tables. Checked before
    anything is written, with the pre-flight's privilege gates — the role must see the tables it
    audits, and with ``apply`` be allowed to change them — so an unreachable database or a missing
    privilege is one clear error (exit 2), not a failed notebook. Notebooks that declare no
    ``database_env`` use no database: nothing is checked or skipped. With ``lock_as`` (a run that
    applies) the apply lock is taken first, into ``held``, under that application name: another
    apply running is refused by name (exit 2), not mistaken for an open transaction."""
    if not any("database_env" in declared_parameters(path) for path in per_notebook):
        return True

    url = url_from_env(_database_env(per_notebook))
    engine = make_engine(url, pool_size=1)
    try:
        if lock_as and held is not None:
            held.enter_context(applylock.hold(url, app=lock_as, inherit=False))
        pre = preflight.check(engine)
        pre.require_readable()
        if _applies(per_notebook):
            pre.require_safe()
        with engine.connect() as conn:
            return bool(seeded(conn).platform)
    except (DBAPIError, psycopg.Error) as exc:  # a statement of the checks refused: one line, nothing run
        raise refused(exc, doing="check the database before the run") from exc
    finally:
        engine.dispose()


def without_tagged_cells(path: Path, target: Path, tags: tuple[str, ...]) -> Path:
    """A copy of notebook ``path`` at ``target`` without the cells tagged with any of ``tags``;
    one markdown cell says what was left out and why."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    kept = [c for c in nb.cells if not set(c.metadata.get("tags", ())) & set(tags)]
    if len(kept) < len(nb.cells):
        note = nbformat.v4.new_markdown_cell(
            f"*{len(nb.cells) - len(kept)} cells about the Reconciliation Platform's own services (N+1, cache, "
            "load, its migration's apply and verify) were left out: the audited database does not have the "
            "platform's tables. What follows applies to any database: the audit, the workload, the fix plan "
            "(applied and verified only with `apply`) and its charts.*"
        )
        kept.insert(
            next(
                (
                    i
                    for i, c in enumerate(kept)
                    if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", ())
                ),
                len(kept),
            )
            + 1,
            note,
        )
    nb.cells = kept
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(target))
    return target


def _database_env(per_notebook: dict[Path, dict[str, Any]]) -> str:
    """The environment variable the notebooks read the database URL from (their parameter, else the default)."""
    for params in per_notebook.values():
        if params.get("database_env"):
            return str(params["database_env"])
    return DATABASE_ENV[0]


def _write_bundle(
    folder: Path, parameters: dict[str, Any], notebooks: list[NotebookEntry], *, database_env: str, status: Status
) -> Bundle:
    """The evidence bundle of the run; without a reachable database it holds the files' part only."""
    try:
        url, why = url_from_env(database_env), None
    except KitError as exc:
        url, why = None, mask_url(str(exc))
    content = bundles.collect(folder, database_url=url, parameters=parameters, notebooks=notebooks, status=status)
    if why:
        content = replace(content, errors={**content.errors, "database": why})
    content.write(folder)
    return content


def _execute(
    path: Path,
    folder: Path,
    params: dict[str, Any],
    *,
    kernel_name: str,
    timeout_s: int,
    progress: bool,
    skip: tuple[str, ...] = (),
    caught: signals.Caught | None = None,
) -> NotebookResult:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    output = folder / path.name
    source = without_tagged_cells(path, folder / ".input" / path.name, skip) if skip else path
    started = time.perf_counter()
    try:
        # saved once at the end (also when a cell fails or the kernel dies), not twice per cell: the
        # notebooks embed plotly.js (5 MB), and the per-cell saves cost seconds per notebook
        with (
            tempfile.TemporaryDirectory(prefix="kit-kernel-") as sockets,
            (caught or signals.Caught()).kernel(Path(sockets) / CONNECTION_FILE),
        ):
            papermill.execute_notebook(
                str(source),
                str(output),
                parameters=params,
                kernel_name=kernel_name,
                execution_timeout=timeout_s,
                progress_bar=progress,
                cwd=str(path.parent),
                request_save_on_cell_execute=False,
                config=_unix_sockets(Path(sockets)),
            )
    except PapermillExecutionError as exc:
        raise NotebookFailed(
            f"{path.name} failed in cell {exc.exec_count} ({exc.ename}: {mask_url(str(exc.evalue))[:300]}); "
            f"the executed notebook is kept at {output}",
            notebook=path.name,
            output=str(output),
            cell=exc.exec_count,
        ) from exc
    except Exception as exc:  # kernel death, timeout: papermill raises assorted types
        raise NotebookFailed(
            f"{path.name} did not finish ({type(exc).__name__}: {mask_url(str(exc))[:300]}); output kept at {output}",
            notebook=path.name,
            output=str(output),
        ) from exc
    seconds = time.perf_counter() - started
    html = export_html(output)
    return NotebookResult(path.name, str(output), str(html), seconds, "ok")


def _unix_sockets(folder: Path) -> Config:
    """The kernel talks over unix sockets in ``folder``, not TCP: jupyter_client picks TCP ports by
    binding and releasing them, and a run started at the same time (a fleet's targets, parallel
    tests) can take one before the kernel binds it — the kernel dies ("Address already in use")."""
    from traitlets.config import Config

    return Config(
        {
            "KernelManager": {
                "transport": "ipc",
                "ip": str(folder / "kernel"),
                "connection_file": str(folder / CONNECTION_FILE),
            }
        }
    )


_EXPORTING = threading.Lock()  # one exporter for the process: used by one thread at a time


@functools.cache
def _html_exporter():
    """One exporter for the run's notebooks: its templates are compiled once (a third of a second each time)."""
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    hidden = Config({"TagRemovePreprocessor": {"enabled": True, "remove_input_tags": list(HIDDEN_INPUT_TAGS)}})
    return HTMLExporter(config=hidden)


def export_html(notebook: Path) -> Path:
    """A self-contained HTML file next to ``notebook`` (plotly.js is embedded by the notebook itself),
    without the code of the cells tagged as checks or plumbing (their outputs stay): the executed
    notebook keeps every cell for JupyterLab, its HTML reads as a report."""
    import nbformat

    book = nbformat.read(str(notebook), as_version=4)
    with _EXPORTING:
        body, _ = _html_exporter().from_notebook_node(book)
    target = Path(notebook).with_suffix(".html")
    target.write_text(mask_url(body), encoding="utf-8")
    return target


def _figures(folder: Path) -> dict[str, Any]:
    return {rec["name"]: rec["value"] for rec in read_records(folder)}


def _write_summary(folder: Path, parameters: dict[str, Any], notebooks: list[NotebookEntry]) -> None:
    summary = {
        "run": folder.name,
        "parameters": {k: mask_url(v) if isinstance(v, str) else v for k, v in parameters.items()},
        "notebooks": [n.to_json() for n in notebooks],
        "figures": _figures(folder),
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
