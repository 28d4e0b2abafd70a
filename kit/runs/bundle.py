"""One machine-readable evidence bundle per ``kit run``: ``bundle.json`` in the run folder
(talks to PostgreSQL, read-only; the statistics are never reset).

It holds the run's parameters (masked), kit/package/server versions, the target database
(masked, no password: history groups runs by it), the pre-flight, the pg_stat_statements snapshot
and its difference from the previous run of the same target, index status, the audit's findings,
the figures the notebooks recorded with ``kit.record`` (used generically, whatever their names),
figures derived from all of that, and the list of artifacts. Its shape, the typed
:class:`~kit.store.evidence.Bundle`, and its schema version live in :mod:`kit.store.evidence`;
``Bundle.load`` reads it back.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import psycopg
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from kit import audit, indexes
from kit.config import mask_url, run_dir, target_key
from kit.db.engine import make_engine
from kit.errors import KitError
from kit.fixes.plan import declared_specs
from kit.safety import preflight
from kit.safety.preflight import statements_reset
from kit.store.evidence import (
    BUNDLE_FILE,
    Artifact,
    Bundle,
    Finding,
    IndexesSection,
    NotebookEntry,
    PreflightSection,
    Row,
    StatementsSection,
    Status,
    Versions,
)
from kit.store.history import finding_changes, previous_bundle
from kit.store.records import RECORDS_FILE, read_records, save_json

_PACKAGES = ("papermill", "sqlalchemy", "psycopg", "pandas", "plotly", "redis")
FINDINGS_FILE = "findings.json"
_OWN_FILES = {BUNDLE_FILE, RECORDS_FILE, "summary.json"}
_NOT_APPLIED = ("missing", "invalid", "differs")
_SECTION_ERRORS = (KitError, SQLAlchemyError, psycopg.Error, OSError)
T = TypeVar("T")


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask_url(value)
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def versions() -> Versions:
    packages: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return Versions(kit=metadata.version("dbperf-kit"), python=platform.python_version(), packages=packages)


def artifacts(folder: Path) -> tuple[Artifact, ...]:
    """Every file of the run folder but the bundle's own inputs: name, kind, bytes."""
    return tuple(
        Artifact(name=path.name, kind=path.suffix.lstrip("."), size=path.stat().st_size)
        for path in sorted(Path(folder).iterdir())
        if path.is_file() and path.name not in _OWN_FILES
    )


def figure_findings(figures: dict[str, Any]) -> tuple[Finding, ...]:
    """Findings carried by figures whose value is a list of strings (pure)."""
    out: list[Finding] = []
    for name, value in figures.items():
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            out += [Finding(kind=name, subject=v) for v in sorted(set(value))]
    return tuple(out)


def _records(frame: pd.DataFrame) -> tuple[Row, ...]:
    return tuple(json.loads(frame.to_json(orient="records", date_format="iso")))


@dataclass(frozen=True)
class _Sections:
    """What the bundle reads from the database; None: not collected (``errors`` says why) or,
    for indexes, nothing declared."""

    preflight: PreflightSection | None = None
    statements: StatementsSection | None = None
    indexes: IndexesSection | None = None
    audit_findings: tuple[Finding, ...] = ()


def _database_sections(
    url: str,
    previous: Bundle | None,
    errors: dict[str, str],
    *,
    migrations: str | None = None,
    snapshot: bool = False,
) -> _Sections:
    """Pre-flight, statements, indexes and (without the run's own snapshot) audit findings; a
    section that fails is named in ``errors``."""
    try:
        engine = make_engine(url)
    except KitError as exc:
        errors["database"] = mask_url(str(exc))
        return _Sections()
    try:
        sections = _Sections(
            preflight=_section("preflight", errors, lambda: _preflight(engine)),
            statements=_section("statements", errors, lambda: _statements(engine, previous)),
            indexes=_section("indexes", errors, lambda: _indexes(engine, migrations)),
        )
        if not snapshot:
            found = _section("audit_findings", errors, lambda: audit_findings(audit.run_audit(engine).findings()))
            sections = replace(sections, audit_findings=found or ())
        return sections
    finally:
        engine.dispose()


def _section(name: str, errors: dict[str, str], collect: Callable[[], T]) -> T | None:
    """What ``collect`` returns; None, and its error's first line in ``errors``, when it fails."""
    try:
        return collect()
    except _SECTION_ERRORS as exc:
        errors[name] = mask_url(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))
        return None


def _preflight(engine: Engine) -> PreflightSection:
    pf = preflight.check(engine)
    return PreflightSection(
        server_version=pf.server_version,
        safe_to_apply=pf.safe_to_apply,
        reasons=tuple(pf.reasons),
        warnings=tuple(pf.warnings),
        statements_reset=pf.statements_reset.isoformat() if pf.statements_reset else None,
        checks=_records(pf.to_frame()),
    )


