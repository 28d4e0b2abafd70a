"""Dagster definitions of a fleet: one partition per target, the audit asset, the fleet report,
their jobs, a schedule and the sensor that runs the report after a round (talks to PostgreSQL
through :mod:`kit.fleet.target`; needs the ``fleet`` extra).

``dagster dev -m kit.fleet.definitions`` with ``KIT_FLEET_FILE`` naming the fleet file shows the
fleet: the asset ``target_audit`` with one partition per target (its last outcome green or red),
``fleet_report`` downstream of it, the schedule and the sensor. :func:`build` gives the same
definitions for a loaded fleet (what ``kit fleet run`` and the tests execute in process).

How a round goes: the schedule asks for one run of ``fleet_audit`` per target (partition), tagged
with the fleet and the round; Dagster's run queue starts at most ``concurrency`` of them at a time
(the run tag limit :func:`instance_yaml` writes); each run audits its target and fails on its own
when the target regressed, cannot be reached or has no URL; when no run of the fleet is queued or
in progress any more, the sensor asks for one ``fleet_report`` run.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from kit.config import fleet_file
from kit.errors import ConfigError
from kit.fleet import report, target
from kit.fleet.spec import Fleet, load

FLEET_TAG = "dbperf-kit/fleet"
ROUND_TAG = "dbperf-kit/round"
AUDIT_ASSET, REPORT_ASSET = "target_audit", "fleet_report"
AUDIT_JOB, REPORT_JOB = "fleet_audit", "fleet_report_job"
SCHEDULE, SENSOR = "fleet_audit_schedule", "fleet_report_sensor"
GROUP = "dbperf_fleet"
_BUSY = (
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
)


def build(fleet: Fleet) -> dg.Definitions:
    """The Dagster definitions of ``fleet``."""
    partitions = dg.StaticPartitionsDefinition(list(fleet.names))

    @dg.asset(
        name=AUDIT_ASSET,
        partitions_def=partitions,
        group_name=GROUP,
        kinds={"postgres", "jupyter"},
        description=f"kit run of one target of fleet {fleet.name} into runs/<target>/<UTC timestamp>/ "
        "with its regression gate; fails when the target regressed or could not be audited",
    )
    def target_audit(
        context,
    ) -> dg.MaterializeResult:  # context unannotated: Dagster cannot read postponed annotations of a nested function
        spec = fleet.target(context.partition_key)
        round_id = context.run.tags.get(ROUND_TAG)
        try:
            outcome = target.audit(fleet, spec, round_id=round_id)
        except Exception as exc:  # a bug, not a finding: recorded as this target's failure, traceback kept
            outcome = target.crashed(fleet, spec, exc, round_id=round_id)
            raise dg.Failure(description=outcome.message, metadata=metadata(outcome), allow_retries=False) from exc
        if not outcome.ok:
            raise dg.Failure(description=outcome.message, metadata=metadata(outcome), allow_retries=False)
        return dg.MaterializeResult(metadata=metadata(outcome))

    @dg.asset(
        name=REPORT_ASSET,
        deps=[target_audit],
        group_name=GROUP,
        kinds={"jupyter"},
        description=f"notebooks/05_fleet.ipynb over every target of fleet {fleet.name}, as HTML",
    )
    def fleet_report() -> dg.MaterializeResult:
        result = report.execute(fleet)
        html = result.notebooks[0].html
        if html is None:  # report.execute raises when the notebook fails; an ok one is always exported
            raise dg.Failure(description=f"fleet report: {result.folder} holds no HTML export", allow_retries=False)
        return dg.MaterializeResult(
            metadata={
                "html": dg.MetadataValue.path(html),
                "folder": dg.MetadataValue.path(str(result.folder)),
                "targets": len(fleet.targets),
            }
        )

    audit_job = dg.define_asset_job(
        AUDIT_JOB,
        selection=[target_audit],
        tags={FLEET_TAG: fleet.name},
        executor_def=dg.in_process_executor,
        description="audit one target (partition); a round is one run per target",
    )
    report_job = dg.define_asset_job(
        REPORT_JOB, selection=[fleet_report], tags={FLEET_TAG: fleet.name}, executor_def=dg.in_process_executor
    )

    @dg.schedule(
        name=SCHEDULE,
        job=audit_job,
        cron_schedule=fleet.schedule,
        execution_timezone=fleet.timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    def audit_schedule(context) -> list[dg.RunRequest]:
        return round_requests(fleet, context.scheduled_execution_time.isoformat())

    @dg.sensor(name=SENSOR, job=report_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
    def report_sensor(context):
        records = context.instance.get_run_records(
            filters=dg.RunsFilter(job_name=AUDIT_JOB, tags={FLEET_TAG: fleet.name}),
            limit=max(100, 4 * len(fleet.targets)),
        )
        due = report_due([(r.dagster_run.status, r.end_time) for r in records], float(context.cursor or 0))
        if due is None:
            return dg.SkipReason("no finished round of the fleet since the last report, or audits still running")
        context.update_cursor(str(due))
        return dg.RunRequest(run_key=f"report-{due}")

    return dg.Definitions(
        assets=[target_audit, fleet_report],
        jobs=[audit_job, report_job],
        schedules=[audit_schedule],
        sensors=[report_sensor],
    )


def round_requests(fleet: Fleet, round_id: str, names: tuple[str, ...] | None = None) -> list[dg.RunRequest]:
    """One run request per target of the round (the schedule's tick, or ``kit fleet run``)."""
    return [
        dg.RunRequest(
            run_key=f"{round_id}/{t.name}", partition_key=t.name, tags={FLEET_TAG: fleet.name, ROUND_TAG: round_id}
        )
        for t in fleet.select(names)
    ]


def report_due(runs: list[tuple[Any, float | None]], cursor: float) -> float | None:
    """The end time of the latest finished audit run when a report is due (pure): nothing queued or
    in progress, and something finished after ``cursor`` (the end time the last report covered)."""
    if any(status in _BUSY for status, _ in runs):
        return None
    ended = [end for _, end in runs if end is not None]
    latest = max(ended, default=None)
    return latest if latest is not None and latest > cursor else None


def metadata(outcome: target.Outcome) -> dict[str, Any]:
    """What the UI shows for one target's run: its status, message, run folder, gate and reports."""
    out: dict[str, Any] = {
        "status": outcome.status,
        "message": outcome.message,
        "outcome": dg.MetadataValue.json(outcome.to_dict()),
    }
    if outcome.folder:
        out["run_folder"] = dg.MetadataValue.path(outcome.folder)
    if outcome.findings is not None:
        out["findings"] = outcome.findings
    if outcome.verdicts:
        rows = "\n".join(f"| `{v['rule']}` | {v['status']} | {v['message']} |" for v in outcome.verdicts)
        out["gate"] = dg.MetadataValue.md("| rule | status | verdict |\n|---|---|---|\n" + rows)
    for html in outcome.html:
        out[f"report {html.rsplit('/', 1)[-1]}"] = dg.MetadataValue.path(html)
    return out


def instance_yaml(fleet: Fleet) -> str:
    """The ``dagster.yaml`` lines that make Dagster's run queue honour the fleet's concurrency:
    at most ``concurrency`` runs tagged with this fleet in progress at once."""
    return (
        "# written by `kit fleet dev` from " + fleet.path.name + "\n"
        "concurrency:\n"
        "  runs:\n"
        "    tag_concurrency_limits:\n"
        f'      - key: "{FLEET_TAG}"\n'
        f'        value: "{fleet.name}"\n'
        f"        limit: {fleet.concurrency}\n"
    )


@dg.definitions
def defs() -> dg.Definitions:
    """What ``dagster dev -m kit.fleet.definitions`` loads: the fleet ``$KIT_FLEET_FILE`` names."""
    path = fleet_file()
    if path is None:
        raise ConfigError("KIT_FLEET_FILE is not set; export KIT_FLEET_FILE=path/to/fleet.toml before dagster dev")
    return build(load(path))
