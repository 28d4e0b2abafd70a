"""Runs over time: list the run folders per target database, find the previous run of a target,
build trend frames, compare two runs (pure: reads the runs' ``bundle.json`` files, no database).

A run folder is what ``kit run`` writes into ``runs/<UTC timestamp>/``; its ``bundle.json``
(:class:`kit.store.evidence.Bundle`) holds everything this module reads. A folder without a bundle
(a run that crashed or was killed before the end) is listed with status ``no bundle``; one whose
bundle another version of the kit wrote (another schema) with status ``old bundle``: it is
listed, never compared with, and ``kit compare`` on it says to re-run ``kit run``.

Only a run that finished ``ok`` is a baseline — the previous run the bundle's differences, the
workload's window, the gate and the trends compare with. A run ``interrupted`` (Ctrl-C, SIGTERM:
01 may be all it ran, an apply stopped half-way), ``failed`` (a notebook raised: its figures stop
at that cell, and every finding of a later run would look "new") or without a bundle is listed,
never compared with: the next run compares with the last run that finished.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pandas as pd

from kit.config import run_dir, target_key, url_from_env
from kit.errors import ConfigError
from kit.sqltext.refs import CONTROL, kind_of
from kit.store.evidence import BUNDLE_FILE, OK, STATUSES, Bundle, of_other_schema

NO_BUNDLE: Final = "no bundle"  # a run folder's status in list_runs when it has no readable bundle
OLD_BUNDLE: Final = "old bundle"  # ... when another version of the kit wrote its bundle
_CI_SUFFIXES = (("_lo", "_hi"), ("_ci_lo", "_ci_hi"))
_RUN_COLUMNS = ["run", "target", "status", "notebooks", "figures", "findings", "scale"]
_FIGURE_COLUMNS = ["figure", "a", "b", "change", "change_pct", "a_lo", "a_hi", "b_lo", "b_hi", "significant"]
_FINDING_COLUMNS = ["kind", "subject", "change"]


def locate_runs_dir(runs_dir: str | Path = "runs") -> Path:
    """Where the runs are: an absolute path as is; a relative one next to the ``kit run`` in
    progress (its parent folder), else under the working directory or its parent (a notebook
    runs with ``notebooks/`` as working directory)."""

    path = Path(runs_dir)
    if path.is_absolute():
        return path
    current = run_dir()
    if current is not None and current.parent.name == path.name:
        return current.parent.resolve()
    for base in (Path.cwd(), Path.cwd().parent):
        if (base / path).is_dir():
            return (base / path).resolve()
    return (Path.cwd() / path).resolve()


def read_bundle(folder: str | Path) -> Bundle:
    """The bundle of one run folder; ConfigError (one line) when the folder has none or another
    version of the kit wrote it."""
    return Bundle.load(Path(folder) / BUNDLE_FILE)


def resolve_run(run: str | Path, *, runs_dir: str | Path = "runs") -> Path:
    """A run folder from a path, a folder name under ``runs_dir``, or ``latest`` / ``previous``."""
    if str(run) in {"latest", "previous"}:
        with_bundle = [f for f in _folders(Path(runs_dir)) if (f / BUNDLE_FILE).exists()]
        index = -1 if str(run) == "latest" else -2
        if len(with_bundle) < -index:
            raise ConfigError(f"there is no {run} run in {runs_dir} ({len(with_bundle)} finished run(s))")
        return with_bundle[index]
    for candidate in (Path(run), Path(runs_dir) / str(run)):
        if (candidate / BUNDLE_FILE).exists():
            return candidate
    raise ConfigError(
        f"run {run} not found (no {BUNDLE_FILE} there nor in {runs_dir}/{run}); list runs with `kit history`"
    )


def _folders(runs_dir: Path) -> list[Path]:
    if not runs_dir.is_dir():
        return []
    return sorted(p for p in runs_dir.iterdir() if p.is_dir())  # UTC timestamps sort in time order


def list_runs(runs_dir: str | Path = "runs") -> pd.DataFrame:
    """One row per run folder, oldest first: run, target, status, notebooks, figures, findings."""
    rows = []
    for folder in _folders(Path(runs_dir)):
        try:
            b = read_bundle(folder)
        except ConfigError:
            status = OLD_BUNDLE if of_other_schema(folder / BUNDLE_FILE) else NO_BUNDLE
            rows.append(
                {
                    "run": folder.name,
                    "target": None,
                    "status": status,
                    "notebooks": 0,
                    "figures": 0,
                    "findings": 0,
                    "scale": None,
                }
            )
            continue
        rows.append(
            {
                "run": b.run,
                "target": b.target,
                "status": b.status,
                "notebooks": sum(n.status == OK for n in b.notebooks),
                "figures": len(b.figures),
                "findings": len(b.findings),
                "scale": b.parameters.get("scale"),
            }
        )
    return pd.DataFrame(rows, columns=_RUN_COLUMNS)


def bundled(runs: pd.DataFrame) -> pd.DataFrame:
    """The rows of :func:`list_runs` whose bundle this kit reads (ok, failed or interrupted)."""
    return runs[runs["status"].isin(STATUSES)]


def _readable(folder: Path) -> Bundle | None:
    """The bundle of ``folder``, None when it has none this kit reads (never a baseline, so skipped)."""
    if not (folder / BUNDLE_FILE).exists():
        return None
    try:
        return read_bundle(folder)
    except ConfigError:
        return None


def previous_bundle(runs_dir: str | Path, *, target: str, before: str) -> Bundle | None:
    """The latest run of ``target`` that finished ok whose name sorts before ``before`` (None: first run)."""
    for folder in reversed(_folders(Path(runs_dir))):
        if folder.name >= before:
            continue
        b = _readable(folder)
        if b is not None and b.target == target and b.is_baseline:
            return b
    return None


def _baselines(runs_dir: Path) -> list[Bundle]:
    """The bundles of the runs that finished ok, oldest first."""
    return [b for b in map(_readable, _folders(runs_dir)) if b is not None and b.is_baseline]


def numeric_figures(bundle: Bundle) -> dict[str, float]:
    """Recorded and derived figures that are numbers (bools count as 0/1)."""
    out: dict[str, float] = {}
    for source in (bundle.figures, bundle.derived):
        for name, value in source.items():
            if isinstance(value, bool):
                out[name] = float(value)
            elif isinstance(value, (int, float)) and math.isfinite(value):
                out[name] = float(value)
    return out


def _ci_of(name: str, figures: dict[str, float]) -> tuple[float | None, float | None]:
    for lo, hi in _CI_SUFFIXES:
        if f"{name}{lo}" in figures and f"{name}{hi}" in figures:
            return figures[f"{name}{lo}"], figures[f"{name}{hi}"]
    return None, None


def _is_ci_companion(name: str, figures: dict[str, float]) -> bool:
    return any(name.endswith(s) and name[: -len(s)] in figures for pair in _CI_SUFFIXES for s in pair)


def trend_frame(runs_dir: str | Path = "runs", *, target: str | None = None, last: int = 10) -> pd.DataFrame:
    """Long frame of the last ``last`` runs of ``target`` that finished ok (None: the latest such run's
    target): run, created_at, scale, figure, value, lo, hi — CI companions fold into lo/hi."""
    cols = ["run", "created_at", "target", "scale", "figure", "value", "lo", "hi"]
    bundles = _baselines(Path(runs_dir))
    if target is None and bundles:
        target = bundles[-1].target
    bundles = [b for b in bundles if b.target == target][-last:] if last > 0 else []
    rows = []
    for b in bundles:
        figures = numeric_figures(b)
        for name, value in figures.items():
            if _is_ci_companion(name, figures):
                continue
            lo, hi = _ci_of(name, figures)
            rows.append(
                {
                    "run": b.run,
                    "created_at": b.created_at,
                    "target": b.target,
                    "scale": b.parameters.get("scale"),
                    "figure": name,
                    "value": value,
                    "lo": lo,
                    "hi": hi,
                }
            )
    out = pd.DataFrame(rows, columns=cols)
    out["created_at"] = pd.to_datetime(out["created_at"], utc=True)
    return out


def finding_keys(bundle: Bundle) -> set[tuple[str, str]]:
    return {f.key for f in bundle.findings}


def finding_changes(before: Bundle | None, after: Bundle) -> dict[str, float]:
    """``new_<kind>`` and ``gone_<kind>`` counts for every kind of finding in either run (empty
    without a previous run: nothing is "new" on a first run)."""
    if before is None:
        return {}
    a, b = finding_keys(before), finding_keys(after)
    kinds = {k for k, _ in a | b}
    out: dict[str, float] = {}
    for kind in sorted(kinds):
        out[f"new_{kind}"] = float(sum(1 for k, _ in b - a if k == kind))
        out[f"gone_{kind}"] = float(sum(1 for k, _ in a - b if k == kind))
    return out


@dataclass(frozen=True)
class Comparison:
    """What changed from run ``a`` to run ``b`` of one target."""

    a: str
    b: str
    figures: pd.DataFrame  # figure, a, b, change, change_pct, a_lo, a_hi, b_lo, b_hi, significant
    findings: pd.DataFrame  # kind, subject, change ("new" | "gone")

    def to_frame(self) -> pd.DataFrame:
        return self.figures

    def changed(self) -> pd.DataFrame:
        """Figures whose value moved (and, where both runs have a CI, whose CIs do not overlap)."""
        moved = self.figures["change"].fillna(0) != 0
        return self.figures[moved & self.figures["significant"].fillna(True).astype(bool)]


def _overlap(a: tuple[float | None, float | None], b: tuple[float | None, float | None]) -> bool | None:
    """Whether two confidence intervals overlap (None: either run has none for the figure)."""
    (alo, ahi), (blo, bhi) = a, b
    if alo is None or ahi is None or blo is None or bhi is None:
        return None
    return not (bhi < alo or blo > ahi)


def compare(a: Bundle, b: Bundle) -> Comparison:
    """Compare two bundles: every numeric figure side by side, and the findings that came or went."""
    fa, fb = numeric_figures(a), numeric_figures(b)
    rows = []
    for name in sorted(set(fa) | set(fb)):
        if _is_ci_companion(name, fa) or _is_ci_companion(name, fb):
            continue
        va, vb = fa.get(name), fb.get(name)
        (alo, ahi), (blo, bhi) = _ci_of(name, fa), _ci_of(name, fb)
        change = vb - va if va is not None and vb is not None else None
        pct = 100.0 * change / abs(va) if change is not None and va else None
        overlap = _overlap((alo, ahi), (blo, bhi))
        rows.append(
            {
                "figure": name,
                "a": va,
                "b": vb,
                "change": change,
                "change_pct": pct,
                "a_lo": alo,
                "a_hi": ahi,
                "b_lo": blo,
                "b_hi": bhi,
                "significant": None if overlap is None else not overlap,
            }
        )
    ka, kb = finding_keys(a), finding_keys(b)
    found = [{"kind": k, "subject": s, "change": "new"} for k, s in sorted(kb - ka)]
    found += [{"kind": k, "subject": s, "change": "gone"} for k, s in sorted(ka - kb)]
    return Comparison(
        a=a.run,
        b=b.run,
        figures=pd.DataFrame(rows, columns=_FIGURE_COLUMNS),
        findings=pd.DataFrame(found, columns=_FINDING_COLUMNS),
    )


def statement_trend(runs_dir: str | Path = "runs", *, target: str | None, top: int = 5, last: int = 10) -> pd.DataFrame:
    """Mean time per call of the ``top`` statements of the latest run, in each of the last ``last``
    runs of ``target``: from each bundle's pg_stat_statements window, and the medians the loop
    measured before and after its apply (``loop.json``) where that run has them."""
    cols = ["run", "created_at", "statement", "queryid", "mean_ms", "calls", "before_ms", "after_ms"]
    folder = Path(runs_dir)
    bundles = [b for b in _baselines(folder) if b.target == target][-last:] if last > 0 else []
    windows = [(b, b.statements.diff if b.statements else ()) for b in bundles]
    if not windows or not windows[-1][1]:
        return pd.DataFrame(columns=cols)
    statements = [r for r in windows[-1][1] if kind_of(str(r.get("query", ""))) not in CONTROL]
    latest = sorted(statements, key=lambda r: -(r.get("total_ms") or 0))[:top]
    labels = {str(r["queryid"]): f"{r['queryid']}: {' '.join(str(r.get('query', '')).split())[:50]}" for r in latest}
    rows = []
    for b, diff in windows:
        loop = _loop_statements(folder / b.run)
        for r in diff:
            key = str(r["queryid"])
            if key in labels:
                measured = loop.get(key, {})
                rows.append(
                    {
                        "run": b.run,
                        "created_at": b.created_at,
                        "statement": labels[key],
                        "queryid": key,
                        "mean_ms": r.get("mean_ms"),
                        "calls": r.get("calls"),
                        "before_ms": measured.get("before_ms"),
                        "after_ms": measured.get("after_ms"),
                    }
                )
    out = pd.DataFrame(rows, columns=cols)
    out["created_at"] = pd.to_datetime(out["created_at"], utc=True)
    return out


def _loop_statements(folder: Path) -> dict[str, dict[str, Any]]:
    path = folder / "loop.json"
    if not path.exists():
        return {}
    try:
        return {str(s["key"]): s for s in json.loads(path.read_text(encoding="utf-8")).get("statements", [])}
    except ValueError:
        return {}


def target_from_env(database_env: str = "KIT_DATABASE_URL") -> str | None:
    """The target key of the database ``database_env`` names (None when it names none)."""
    try:
        return target_key(url_from_env(database_env))
    except ConfigError:
        return None


@dataclass(frozen=True)
class Trends:
    """What the trend notebook shows: the runs of one target, the figures over time, the last comparison."""

    runs_dir: Path
    target: str | None
    runs: pd.DataFrame  # list_runs rows of the target
    trend: pd.DataFrame  # trend_frame rows
    last: Comparison | None  # previous -> latest run of the target that finished ok (None: fewer than two)

    def to_frame(self) -> pd.DataFrame:
        return self.runs

    def changes(self) -> pd.DataFrame:
        """Figures that moved from the previous to the latest run (empty with fewer than two runs)."""
        return self.last.changed() if self.last else pd.DataFrame(columns=_FIGURE_COLUMNS)

    def findings(self) -> pd.DataFrame:
        """Findings new or gone in the latest run (empty with fewer than two runs)."""
        return self.last.findings if self.last else pd.DataFrame(columns=_FINDING_COLUMNS)

    @property
    def message(self) -> str:
        if self.runs.empty:
            return f"no runs yet for {self.target or 'any database'} in {self.runs_dir} (make one with `kit run`)"
        return f"{len(self.runs)} run(s) of {self.target} in {self.runs_dir}"


def trends(runs_dir: str | Path = "runs", *, database_env: str = "KIT_DATABASE_URL", last: int = 10) -> Trends:
    """The runs of the database ``database_env`` names (else of the latest run's database)."""
    folder = locate_runs_dir(runs_dir)
    runs = bundled(list_runs(folder))
    target = target_from_env(database_env)
    if target is None or target not in set(runs["target"]):
        target = runs["target"].iloc[-1] if len(runs) and target is None else target
    mine = runs[runs["target"] == target].tail(last).reset_index(drop=True) if last > 0 else runs.head(0)
    trend = trend_frame(folder, target=target, last=last) if len(mine) else trend_frame(folder, last=0)
    comparison = None
    finished = mine[mine["status"] == OK]  # an interrupted or failed run is listed, never compared
    if len(finished) >= 2:
        comparison = compare(
            read_bundle(folder / finished["run"].iloc[-2]), read_bundle(folder / finished["run"].iloc[-1])
        )
    return Trends(runs_dir=folder, target=target, runs=mine, trend=trend, last=comparison)