def _statements(engine: Engine, previous: Bundle | None) -> StatementsSection:
    """The snapshot now, and what ran since the previous run (since the reset when stats were reset)."""
    with engine.connect() as conn:
        reset = statements_reset(conn)
        conn.rollback()
    now = audit.snapshot(engine)
    reset_iso = reset.isoformat() if reset else None
    before = pd.DataFrame(columns=now.columns)
    basis = "since the statistics were reset"
    prev = previous.statements if previous else None
    if previous and prev and prev.reset == reset_iso and prev.snapshot:
        before = pd.DataFrame(list(prev.snapshot))
        basis = f"since run {previous.run}"
    diff = audit.diff(before, now)
    return StatementsSection(
        reset=reset_iso,
        basis=basis,
        snapshot=_records(now),
        diff=_records(diff),
        calls=float(diff["calls"].sum()) if len(diff) else 0.0,
        total_ms=float(diff["total_ms"].sum()) if len(diff) else 0.0,
    )


def _indexes(engine: Engine, migrations: str | None) -> IndexesSection | None:
    """The declared indexes against the live ones: the run's migrations, the platform's on the
    platform's database, none elsewhere (None: nothing declared, nothing compared)."""
    declared = declared_specs(engine, migrations or None)
    if not declared.specs:
        return None
    status = indexes.index_status(engine, declared.specs)
    return IndexesSection(counts=status.counts(), rows=_records(status.to_frame()), declared_by=declared.source)


def audit_findings(found: pd.DataFrame) -> tuple[Finding, ...]:
    """Findings of :meth:`kit.audit.AuditReport.findings` as bundle findings (pure)."""
    return tuple(
        Finding(
            kind=r["check"],
            subject=str(r["subject"]),
            severity=r["severity"],
            detail=r.get("detail") or None,
            remediation=r.get("remediation") or None,
        )
        for r in _records(found)
    )


def index_findings(rows: Sequence[Row]) -> tuple[Finding, ...]:
    """Declared indexes that are not applied, as findings (pure)."""
    return tuple(
        Finding(kind=f"{r['state']}_indexes", subject=r["name"], severity="high")
        for r in rows
        if r["state"] in _NOT_APPLIED
    )


def snapshot_findings(found: pd.DataFrame, index_rows: pd.DataFrame | None = None) -> tuple[Finding, ...]:
    """The run's one snapshot of findings, taken by the audit notebook: the audit's, the declared
    indexes not applied, and the findings figures recorded so far; written to the run folder's
    ``findings.json``, which the bundle then uses as is (so ``audit.findings`` and the bundle's
    ``findings_total`` count the same list)."""
    folder = run_dir()
    figures = {r["name"]: r["value"] for r in read_records(folder)} if folder else {}
    rows = _records(index_rows) if index_rows is not None and len(index_rows) else ()
    out = audit_findings(found) + index_findings(rows) + figure_findings(figures)
    save_json(FINDINGS_FILE.removesuffix(".json"), [f.to_json() for f in out])
    return out


def collect(
    folder: Path,
    *,
    database_url: str | None,
    parameters: dict[str, Any],
    notebooks: Sequence[NotebookEntry],
    status: Status,
) -> Bundle:
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
        if target and database_url
        else _Sections()
    )
    if snapshot is not None:  # the audit notebook's one snapshot, plus findings figures recorded after it
        seen = {f.key for f in snapshot}
        findings = snapshot + tuple(f for f in figure_findings(figures) if f.key not in seen)
    else:
        findings = figure_findings(figures) + db.audit_findings + index_findings(db.indexes.rows if db.indexes else ())
    made_by = versions()
    bundle = Bundle(
        run=folder.name,
        created_at=datetime.now(UTC),
        status=status,
        target=target,
        previous_run=previous.run if previous else None,
        parameters=_masked(dict(parameters)),
        versions=replace(made_by, server=db.preflight.server_version) if db.preflight else made_by,
        notebooks=tuple(_masked_entry(n) for n in notebooks),
        preflight=db.preflight,
        statements=db.statements,
        indexes=db.indexes,
        findings=findings,
        figures=figures,
        artifacts=artifacts(folder),
        errors=errors,
    )
    return replace(bundle, derived=derived_figures(bundle, previous))


def _masked_entry(entry: NotebookEntry) -> NotebookEntry:
    return replace(
        entry,
        name=mask_url(entry.name),
        output=mask_url(entry.output) if entry.output else entry.output,
        html=mask_url(entry.html) if entry.html else entry.html,
    )


def _read_snapshot(folder: Path) -> tuple[Finding, ...] | None:
    path = Path(folder) / FINDINGS_FILE
    if not path.exists():
        return None
    try:
        return tuple(Finding.from_json(f) for f in json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError):  # not JSON, not a list, not findings: as if no snapshot was taken
        return None


def derived_figures(bundle: Bundle, previous: Bundle | None) -> dict[str, float]:
    """Counts the gate and the trends can use, whatever the notebooks recorded (pure)."""
    out: dict[str, float] = {}
    for f in bundle.findings:
        out[f"findings_{f.kind}"] = out.get(f"findings_{f.kind}", 0.0) + 1
    out["findings_total"] = float(len(bundle.findings))
    for state, n in (bundle.indexes.counts if bundle.indexes else {}).items():
        out[f"indexes_{state.replace(' ', '_')}"] = float(n)
    if bundle.statements:
        out["statements_calls"] = bundle.statements.calls
        out["statements_total_ms"] = bundle.statements.total_ms
    out.update(finding_changes(previous, bundle))
    return out
