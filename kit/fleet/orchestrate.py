"""A round of the fleet in process: the Dagster job ``fleet_audit`` executed once per target
(partition), at most ``concurrency`` at a time, then the ``fleet_report`` job (talks to PostgreSQL
through the Dagster definitions; needs the ``fleet`` extra).

This is what the schedule, the run queue and the report sensor do under ``dagster dev`` or a
Dagster deployment, done synchronously for ``kit fleet run``, the benchmark and the tests: the same
definitions (:func:`kit.fleet.definitions.build`), the same run requests, the same assets. Each
target's run is its own Dagster run, so a target that fails does not stop the others. With
``concurrency`` > 1 the runs go to that many worker processes (the runner points its kernels at
the run folder through the process environment, so two runs never share a process).
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from kit.config import mask_url
from kit.fleet.definitions import AUDIT_JOB, FLEET_TAG, REPORT_JOB, ROUND_TAG, build, instance_yaml, round_requests
from kit.fleet.spec import Fleet, load
from kit.fleet.target import FAILED, REGRESSION, Outcome

# Dagster's console logger speaks at DEBUG by default; the outcome lines say what matters.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@dataclass(frozen=True)
class RoundResult:
    """What one round of the fleet came to: one outcome per target, and the fleet report."""

    fleet: str
    round_id: str
    outcomes: tuple[Outcome, ...]
    dagster_runs: dict[str, str]  # target -> Dagster run id
    report_html: str | None
    report_error: str | None
    seconds: float
    concurrency: int

    def by_status(self, status: str) -> list[str]:
        return [o.target for o in self.outcomes if o.status == status]

    @property
    def exit_code(self) -> int:
        """0 every target ok; 3 the only failures are regressions; 1 any other failure (the report's too)."""
        if self.by_status(FAILED) or self.report_error:
            return 1
        return 3 if self.by_status(REGRESSION) else 0

    def max_overlap(self) -> int:
        """The most target runs that were in progress at the same moment."""
        spans = [(datetime.fromisoformat(o.started_at).timestamp(), o.seconds) for o in self.outcomes]
        edges = sorted([(s, 1) for s, _ in spans] + [(s + d, -1) for s, d in spans], key=lambda e: (e[0], e[1]))
        running = peak = 0
        for _, step in edges:
            running += step
            peak = max(peak, running)
        return peak

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {
                    "target": o.target,
                    "status": o.status,
                    "seconds": o.seconds,
                    "run": o.run,
                    "findings": o.findings,
                    "message": o.message,
                    "dagster_run": self.dagster_runs.get(o.target),
                }
                for o in self.outcomes
            ],
            columns=["target", "status", "seconds", "run", "findings", "message", "dagster_run"],
        )


def run_round(
    fleet: Fleet,
    *,
    targets: tuple[str, ...] | list[str] | None = None,
    report: bool = True,
    round_id: str | None = None,
    dagster_home: Path | None = None,
    quiet: bool = True,
) -> RoundResult:
    """Audit the fleet's targets (all, or those named) through the Dagster job, then its report.

    ``dagster_home``: record the runs in that Dagster instance (what ``dagster dev`` shows), else
    in a throwaway one. Never raises for a target's failure: each outcome says what happened."""
    started = time.perf_counter()
    round_id = round_id or datetime.now(UTC).isoformat(timespec="seconds")
    requests = _partitions(round_requests(fleet, round_id, tuple(targets or ())))
    workers = min(fleet.concurrency, len(requests))
    results: dict[str, tuple[Outcome, str]] = {}
    if dagster_home is not None:
        _prepare_home(fleet, Path(dagster_home))  # before the workers: they would race to create its storage
    if workers <= 1:
        instance = _instance(dagster_home)
        for name, tags in requests:
            results[name] = _execute_partition(fleet, name, tags, instance, quiet)
    else:
        ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no state inherited from the caller
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = {
                name: pool.submit(
                    _worker, str(fleet.path), name, tags, str(dagster_home) if dagster_home else None, quiet
                )
                for name, tags in requests
            }
            for name, future in futures.items():
                outcome, run_id = future.result()
                results[name] = (Outcome.from_dict(outcome), run_id)
    html: str | None = None
    error: str | None = None
    if report:
        html, error = _report(fleet, round_id, _instance(dagster_home), quiet)
    ordered = [name for name, _ in requests]
    return RoundResult(
        fleet=fleet.name,
        round_id=round_id,
        outcomes=tuple(results[n][0] for n in ordered),
        dagster_runs={n: results[n][1] for n in ordered},
        report_html=html,
        report_error=error,
        seconds=round(time.perf_counter() - started, 2),
        concurrency=fleet.concurrency,
    )


