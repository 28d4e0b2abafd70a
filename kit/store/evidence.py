"""The evidence bundle's shape: a run folder's ``bundle.json`` as frozen dataclasses, versioned,
written and read back here (pure: one JSON file in or out).

    Bundle               schema, run, created_at, status, target, previous_run, parameters
    ├── versions         Versions: kit, python, packages, server
    ├── notebooks        NotebookEntry, one per notebook that ran
    ├── preflight        PreflightSection | None: the pre-flight's verdict and checks
    ├── statements       StatementsSection | None: pg_stat_statements now, and since the previous run
    ├── indexes          IndexesSection | None: the declared indexes against the live ones
    ├── findings         Finding, one per kind and subject
    ├── figures          what the notebooks recorded with ``kit.record``: name -> JSON value
    ├── artifacts        Artifact, one per file of the run folder
    ├── errors           the sections that could not be collected: section -> one line
    └── derived          the counts the gate and the trends use: name -> float

The JSON keeps the keys of schema 1, so whatever reads it by key (``json.load``, the demo's
benchmarks) reads it as before. Schema 2 is the first written from these classes: every key is
always there (``versions.server`` is null without a database) and the reader checks each type.
:meth:`Bundle.load` refuses a bundle of another schema with one line saying to re-run
``kit run``. Rows of frames (statements, the pre-flight's checks, index status) stay dicts as
pandas writes them: their columns belong to the modules that make the frames.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

from kit.errors import ConfigError

SCHEMA_VERSION: Final = 2
BUNDLE_FILE: Final = "bundle.json"

Status = Literal["ok", "failed", "interrupted"]  # a run's; only "ok" is ever a baseline
OK: Final = "ok"
FAILED: Final = "failed"
INTERRUPTED: Final = "interrupted"
STATUSES: tuple[Status, ...] = (OK, FAILED, INTERRUPTED)
_STATUS_OF: dict[str, Status] = {s: s for s in STATUSES}

Row = dict[str, Any]  # one row of a frame, as ``DataFrame.to_json(orient="records")`` writes it

_ABSENT: Final = object()
_RERUN: Final = "re-run `kit run` to get a new bundle"


class _Malformed(ValueError):
    """A value of the JSON is missing or of the wrong type; its message names the key."""


def _raw(data: Mapping[str, Any], key: str, where: str, default: object) -> Any:
    value = data.get(key, default)
    if value is _ABSENT:
        raise _Malformed(f"{where}{key} is missing")
    return value


def _wrong(where: str, key: str, value: object, expected: str) -> _Malformed:
    return _Malformed(f"{where}{key} is {type(value).__name__} {value!r:.40}, expected {expected}")


def _text(data: Mapping[str, Any], key: str, where: str, default: object = _ABSENT) -> str:
    value = _raw(data, key, where, default)
    if not isinstance(value, str):
        raise _wrong(where, key, value, "a string")
    return value


def _maybe_text(data: Mapping[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise _wrong(where, key, value, "a string or null")
    return value


def _number(data: Mapping[str, Any], key: str, where: str, default: object = _ABSENT) -> float:
    value = _raw(data, key, where, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _wrong(where, key, value, "a number")
    return float(value)


def _flag(data: Mapping[str, Any], key: str, where: str) -> bool:
    value = _raw(data, key, where, _ABSENT)
    if not isinstance(value, bool):
        raise _wrong(where, key, value, "true or false")
    return value


def _object(value: Any, where: str, key: str = "") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _wrong(where, key, value, "an object")
    return value


def _mapping(data: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    return _object(data.get(key, {}), where, key)


def _list(data: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise _wrong(where, key, value, "a list")
    return value


def _texts(data: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    values = _list(data, key, where)
    if not all(isinstance(v, str) for v in values):
        raise _wrong(where, key, values, "a list of strings")
    return tuple(values)


def _rows(data: Mapping[str, Any], key: str, where: str) -> tuple[Row, ...]:
    return tuple(_object(r, where, f"{key}[{i}]") for i, r in enumerate(_list(data, key, where)))


def _section(data: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = data.get(key)
    return None if value is None else _object(value, "", key)


@dataclass(frozen=True)
class Versions:
    """What made the run: the kit, Python, the packages it leans on, the server (None: no database)."""

    kit: str
    python: str
    packages: dict[str, str | None] = field(default_factory=dict)  # None: not installed
    server: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kit": self.kit, "python": self.python, "packages": dict(self.packages), "server": self.server}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Versions:
        packages = _mapping(data, "packages", "versions.")
        if not all(v is None or isinstance(v, str) for v in packages.values()):
            raise _wrong("versions.", "packages", packages, "package versions (strings or null)")
        return cls(
            kit=_text(data, "kit", "versions."),
            python=_text(data, "python", "versions."),
            packages=packages,
            server=_maybe_text(data, "server", "versions."),
        )


@dataclass(frozen=True)
class NotebookEntry:
    """One notebook of the run: its status and the files it left in the run folder."""

    name: str
    status: str  # ok | failed | interrupted
    seconds: float = 0.0
    output: str | None = None  # the executed notebook's file name
    html: str | None = None  # its HTML export's (None: not exported, the notebook failed)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seconds": self.seconds,
            "status": self.status,
            "output": self.output,
            "html": self.html,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "notebooks[]") -> NotebookEntry:
        where += "."
        return cls(
            name=_text(data, "name", where),
            status=_text(data, "status", where),
            seconds=_number(data, "seconds", where, 0.0),
            output=_maybe_text(data, "output", where),
            html=_maybe_text(data, "html", where),
        )


@dataclass(frozen=True)
class PreflightSection:
    """The pre-flight of the audited database (:mod:`kit.safety.preflight`)."""

    server_version: str
    safe_to_apply: bool
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    statements_reset: str | None = None  # when pg_stat_statements was last reset, ISO 8601
    checks: tuple[Row, ...] = ()  # check, value, verdict

    def to_json(self) -> dict[str, Any]:
        return {
            "server_version": self.server_version,
            "safe_to_apply": self.safe_to_apply,
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
            "statements_reset": self.statements_reset,
            "checks": list(self.checks),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PreflightSection:
        where = "preflight."
        return cls(
            server_version=_text(data, "server_version", where),
            safe_to_apply=_flag(data, "safe_to_apply", where),
            reasons=_texts(data, "reasons", where),
            warnings=_texts(data, "warnings", where),
            statements_reset=_maybe_text(data, "statements_reset", where),
            checks=_rows(data, "checks", where),
        )


@dataclass(frozen=True)
class StatementsSection:
    """pg_stat_statements at the end of the run, and what ran since the previous run of the target."""

    reset: str | None  # when the statistics were last reset, ISO 8601 (None: unknown)
    basis: str  # "since run <name>" | "since the statistics were reset"
    snapshot: tuple[Row, ...] = ()  # queryid, query, calls, total_ms, rows: the counters now
    diff: tuple[Row, ...] = ()  # queryid, query, calls, total_ms, mean_ms, rows: over the window
    calls: float = 0.0  # over the window
    total_ms: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "reset": self.reset,
            "basis": self.basis,
            "snapshot": list(self.snapshot),
            "diff": list(self.diff),
            "calls": self.calls,
            "total_ms": self.total_ms,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StatementsSection:
        where = "statements."
        return cls(
            reset=_maybe_text(data, "reset", where),
            basis=_text(data, "basis", where),
            snapshot=_rows(data, "snapshot", where),
            diff=_rows(data, "diff", where),
            calls=_number(data, "calls", where, 0.0),
            total_ms=_number(data, "total_ms", where, 0.0),
        )


@dataclass(frozen=True)
class IndexesSection:
    """The declared indexes against the live ones (:func:`kit.indexes.index_status`)."""

    counts: dict[str, int]  # state -> number of declared indexes in it
    rows: tuple[Row, ...] = ()  # name, table, state, ...: one per declared index
    declared_by: str = ""  # where the declared indexes came from

    def to_json(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "rows": list(self.rows), "declared_by": self.declared_by}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IndexesSection:
        where = "indexes."
        counts = _mapping(data, "counts", where)
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in counts.values()):
            raise _wrong(where, "counts", counts, "whole numbers")
        return cls(counts=counts, rows=_rows(data, "rows", where), declared_by=_text(data, "declared_by", where, ""))


@dataclass(frozen=True)
class Finding:
    """Something the run found: an audit check's row, a declared index not applied, a recorded
    fingerprint. ``kind`` names it (the gate's ``new_<kind>``), ``subject`` is what it is about."""

    kind: str
    subject: str
    severity: str | None = None  # None: the finding carries none (a recorded figure's)
    detail: str | None = None
    remediation: str | None = None  # what to do, as the audit check says it (absent from older bundles)

    @property
    def key(self) -> tuple[str, str]:
        """What makes two runs' findings the same one."""
        return (self.kind, self.subject)

    def to_json(self) -> dict[str, Any]:
        out = {"kind": self.kind, "subject": self.subject, "severity": self.severity, "detail": self.detail}
        return out | ({"remediation": self.remediation} if self.remediation is not None else {})

    @classmethod
    def from_json(cls, data: Any, where: str = "findings[]") -> Finding:
        """A finding from its JSON object; ValueError naming the key when it is not one."""
        data = _object(data, where)
        where += "."
        return cls(
            kind=_text(data, "kind", where),
            subject=_text(data, "subject", where),
            severity=_maybe_text(data, "severity", where),
            detail=_maybe_text(data, "detail", where),
            remediation=_maybe_text(data, "remediation", where),
        )


@dataclass(frozen=True)
class Artifact:
    """A file of the run folder (the bundle's own inputs left out)."""

    name: str
    kind: str  # the file's extension: ipynb, html, json, ...
    size: int  # bytes; the JSON key is "bytes"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "bytes": self.size}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "artifacts[]") -> Artifact:
        where += "."
        return cls(
            name=_text(data, "name", where), kind=_text(data, "kind", where), size=int(_number(data, "bytes", where))
        )


@dataclass(frozen=True)
class Bundle:
    """Everything about one run, as ``bundle.json`` holds it (see the module's docstring)."""

    run: str  # the run folder's name, a UTC timestamp
    created_at: datetime  # aware, UTC
    status: Status
    target: str | None = None  # the audited database, masked (None: no database)
    previous_run: str | None = None  # the run compared with (None: a first run)
    parameters: dict[str, Any] = field(default_factory=dict)  # masked
    versions: Versions | None = None
    notebooks: tuple[NotebookEntry, ...] = ()
    preflight: PreflightSection | None = None
    statements: StatementsSection | None = None
    indexes: IndexesSection | None = None
    findings: tuple[Finding, ...] = ()
    figures: dict[str, Any] = field(default_factory=dict)
    artifacts: tuple[Artifact, ...] = ()
    errors: dict[str, str] = field(default_factory=dict)
    derived: dict[str, float] = field(default_factory=dict)

    @property
    def is_baseline(self) -> bool:
        """Whether later runs may be compared with this one: it finished, and ``ok``."""
        return self.status == OK

    def to_json(self) -> dict[str, Any]:
        """The JSON object of ``bundle.json``, keys in the order schema 1 wrote them."""
        return {
            "schema": SCHEMA_VERSION,
            "run": self.run,
            "created_at": self.created_at.isoformat(),
            "status": self.status,
            "target": self.target,
            "previous_run": self.previous_run,
            "parameters": dict(self.parameters),
            "versions": self.versions.to_json() if self.versions else None,
            "notebooks": [n.to_json() for n in self.notebooks],
            "preflight": self.preflight.to_json() if self.preflight else None,
            "statements": self.statements.to_json() if self.statements else None,
            "indexes": self.indexes.to_json() if self.indexes else None,
            "findings": [f.to_json() for f in self.findings],
            "figures": dict(self.figures),
            "artifacts": [a.to_json() for a in self.artifacts],
            "errors": dict(self.errors),
            "derived": dict(self.derived),
        }

    @classmethod
    def from_json(cls, data: Any, *, source: str | Path = BUNDLE_FILE) -> Bundle:
        """The bundle in the JSON object ``data`` read from ``source``: ConfigError (one line) when
        it is of another schema or malformed."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source} is not a kit bundle (a JSON {type(data).__name__}); {_RERUN}")
        _check_schema(data, source)
        try:
            return cls._parse(data)
        except _Malformed as exc:
            raise ConfigError(f"{source} is not a valid bundle of schema {SCHEMA_VERSION} ({exc}); {_RERUN}") from None

    @classmethod
    def _parse(cls, data: dict[str, Any]) -> Bundle:
        text = _text(data, "status", "")
        status = _STATUS_OF.get(text)
        if status is None:
            raise _wrong("", "status", text, " or ".join(STATUSES))
        derived = _mapping(data, "derived", "")
        errors = _mapping(data, "errors", "")
        if not all(isinstance(v, str) for v in errors.values()):
            raise _wrong("", "errors", errors, "one line per section")
        versions, preflight = _section(data, "versions"), _section(data, "preflight")
        statements, indexes = _section(data, "statements"), _section(data, "indexes")
        return cls(
            run=_text(data, "run", ""),
            created_at=_timestamp(data, "created_at"),
            status=status,
            target=_maybe_text(data, "target", ""),
            previous_run=_maybe_text(data, "previous_run", ""),
            parameters=_mapping(data, "parameters", ""),
            versions=Versions.from_json(versions) if versions is not None else None,
            notebooks=tuple(
                NotebookEntry.from_json(_object(n, "", f"notebooks[{i}]"), f"notebooks[{i}]")
                for i, n in enumerate(_list(data, "notebooks", ""))
            ),
            preflight=PreflightSection.from_json(preflight) if preflight is not None else None,
            statements=StatementsSection.from_json(statements) if statements is not None else None,
            indexes=IndexesSection.from_json(indexes) if indexes is not None else None,
            findings=tuple(Finding.from_json(f, f"findings[{i}]") for i, f in enumerate(_list(data, "findings", ""))),
            figures=_mapping(data, "figures", ""),
            artifacts=tuple(
                Artifact.from_json(_object(a, "", f"artifacts[{i}]"), f"artifacts[{i}]")
                for i, a in enumerate(_list(data, "artifacts", ""))
            ),
            errors=errors,
            derived={k: _number(derived, k, "derived.") for k in derived},
        )

    @classmethod
    def load(cls, path: str | Path) -> Bundle:
        """The bundle in ``path`` (a ``bundle.json``, or the run folder holding one); ConfigError,
        one line, when there is none or it is of another schema."""
        path = Path(path)
        if path.is_dir():
            path = path / BUNDLE_FILE
        return cls.from_json(read_json(path), source=path)

    def write(self, folder: str | Path) -> Path:
        """Write ``bundle.json`` into the run folder ``folder``; its path."""
        path = Path(folder) / BUNDLE_FILE
        path.write_text(json.dumps(self.to_json(), indent=1, default=str), encoding="utf-8")
        return path


def read_json(path: Path) -> Any:
    """The JSON value in ``path``; ConfigError, one line, when it cannot be read as JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"no {path.name} in {path.parent}: not a finished kit run; list runs with `kit history`"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{path} cannot be read as JSON ({type(exc).__name__}); {_RERUN}") from None


def _check_schema(data: Mapping[str, Any], source: str | Path) -> None:
    found = data.get("schema")
    if found == SCHEMA_VERSION and not isinstance(found, bool):
        return
    what = "no schema number" if found is None else f"schema {found!r}"
    newer = isinstance(found, int) and not isinstance(found, bool) and found > SCHEMA_VERSION
    todo = "upgrade dbperf-kit to read it, or " + _RERUN + " with this kit" if newer else _RERUN
    raise ConfigError(f"{source} is a bundle of {what}; this kit reads schema {SCHEMA_VERSION} only: {todo}")


def of_other_schema(path: Path) -> bool:
    """Whether ``path`` holds a bundle of another schema than this kit's (a run of another kit),
    rather than none or a file cut short."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and "run" in data and data.get("schema") != SCHEMA_VERSION


def _timestamp(data: Mapping[str, Any], key: str) -> datetime:
    text = _text(data, key, "")
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise _wrong("", key, text, "an ISO 8601 time") from None
