from __future__ import annotations

import math

import pytest

from dataclasses import replace
from datetime import UTC, datetime

from kit.errors import ConfigError, KitError
from kit.runs import gate
from kit.store.evidence import Bundle, Finding


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("p95_ms>+20%", ("p95_ms", ">", 20.0, "relative")),
        ("cache.hit_rate < -5%", ("cache.hit_rate", "<", -5.0, "relative")),
        ("load.p95_ms.fixed>=+2.5", ("load.p95_ms.fixed", ">=", 2.5, "change")),
        ("new_n_plus_one>0", ("new_n_plus_one", ">", 0.0, "absolute")),
        ("errors!=0", ("errors", "!=", 0.0, "absolute")),
        ("ratio<=.5", ("ratio", "<=", 0.5, "absolute")),
    ],
)
def test_parse(text, expected):
    rule = gate.parse_rule(text)
    assert (rule.figure, rule.op, rule.threshold, rule.mode) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("p95_ms", "cannot parse --fail-on 'p95_ms'; expected FIGURE OP THRESHOLD"),
        ("p95_ms>>3", "cannot parse"),
        ("p95_ms>20%", "a percentage is a change since the previous run and needs a sign, e.g. 'p95_ms>+20%'"),
        ("", "cannot parse"),
    ],
)
def test_parse_errors(text, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("+", r"\+")):
        gate.parse_rule(text)


def _bundle(run: str, findings=(), **figures) -> Bundle:
    return Bundle(run=run, created_at=datetime(2026, 1, 1, tzinfo=UTC), status="ok", figures=figures,
                  findings=tuple(Finding(kind=k, subject=s) for k, s in findings))


def test_relative_change_fires_above_threshold_and_names_the_values():
    before, after = _bundle("r1", p95_ms=100.0), _bundle("r2", p95_ms=125.0)
    result = gate.evaluate(["p95_ms>+20%"], after, before)
    (verdict,) = result.verdicts
    assert (verdict.status, verdict.observed, verdict.previous, verdict.current) == ("regression", 25.0, 100.0, 125.0)
    assert verdict.message == "p95_ms changed by +25.0% (100 -> 125), rule 'p95_ms>+20%' fired"
    with pytest.raises(gate.RegressionFound) as info:
        result.raise_for_regressions()
    assert info.value.exit_code == 3 and isinstance(info.value, KitError)
    assert str(info.value).startswith("regression in run r2 (against run r1): p95_ms changed by +25.0%")


def test_rules_that_hold_pass():
    before, after = _bundle("r1", p95_ms=100.0, hits=0.9), _bundle("r2", p95_ms=110.0, hits=0.88)
    result = gate.evaluate(["p95_ms>+20%", "hits<-5%", "p95_ms>+15", "p95_ms>200"], after, before)
    assert [v.status for v in result.verdicts] == ["ok", "ok", "ok", "ok"]
    assert [v.observed for v in result.verdicts] == [pytest.approx(10.0), pytest.approx(-2.2222, abs=1e-3), 10.0, 110.0]
    assert result.passed is True and result.failed == ()
    result.raise_for_regressions()  # no exception


def test_first_run_has_no_baseline_for_change_rules_but_absolute_rules_apply():
    result = gate.evaluate(["p95_ms>+20%", "new_n_plus_one>0", "p95_ms>50"], _bundle("r1", p95_ms=100.0), None)
    assert [v.status for v in result.verdicts] == ["no baseline", "no baseline", "regression"]
    assert result.previous_run is None


def test_a_figure_the_run_did_not_record_fails_the_gate():
    result = gate.evaluate(["p59_ms>+20%"], _bundle("r2", p95_ms=1.0), _bundle("r1", p95_ms=1.0))
    (verdict,) = result.verdicts
    assert verdict.status == "missing"
    assert result.failed == (verdict,)
    assert "p59_ms was not recorded by this run" in verdict.message


def test_new_findings_are_counted_and_named():
    before = _bundle("r1", [("n_plus_one", "fp-a"), ("missing_indexes", "idx_a")])
    after = _bundle("r2", [("n_plus_one", "fp-a"), ("n_plus_one", "fp-b"), ("missing_indexes", "idx_a"),
                           ("missing_indexes", "idx_b")])
    after = replace(after, derived={"new_n_plus_one": 1.0, "new_missing_indexes": 1.0})
    result = gate.evaluate(["new_n_plus_one>0", "new_missing_indexes>0", "new_unused_indexes>0"], after, before)
    assert [v.status for v in result.verdicts] == ["regression", "regression", "ok"]
    assert result.verdicts[0].message == "new_n_plus_one = 1, rule 'new_n_plus_one>0' fired: fp-b"
    assert result.verdicts[1].message.endswith(": idx_b")
    assert result.verdicts[2].current == 0.0  # no finding of that kind: zero, not missing


def test_relative_change_from_zero():
    verdict = gate.evaluate_rule(gate.parse_rule("errors>+10%"), {"errors": 3.0}, {"errors": 0.0})
    assert verdict.status == "regression" and verdict.observed == math.inf
    verdict = gate.evaluate_rule(gate.parse_rule("errors>+10%"), {"errors": 0.0}, {"errors": 0.0})
    assert (verdict.status, verdict.observed) == ("ok", 0.0)


def test_gate_frame_columns():
    frame = gate.evaluate(["a>1"], _bundle("r1", a=2), None).to_frame()
    assert list(frame.columns) == ["rule", "figure", "current", "previous", "observed", "status", "message"]
    assert frame.loc[0, "status"] == "regression"
