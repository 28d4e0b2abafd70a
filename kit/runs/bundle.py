"""One machine-readable evidence bundle per ``kit run``: ``bundle.json`` in the run folder
(talks to PostgreSQL, read-only; the statistics are never reset).

It holds the run's parameters (masked), kit/package/server versions, the target database
(masked, no password: history groups runs by it), the pre-flight, the pg_stat_statements snapshot
and its difference from the previous run of the same target, index status, the audit's findings,
the figures the notebooks recorded with ``kit.record`` (used generically, whatever their names),
figures derived from all of that, and the list of artifacts. ``json.load`` reads it in one call.

Findings: the audit's (kind = check name, with a ``detail`` such as the covering index), the
declared indexes that are not applied (kind ``missing_indexes``, ``invalid_indexes``,
``differs_indexes``) and every recorded figure whose value is a list of strings (kind = the
figure's name, e.g. ``kit.record("n_plus_one", fingerprints)``). The audit notebook takes one
snapshot of them (``findings.json``, :func:`snapshot_findings`); the bundle uses that snapshot
rather than auditing again, so the run's ``audit.findings`` and ``findings_total`` agree. The
declared indexes are the run's ``migrations`` parameter, else the platform's migration on the
platform's database, else none (no migration of another application is compared).
Derived figures: ``findings_<kind>``, ``indexes_<state>``, ``statements_calls``,
``statements_total_ms`` and, against the previous run, ``new_<kind>`` / ``gone_<kind>``.
"""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
from sqlalchemy.exc import SQLAlchemyError

from kit import audit, indexes
from kit.config import mask_url, run_dir, target_key
from kit.db.engine import make_engine
from kit.errors import KitError
from kit.fixes.plan import declared_specs
from kit.safety import preflight
from kit.safety.preflight import statements_reset
from kit.store.history import BUNDLE_FILE, finding_changes, previous_bundle
from kit.store.records import RECORDS_FILE, read_records, save_json

SCHEMA_VERSION = 1
_PACKAGES = ("papermill", "sqlalchemy", "psycopg", "pandas", "plotly", "redis")
FINDINGS_FILE = "findings.json"
_OWN_FILES = {BUNDLE_FILE, RECORDS_FILE, "summary.json"}
_NOT_APPLIED = ("missing", "invalid", "differs")


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask_url(value)
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def versions() -> dict[str, Any]:
    packages = {}
    for name in _PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {"kit": metadata.version("dbperf-kit"), "python": platform.python_version(), "packages": packages}


def artifacts(folder: Path) -> list[dict[str, Any]]:
    """Every file of the run folder but the bundle's own inputs: name, kind, bytes."""
    out = []
    for path in sorted(Path(folder).iterdir()):
        if path.is_file() and path.name not in _OWN_FILES:
            out.append({"name": path.name, "kind": path.suffix.lstrip("."), "bytes": path.stat().st_size})
    return out


def figure_findings(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """Findings carried by figures whose value is a list of strings (pure)."""
    out = []
    for name, value in figures.items():
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            out += [{"kind": name, "subject": v, "severity": None, "detail": None} for v in sorted(set(value))]
    return out


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(frame.to_json(orient="records", date_format="iso"))


def _database_sections(
    url: str,
    previous: dict[str, Any] | None,
    errors: dict[str, str],
    *,
    migrations: str | None = None,
    snapshot: bool = False,
) -> dict[str, Any]:
    """Pre-flight, statements, indexes and (without the run's own snapshot) audit findings; a
    section that fails is named in ``errors``."""
    out: dict[str, Any] = {}
    try:
        engine = make_engine(url)
    except KitError as exc:
        errors["database"] = mask_url(str(exc))
        return out
    sections = [("preflight", _preflight), ("statements", _statements), ("indexes", _indexes)]
    if not snapshot:
        sections.append(("audit_findings", _audit_findings))
    try:
        for section, collect in sections:
            try:
                out[section] = collect(
                    engine, previous, preflight=preflight, audit=audit, indexes=indexes, migrations=migrations
                )
            except (KitError, SQLAlchemyError, psycopg.Error, OSError) as exc:
                errors[section] = mask_url(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))
    finally:
        engine.dispose()
    return out


def _preflight(engine, previous, *, preflight, **_) -> dict[str, Any]:
    pf = preflight.check(engine)
    return {
        "server_version": pf.server_version,
        "safe_to_apply": pf.safe_to_apply,
        "reasons": list(pf.reasons),
        "warnings": list(pf.warnings),
        "statements_reset": pf.statements_reset.isoformat() if pf.statements_reset else None,
        "checks": _records(pf.to_frame()),
    }


def _statements(engine, previous, *, audit, **_) -> dict[str, Any]:
    """The snapshot now, and what ran since the previous run (since the reset when stats were reset)."""
    with engine.connect() as conn:
        reset = statements_reset(conn)
        conn.rollback()
    now = audit.snapshot(engine)
    reset_iso = reset.isoformat() if reset else None
    before = pd.DataFrame(columns=now.columns)
    basis = "since the statistics were reset"
    prev = (previous or {}).get("statements")
    if prev and prev.get("reset") == reset_iso and prev.get("snapshot"):
        before = pd.DataFrame(prev["snapshot"])
        basis = f"since run {previous['run']}"
    diff = audit.diff(before, now)
    return {
        "reset": reset_iso,
        "basis": basis,
        "snapshot": _records(now),
        "diff": _records(diff),
        "calls": float(diff["calls"].sum()) if len(diff) else 0.0,
        "total_ms": float(diff["total_ms"].sum()) if len(diff) else 0.0,
    }


