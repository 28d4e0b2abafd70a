"""Every target of a fleet side by side, from the run folders (pure: reads ``runs/<target>/``, no database).

Per target: its last attempt (``attempts.jsonl``, also when nothing ran), its latest finished run's
``bundle.json`` (findings by kind and severity, the top statements' share of database time, index
status, fixes) and the figures of its last runs. A section a run did not record is "not recorded"
(NaN in numbers), never an error; runs whose bundle another version of the kit wrote (``old
bundle`` in ``kit history``) are left out, as they are of every comparison. What
``notebooks/05_fleet.ipynb`` and ``kit fleet status`` show.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from kit.errors import ConfigError
from kit.fleet.spec import REPORT_DIR, load
from kit.fleet.target import ATTEMPTS_FILE, attempts
from kit.store import history
from kit.store.evidence import OK, Bundle, Row

NOT_RECORDED = "not recorded"
NOT_RUN = "not run"
FIX_STATES = ("planned", "applied", "kept", "reverted", "failed")
FIXES_FILE = "fixes.json"  # left by the fix loop in the run folder: a list of fixes with a verdict
TREND_FIGURES = ("findings_total", "statements_total_ms", "statements_calls", "indexes_missing", "fixes.kept")
_STATUS_COLS = [
    "target",
    "status",
    "last_attempt",
    "attempts",
    "runs",
    "as_of",
    "findings",
    "new_findings",
    "top_share_pct",
    "notebooks_ok",
    "message",
]


@dataclass(frozen=True)
class FleetView:
    runs_dir: Path
    targets: tuple[str, ...]
    status: pd.DataFrame  # one row per target
    findings: pd.DataFrame  # target, kind, severity, count (latest run)
    statements: pd.DataFrame  # target, rank, query, calls, total_ms, share_pct (latest run, top N)
    indexes: pd.DataFrame  # target, state, count (latest run)
    fixes: pd.DataFrame  # one row per target: planned ... failed (NaN: not recorded), source
    trend: pd.DataFrame  # target, run, created_at, figure, value (last runs)

    def to_frame(self) -> pd.DataFrame:
        return self.status

    @property
    def message(self) -> str:
        if not self.targets:
            return f"no fleet runs yet in {self.runs_dir} (run one with `kit fleet run FLEET_FILE`)"
        counts = self.status["status"].value_counts()
        return f"{len(self.targets)} target(s) in {self.runs_dir}: " + ", ".join(f"{n} {s}" for s, n in counts.items())

    def findings_matrix(self) -> pd.DataFrame:
        """Targets x kinds of finding, counts (0 where a target has none of a kind)."""
        if self.findings.empty:
            return pd.DataFrame(index=pd.Index(self.targets, name="target"))
        table = self.findings.pivot_table(index="target", columns="kind", values="count", aggfunc="sum", fill_value=0)
        return table.reindex(list(self.targets), fill_value=0)

    def fixes_table(self) -> pd.DataFrame:
        """The fixes per target as shown: counts, or "not recorded"."""
        shown = self.fixes.copy()
        for col in FIX_STATES:
            shown[col] = [NOT_RECORDED if pd.isna(v) else int(v) for v in shown[col]]
        return shown


def fleet_view(
    runs_dir: str | Path = "runs", *, fleet_file: str | Path = "", last: int = 10, top: int = 5
) -> FleetView:
    """The fleet's targets (the fleet file's, else every folder with an attempts log) side by side."""
    folder = history.locate_runs_dir(runs_dir)
    names = _targets(folder, fleet_file)
    status: list[dict[str, Any]] = []
    findings: list[dict[str, Any]] = []
    statements: list[dict[str, Any]] = []
    indexes: list[dict[str, Any]] = []
    fixes: list[dict[str, Any]] = []
    trend: list[pd.DataFrame] = []
    for name in names:
        runs = history.bundled(history.list_runs(folder / name))  # read once: every bundle of the target
        latest = _read(folder / name / runs["run"].iloc[-1]) if len(runs) else None
        status.append(_status_row(folder, name, latest, finished=len(runs)))
        if latest is not None:
            findings += _findings(name, latest)
            statements += _statements(name, latest, top=top)
            counts = latest.indexes.counts if latest.indexes else {}
            indexes += [{"target": name, "state": s, "count": int(n)} for s, n in counts.items()]
        fixes.append(_fixes(name, folder / name / latest.run if latest else None, latest))
        trend.append(_trend(folder / name, name, last))
    frame = pd.DataFrame(status, columns=_STATUS_COLS)
    frame["top_share_pct"] = pd.array([_top_share(statements, n) for n in names], dtype="Float64")
    for col in ("findings", "new_findings", "notebooks_ok"):
        frame[col] = pd.array(frame[col].tolist(), dtype="Int64")  # counts, <NA> where nothing ran
    return FleetView(
        runs_dir=folder,
        targets=tuple(names),
        status=frame,
        findings=pd.DataFrame(findings, columns=["target", "kind", "severity", "count"]),
        statements=pd.DataFrame(statements, columns=["target", "rank", "query", "calls", "total_ms", "share_pct"]),
        indexes=pd.DataFrame(indexes, columns=["target", "state", "count"]),
        fixes=pd.DataFrame(fixes, columns=["target", *FIX_STATES, "source"]),
        trend=pd.concat(trend, ignore_index=True) if trend else _empty_trend(),
    )


def _targets(folder: Path, fleet_file: str | Path) -> list[str]:
    if fleet_file:
        return list(load(fleet_file, check_parameters=False).names)
    if not folder.is_dir():
        return []
    return sorted(
        p.name for p in folder.iterdir() if p.is_dir() and p.name != REPORT_DIR and (p / ATTEMPTS_FILE).exists()
    )


def _read(run_folder: Path) -> Bundle | None:
    try:
        return history.read_bundle(run_folder)
    except ConfigError:  # gone or rewritten since it was listed
        return None


def _status_row(folder: Path, name: str, latest: Bundle | None, *, finished: int) -> dict[str, Any]:
    tried = attempts(folder, name)
    last = tried[-1] if tried else None
    derived = latest.derived if latest else {}
    return {
        "target": name,
        "status": last.status if last else NOT_RUN,
        "message": last.message if last else f"{name}: no attempt recorded yet",
        "last_attempt": last.started_at if last else None,
        "attempts": len(tried),
        "runs": finished,
        "as_of": latest.run if latest else None,
        "findings": len(latest.findings) if latest else None,
        "new_findings": int(sum(v for k, v in derived.items() if k.startswith("new_"))) if latest else None,
        "top_share_pct": None,
        "notebooks_ok": sum(n.status == OK for n in latest.notebooks) if latest else None,
    }


def _findings(name: str, bundle: Bundle) -> list[dict[str, Any]]:
    counts: dict[tuple[str, str], int] = {}
    for f in bundle.findings:
        key = (f.kind, f.severity or "unrated")
        counts[key] = counts.get(key, 0) + 1
    return [{"target": name, "kind": k, "severity": s, "count": n} for (k, s), n in sorted(counts.items())]


def _statements(name: str, bundle: Bundle, *, top: int) -> list[dict[str, Any]]:
    """The statements that took most of the database's time (pg_stat_statements since its reset,
    the kit's own left out), each with its share of the total."""
    snapshot: tuple[Row, ...] = bundle.statements.snapshot if bundle.statements else ()
    rows = [r for r in snapshot if r.get("total_ms") is not None]
    total = sum(float(r["total_ms"]) for r in rows)
    rows = sorted(rows, key=lambda r: float(r["total_ms"]), reverse=True)[:top]
    out = []
    for rank, r in enumerate(rows, start=1):
        share = 100.0 * float(r["total_ms"]) / total if total > 0 else 0.0
        out.append(
            {
                "target": name,
                "rank": rank,
                "query": " ".join(str(r.get("query", "")).split())[:120],
                "calls": r.get("calls"),
                "total_ms": float(r["total_ms"]),
                "share_pct": share,
            }
        )
    return out


