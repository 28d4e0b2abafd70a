"""The fleet's report: ``notebooks/05_fleet.ipynb`` run by papermill over the targets' run folders,
into ``runs/_fleet/<UTC timestamp>/`` with its self-contained HTML (the runner's own export)."""

from __future__ import annotations

from kit.fleet.spec import Fleet
from kit.runs import runner

REPORT_NOTEBOOK = "05_fleet.ipynb"


def execute(fleet: Fleet, *, last_runs: int = 10, progress: bool = False) -> runner.RunResult:
    """Run the fleet notebook over ``fleet``'s runs; NotebookFailed when one of its claims fails."""
    params = {"runs_dir": str(fleet.runs_dir), "fleet_file": str(fleet.path), "last_runs": last_runs}
    return runner.run(
        parameters=params,
        runs_dir=fleet.report_dir,
        notebooks=(REPORT_NOTEBOOK,),
        bundle=False,
        timeout_s=fleet.timeout_s,
        progress=progress,
    )
