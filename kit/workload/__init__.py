"""The workload of any database: its top statements from pg_stat_statements over the window
since the previous run, parameter values drawn from its data, and each statement timed on them
(see the submodules; :mod:`kit.workload.params` and :mod:`kit.workload.timing` are pure)."""

from __future__ import annotations

from kit.workload.measure import Target, measure, targets_for, time_target
from kit.workload.model import Statement, Workload
from kit.workload.sample import Parameters, sample_parameters
from kit.workload.statements import previous_window, read_workload
from kit.workload.tables import candidates
from kit.workload.timing import ESTIMATED, MEASURED, NOT_MEASURED, Timing, median_ci

__all__ = [
    "ESTIMATED",
    "MEASURED",
    "NOT_MEASURED",
    "Parameters",
    "Statement",
    "Target",
    "Timing",
    "Workload",
    "candidates",
    "measure",
    "median_ci",
    "previous_window",
    "read_workload",
    "sample_parameters",
    "targets_for",
    "time_target",
]
