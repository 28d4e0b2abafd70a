"""Audit one target of a fleet: ``kit.runs.runner.run`` into ``runs/<target>/<UTC timestamp>/``, the
regression gate against the target's previous run, and one line of outcome (talks to PostgreSQL
through the runner).

Whatever happens — the URL variable unset, the database unreachable, a notebook failing, a rule
firing — the outcome is one :class:`Outcome` with a one-line message, appended to
``runs/<target>/attempts.jsonl`` (the fleet's memory of every attempt, also of those that left no
run folder) and, when there is a run folder, written into it as ``fleet.json``. The orchestrator
turns a non-ok outcome into a failure of that target's partition only.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kit.config import mask_url, required_url
from kit.errors import ConfigError, KitError, NotebookFailed
from kit.fleet.spec import Fleet, Target
from kit.runs import runner
from kit.store.history import read_bundle

ATTEMPTS_FILE = "attempts.jsonl"
OUTCOME_FILE = "fleet.json"
OK, REGRESSION, FAILED = "ok", "regression", "failed"


@dataclass(frozen=True)
class Outcome:
    """What one attempt at auditing one target came to."""

    target: str
    status: str  # ok | regression | failed
    message: str  # one line
    round_id: str | None  # the fleet round the attempt belongs to (the schedule's tick)
    run: str | None  # the run folder's name (None when nothing ran)
    folder: str | None
    started_at: str
    seconds: float
    findings: int | None = None
    verdicts: list[dict[str, Any]] = field(default_factory=list)  # the gate's, one per rule
    html: list[str] = field(default_factory=list)  # the notebooks' reports

    @property
    def ok(self) -> bool:
        return self.status == OK

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outcome:
        """The outcome in ``data`` (an attempts line, Dagster metadata); TypeError when a field is missing."""
        known: dict[str, Any] = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


def audit(fleet: Fleet, target: Target, *, round_id: str | None = None, progress: bool = False) -> Outcome:
    """Run ``target``'s notebooks with its parameters and rules; never raises a KitError (the
    outcome carries it as one line)."""
    started = datetime.now(UTC)
    clock = time.perf_counter()
    folder: Path | None = None
    result: runner.RunResult | None = None
    try:
        required_url(target.url_env)  # unset: one line, and nothing is written
        result = runner.run(
            parameters=target.run_parameters(),
            runs_dir=fleet.runs_dir / target.name,
            notebooks=target.notebooks,
            timeout_s=fleet.timeout_s,
            progress=progress,
            fail_on=target.fail_on,
        )
    except NotebookFailed as exc:
        folder = Path(exc.output).parent
        status, message = FAILED, _line(exc)
    except KitError as exc:
        status, message = FAILED, _line(exc)
    else:
        folder = result.folder
        judged = result.gate
        if judged is not None and judged.failed:
            status = REGRESSION
            against = f"run {judged.previous_run}" if judged.previous_run else "no previous run"
            message = f"regression against {against}: " + "; ".join(v.message for v in judged.failed)
        else:
            status = OK
            held = len(result.gate.verdicts) if result.gate is not None else 0
            message = f"ok: {len(result.notebooks)} notebook(s), {held} rule(s) checked"
    outcome = Outcome(
        target=target.name,
        status=status,
        message=f"{target.name}: {mask_url(message)}",
        round_id=round_id,
        run=folder.name if folder else None,
        folder=str(folder) if folder else None,
        started_at=started.isoformat(),
        seconds=round(time.perf_counter() - clock, 2),
        findings=_findings(folder),
        verdicts=_verdicts(result),
        html=[nb.html for nb in result.notebooks if nb.html] if result else [],
    )
    record(fleet, outcome)
    return outcome


def crashed(fleet: Fleet, target: Target, exc: BaseException, *, round_id: str | None = None) -> Outcome:
    """The outcome of an attempt that raised something other than a KitError (a bug), recorded."""
    outcome = Outcome(
        target=target.name,
        status=FAILED,
        round_id=round_id,
        run=None,
        folder=None,
        message=f"{target.name}: internal error {type(exc).__name__}: {mask_url(_line(exc))} "
        "(a bug in the kit: the orchestrator's log has the traceback)",
        started_at=datetime.now(UTC).isoformat(),
        seconds=0.0,
    )
    record(fleet, outcome)
    return outcome


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _findings(folder: Path | None) -> int | None:
    """How many findings the run's bundle holds (None: no run, or it wrote no bundle)."""
    if folder is None:
        return None
    try:
        return len(read_bundle(folder).findings)
    except ConfigError:
        return None


def _verdicts(result: runner.RunResult | None) -> list[dict[str, Any]]:
    if result is None or result.gate is None:
        return []
    return [{"rule": v.rule, "status": v.status, "message": v.message} for v in result.gate.verdicts]


def record(fleet: Fleet, outcome: Outcome) -> None:
    """Append the outcome to the target's attempts log and write it into its run folder."""
    base = fleet.runs_dir / outcome.target
    base.mkdir(parents=True, exist_ok=True)
    line = json.dumps(outcome.to_dict(), default=str)
    with open(base / ATTEMPTS_FILE, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
    if outcome.folder and Path(outcome.folder).is_dir():
        (Path(outcome.folder) / OUTCOME_FILE).write_text(
            json.dumps(outcome.to_dict(), indent=1, default=str), encoding="utf-8"
        )


def attempts(runs_dir: str | Path, target: str) -> list[Outcome]:
    """Every recorded attempt at ``target``, oldest first (pure: reads its attempts log)."""
    path = Path(runs_dir) / target / ATTEMPTS_FILE
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                out.append(Outcome.from_dict(json.loads(line)))
            except (ValueError, TypeError):
                continue  # a line cut short by a crash is not an attempt
    return out
