"""Fleet audits: many databases, one Dagster job, one run folder per target, one fleet report.

    spec          the fleet file: targets by URL variable, notebooks, rules, concurrency (pure)
    target        audit one target with kit.runs.runner into runs/<target>/<ts>/, one line of outcome
    definitions   the Dagster definitions: a partition per target, schedule, report sensor
    orchestrate   a round in process: the Dagster job per target, then the report (kit fleet run)
    view          every target side by side from the run folders (pure; notebooks/05_fleet.ipynb)
    charts        the fleet's figures (pure)
    report        notebooks/05_fleet.ipynb by papermill into runs/_fleet/<ts>/

Dagster is imported only by ``definitions`` and ``orchestrate`` (the ``fleet`` extra); the fleet
file, the view and ``kit fleet status`` work without it.
"""

from __future__ import annotations

from kit.fleet.spec import Fleet, Target, load

__all__ = ["Fleet", "Target", "load"]