def _indexes(engine, previous, *, indexes, migrations=None, **_) -> dict[str, Any] | None:
    """The declared indexes against the live ones: the run's migrations, the platform's on the
    platform's database, none elsewhere (None: nothing declared, nothing compared)."""
    declared = declared_specs(engine, migrations or None)
    if not declared.specs:
        return None
    status = indexes.index_status(engine, declared.specs)
    return {"counts": status.counts(), "rows": _records(status.to_frame()), "declared_by": declared.source}


def _audit_findings(engine, previous, *, audit, **_) -> list[dict[str, Any]]:
    return audit_findings(audit.run_audit(engine).findings())


def audit_findings(found: pd.DataFrame) -> list[dict[str, Any]]:
    """Findings of :meth:`kit.audit.AuditReport.findings` as bundle findings (pure)."""
    return [
        {"kind": r["check"], "subject": r["subject"], "severity": r["severity"], "detail": r.get("detail") or None}
        for r in _records(found)
    ]


def index_findings(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Declared indexes that are not applied, as findings (pure)."""
    return [
        {"kind": f"{r['state']}_indexes", "subject": r["name"], "severity": "high", "detail": None}
        for r in rows
        if r["state"] in _NOT_APPLIED
    ]


def snapshot_findings(found: pd.DataFrame, index_rows: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    """The run's one snapshot of findings, taken by the audit notebook: the audit's, the declared
    indexes not applied, and the findings figures recorded so far; written to the run folder's
    ``findings.json``, which the bundle then uses as is (so ``audit.findings`` and the bundle's
    ``findings_total`` count the same list)."""
    folder = run_dir()
    figures = {r["name"]: r["value"] for r in read_records(folder)} if folder else {}
    rows = _records(index_rows) if index_rows is not None and len(index_rows) else []
    out = audit_findings(found) + index_findings(rows) + figure_findings(figures)
    save_json(FINDINGS_FILE.removesuffix(".json"), out)
    return out


def collect(
    folder: Path, *, database_url: str | None, parameters: dict[str, Any], notebooks: list[dict[str, Any]], status: str
) -> dict[str, Any]:
    """Everything about the run in ``folder``; database sections only when ``database_url`` is given."""
    folder = Path(folder)
    figures = {r["name"]: r["value"] for r in read_records(folder)}
    errors: dict[str, str] = {}
    target = None
    if database_url:
        try:
            target = target_key(database_url)
        except KitError as exc:
            errors["database"] = mask_url(str(exc))
    previous = previous_bundle(folder.parent, target=target, before=folder.name) if target else None
    snapshot = _read_snapshot(folder)
    db = (
        _database_sections(
            database_url, previous, errors, migrations=parameters.get("migrations"), snapshot=snapshot is not None
        )
        if target
        else {}
    )
    if snapshot is not None:  # the audit notebook's one snapshot, plus findings figures recorded after it
        seen = {(f["kind"], str(f["subject"])) for f in snapshot}
        findings = snapshot + [f for f in figure_findings(figures) if (f["kind"], str(f["subject"])) not in seen]
    else:
        findings = figure_findings(figures) + db.get("audit_findings", [])
        findings += index_findings((db.get("indexes") or {}).get("rows", []))
    bundle: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "run": folder.name,
        "created_at": datetime.now(UTC).isoformat(),
        "status": status,
        "target": target,
        "previous_run": previous["run"] if previous else None,
        "parameters": _masked(dict(parameters)),
        "versions": versions(),
        "notebooks": _masked(notebooks),
        "preflight": db.get("preflight"),
        "statements": db.get("statements"),
        "indexes": db.get("indexes"),
        "findings": findings,
        "figures": figures,
        "artifacts": artifacts(folder),
        "errors": errors,
    }
    if bundle["preflight"]:
        bundle["versions"]["server"] = bundle["preflight"]["server_version"]
    bundle["derived"] = derived_figures(bundle, previous)
    return bundle


def _read_snapshot(folder: Path) -> list[dict[str, Any]] | None:
    path = Path(folder) / FINDINGS_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None


def derived_figures(bundle: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, float]:
    """Counts the gate and the trends can use, whatever the notebooks recorded (pure)."""
    out: dict[str, float] = {}
    for f in bundle["findings"]:
        out[f"findings_{f['kind']}"] = out.get(f"findings_{f['kind']}", 0.0) + 1
    out["findings_total"] = float(len(bundle["findings"]))
    for state, n in ((bundle.get("indexes") or {}).get("counts") or {}).items():
        out[f"indexes_{state.replace(' ', '_')}"] = float(n)
    if bundle.get("statements"):
        out["statements_calls"] = bundle["statements"]["calls"]
        out["statements_total_ms"] = bundle["statements"]["total_ms"]
    out.update(finding_changes(previous, bundle))
    return out


def write(folder: Path, bundle: dict[str, Any]) -> Path:
    path = Path(folder) / BUNDLE_FILE
    path.write_text(json.dumps(bundle, indent=1, default=str), encoding="utf-8")
    return path