def _top_share(statements: list[dict[str, Any]], name: str) -> float | None:
    shares = [s["share_pct"] for s in statements if s["target"] == name]
    return round(sum(shares), 1) if shares else None


def _fixes(name: str, run_folder: Path | None, bundle: Bundle | None) -> dict[str, Any]:
    """Fixes planned/applied/kept/reverted/failed: the run's ``fixes.*`` figures, else its
    ``fixes.json``, else not recorded."""
    row: dict[str, Any] = {"target": name, **{s: float("nan") for s in FIX_STATES}, "source": NOT_RECORDED}
    figures = bundle.figures if bundle else {}
    recorded = {s: figures[f"fixes.{s}"] for s in FIX_STATES if isinstance(figures.get(f"fixes.{s}"), (int, float))}
    if recorded:
        row.update({s: float(v) for s, v in recorded.items()})
        row["source"] = "figures"
        return row
    path = run_folder / FIXES_FILE if run_folder else None
    if path is not None and path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            return row
        fixes = data.get("fixes", []) if isinstance(data, dict) else data
        verdicts = [str(f.get("verdict", "planned")) for f in fixes if isinstance(f, dict)]
        row.update(
            {
                "planned": float(len(verdicts)),
                "kept": float(verdicts.count("kept")),
                "reverted": float(verdicts.count("reverted")),
                "failed": float(verdicts.count("failed")),
                "applied": float(verdicts.count("kept") + verdicts.count("reverted")),
                "source": FIXES_FILE,
            }
        )
    return row


def _trend(target_dir: Path, name: str, last: int) -> pd.DataFrame:
    frame = history.trend_frame(target_dir, last=last) if target_dir.is_dir() else _empty_trend()
    frame = frame[frame["figure"].isin(TREND_FIGURES)][["run", "created_at", "figure", "value"]].copy()
    frame.insert(0, "target", name)
    return frame


def _empty_trend() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "target": pd.Series(dtype=str),
            "run": pd.Series(dtype=str),
            "created_at": pd.Series(dtype="datetime64[ns, UTC]"),
            "figure": pd.Series(dtype=str),
            "value": pd.Series(dtype=float),
        }
    )