def _partitions(requests: list[dg.RunRequest]) -> list[tuple[str, dict[str, str]]]:
    """(target, tags) of each run request of a round (round_requests gives every one a partition)."""
    out = []
    for req in requests:
        if req.partition_key is None:
            raise ValueError(f"run request {req.run_key} names no target (partition)")
        out.append((req.partition_key, dict(req.tags)))
    return out


def _prepare_home(fleet: Fleet, home: Path) -> None:
    """A Dagster instance folder with its storage created (and, when new, the fleet's run limit)."""
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(instance_yaml(fleet), encoding="utf-8")
    _instance(home).dispose()


def _instance(dagster_home: Path | None) -> dg.DagsterInstance:
    if dagster_home is None:
        return dg.DagsterInstance.ephemeral()
    return dg.DagsterInstance.from_config(str(dagster_home))


def _worker(
    fleet_path: str, name: str, tags: dict[str, str], dagster_home: str | None, quiet: bool
) -> tuple[dict[str, Any], str]:
    """One target's run in a worker process (arguments and result cross the process boundary as plain data)."""
    fleet = load(fleet_path, check_parameters=False)
    outcome, run_id = _execute_partition(
        fleet, name, tags, _instance(Path(dagster_home) if dagster_home else None), quiet
    )
    return outcome.to_dict(), run_id


def _execute_partition(
    fleet: Fleet, name: str, tags: dict[str, str], instance: dg.DagsterInstance, quiet: bool
) -> tuple[Outcome, str]:
    job = build(fleet).resolve_job_def(AUDIT_JOB)
    result = job.execute_in_process(
        partition_key=name, tags=tags, instance=instance, raise_on_error=False, run_config=QUIET if quiet else None
    )
    return _outcome_of(result, name, tags), result.run_id


def _outcome_of(result: dg.ExecuteInProcessResult, name: str, tags: dict[str, str]) -> Outcome:
    """The target's outcome as its asset reported it (metadata ``outcome``), on success or failure."""
    for event in result.get_asset_materialization_events():
        recorded = _recorded(event.step_materialization_data.materialization.metadata)
        if recorded is not None:
            return recorded
    message = "the Dagster run ended without a step result"
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        recorded = _recorded(data.user_failure_data.metadata) if data.user_failure_data is not None else None
        if recorded is not None:
            return recorded
        error = (data.error.cause or data.error) if data.error else None
        if error is not None:
            message = f"{error.cls_name}: {error.message.strip().splitlines()[0] if error.message.strip() else ''}"
    return Outcome(
        target=name,
        status=FAILED,
        message=f"{name}: {mask_url(message)}",
        round_id=tags.get(ROUND_TAG),
        run=None,
        folder=None,
        started_at=datetime.now(UTC).isoformat(),
        seconds=0.0,
    )


def _recorded(metadata: Mapping[str, dg.MetadataValue]) -> Outcome | None:
    """The outcome the audit asset put in its metadata (``outcome``; None: it put none)."""
    entry = metadata.get("outcome")
    value = entry.value if entry is not None else None
    return Outcome.from_dict(value) if isinstance(value, dict) else None


def _report(fleet: Fleet, round_id: str, instance: dg.DagsterInstance, quiet: bool) -> tuple[str | None, str | None]:
    """Run the ``fleet_report`` job; (html, None) or (None, one line)."""
    job = build(fleet).resolve_job_def(REPORT_JOB)
    result = job.execute_in_process(
        instance=instance,
        raise_on_error=False,
        run_config=QUIET if quiet else None,
        tags={FLEET_TAG: fleet.name, ROUND_TAG: round_id},
    )
    for event in result.get_asset_materialization_events():
        meta = event.step_materialization_data.materialization.metadata
        if "html" in meta:
            return str(meta["html"].value), None
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        error = (error.cause or error) if error else None
        if error is not None:
            first = error.message.strip().splitlines()[0] if error.message.strip() else str(error.cls_name)
            return None, f"fleet report: {mask_url(first)}"
    return None, "fleet report: the Dagster run ended without a result"
