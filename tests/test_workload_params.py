"""Choosing parameter values from column statistics, and the median's confidence interval (pure)."""

from __future__ import annotations

import pytest

from kit.sqltext.refs import Slot
from kit.workload.params import ColumnStats, array_literal, choose, from_sample, several, typical
from kit.workload.timing import MEASURED, Timing, median_ci

KEYS = ColumnStats(histogram=tuple(str(i) for i in range(0, 101)))  # a key-like column: no MCVs
STATUS = ColumnStats(mcv=("done", "new", "failed"), mcf=(0.7, 0.2, 0.1))


@pytest.mark.parametrize("slot, stats, expected", [
    (Slot(1, None, "id", "="), KEYS, "50"),  # a typical key: the middle of the histogram
    (Slot(1, None, "status", "="), STATUS, "done"),  # few values: the most common one
    (Slot(1, None, "id", ">"), KEYS, "90"),  # "recent rows": about a tenth of the table
    (Slot(1, None, "id", "<="), KEYS, "10"),
    (Slot(1, None, "id", "between_lo"), KEYS, "45"),
    (Slot(1, None, "id", "between_hi"), KEYS, "55"),
    (Slot(1, None, None, "limit"), None, "20"),
    (Slot(1, None, None, "offset"), None, "0"),
    (Slot(1, None, "id", "="), ColumnStats(), None),  # nothing known: no value
    (Slot(1, None, "id", "="), None, None),
])
def test_choose(slot, stats, expected):
    assert choose(slot, stats) == expected


def test_arrays_and_in_lists_get_distinct_values():
    page = choose(Slot(1, None, "id", "any", array=True), KEYS)
    assert page == "{" + ",".join(f'"{i}"' for i in range(50, 60)) + "}"
    assert [choose(Slot(n, None, "status", "in"), STATUS, position=n - 1) for n in (1, 2, 3, 4)] == \
        ["done", "new", "failed", "failed"]
    assert several(STATUS, 2) == ["done", "new"]
    assert array_literal(['a"b', "c\\d"]) == '{"a\\"b","c\\\\d"}'


def test_mostly_common_values_prefer_the_most_common():
    mixed = ColumnStats(mcv=("7",), mcf=(0.6,), histogram=("1", "5", "9"))
    assert typical(mixed) == "7"
    rare = ColumnStats(mcv=("7",), mcf=(0.01,), histogram=("1", "5", "9"))
    assert typical(rare) == "5"


def test_a_sample_becomes_statistics():
    keys = from_sample(["3", "1", "2", "10", None])
    assert (keys.histogram, keys.mcv, keys.source) == (("1", "2", "3", "10"), (), "sample")
    status = from_sample(["a", "a", "a", "b", "b", "c"])
    assert status.mcv == ("a", "b", "c") and status.mcf[0] == 0.5
    assert from_sample([None]).empty


def test_median_confidence_interval_from_order_statistics():
    assert median_ci([5.0, 1.0, 3.0]) == (1.0, 5.0)  # too few values: the whole range
    assert median_ci(list(range(1, 10))) == (2, 8)  # n = 9: x(2)..x(8), 96 % coverage
    assert median_ci(list(range(1, 31))) == (10, 21)
    t = Timing("k", MEASURED, exec_ms=(4.0, 1.0, 2.0, 3.0, 5.0), est_rows=100.0, actual_rows=10.0)
    assert (t.median_ms, t.ci_ms, t.estimate_error) == (3.0, (1.0, 5.0), 10.0)


def test_a_slow_statement_is_timed_as_often_as_the_budget_allows():
    from kit.workload.measure import runs_within

    assert runs_within(2.0, warmup=1, repeats=5, budget_s=60) == (1, 5)  # fast: as asked
    assert runs_within(25_000.0, warmup=1, repeats=5, budget_s=60) == (0, 2)  # 25 s: twice, no more warm-up
    assert runs_within(90_000.0, warmup=1, repeats=5, budget_s=60) == (0, 1)  # once at least
