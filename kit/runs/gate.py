"""The regression gate of ``kit run --fail-on``: a small rule language over a run's figures,
compared with the previous run of the same target (pure).

Grammar (spaces allowed around the operator)::

    rule      := FIGURE OP THRESHOLD
    FIGURE    := a recorded or derived figure name (letters, digits, _ . : -)
    OP        := >  >=  <  <=  ==  !=
    THRESHOLD := N        absolute: the figure's value in this run, compared with N
               | +N | -N  change: this run minus the previous run, compared with +N / -N
               | +N% | -N% relative change: 100 * (this - previous) / |previous|, compared with N

A rule *fires* (a regression) when its comparison holds: ``p95_ms>+20%`` fires when p95 grew by
more than 20 %, ``cache_hit_ratio<-5%`` when it fell by more than 5 %, ``new_n_plus_one>0`` when
any N+1 finding is new since the previous run, ``new_missing_indexes>0`` when an index went missing.
Change rules and ``new_*``/``gone_*`` figures need a previous run: on a first run they are
reported as "no baseline" and do not fire. A figure this run did not record fails the gate
(a misspelt rule must not pass silently). A fired rule exits ``kit run`` with code 3.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields, replace
from typing import Final, Literal

import pandas as pd

from kit.errors import ConfigError, RegressionFound
from kit.store.evidence import Bundle
from kit.store.history import finding_keys, numeric_figures

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
_RULE = re.compile(
    r"^\s*(?P<name>[A-Za-z_][\w.:\-]*)\s*(?P<op>>=|<=|==|!=|>|<)\s*"
    r"(?P<sign>[+-])?(?P<num>\d+(?:\.\d+)?|\.\d+)(?P<pct>%)?\s*$"
)
_BASELINE_ONLY = ("new_", "gone_")

Mode = Literal["absolute", "change", "relative"]
ABSOLUTE: Final = "absolute"
CHANGE: Final = "change"
RELATIVE: Final = "relative"
Status = Literal["regression", "ok", "no baseline", "missing"]  # a verdict's
REGRESSION: Final = "regression"
OK: Final = "ok"
NO_BASELINE: Final = "no baseline"
MISSING: Final = "missing"


@dataclass(frozen=True)
class Rule:
    text: str
    figure: str
    op: str
    threshold: float  # signed for change/relative rules
    mode: Mode


def parse_rule(text: str) -> Rule:
    """Parse one rule; ConfigError with the grammar when it does not parse."""
    m = _RULE.match(text or "")
    if not m:
        raise ConfigError(
            f"cannot parse --fail-on {text!r}; expected FIGURE OP THRESHOLD, e.g. 'p95_ms>+20%' "
            "(relative to the previous run), 'p95_ms>+5' (change) or 'new_n_plus_one>0' (absolute)"
        )
    value = float(m["num"]) * (-1 if m["sign"] == "-" else 1)
    if m["pct"] and not m["sign"]:
        raise ConfigError(
            f"--fail-on {text!r}: a percentage is a change since the previous run and needs a "
            f"sign, e.g. '{m['name']}{m['op']}+{m['num']}%'"
        )
    mode: Mode = RELATIVE if m["pct"] else CHANGE if m["sign"] else ABSOLUTE
    return Rule(text=text.strip(), figure=m["name"], op=m["op"], threshold=value, mode=mode)


def parse_rules(texts: Iterable[str]) -> tuple[Rule, ...]:
    return tuple(parse_rule(t) for t in texts)


@dataclass(frozen=True)
class Verdict:
    rule: str
    figure: str
    current: float | None
    previous: float | None
    observed: float | None  # the value compared: current, change or change in %
    status: Status
    message: str


@dataclass(frozen=True)
class GateResult:
    run: str
    previous_run: str | None
    verdicts: tuple[Verdict, ...]

    @property
    def failed(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if v.status in {REGRESSION, MISSING})

    @property
    def passed(self) -> bool:
        return not self.failed

    def to_frame(self) -> pd.DataFrame:
        columns = [f.name for f in fields(Verdict)]
        return pd.DataFrame([[getattr(v, c) for c in columns] for v in self.verdicts], columns=columns)

    def raise_for_regressions(self) -> None:
        if self.failed:
            against = f"run {self.previous_run}" if self.previous_run else "no previous run"
            raise RegressionFound(
                f"regression in run {self.run} (against {against}): " + "; ".join(v.message for v in self.failed)
            )


def _value(figures: dict[str, float], name: str, *, baseline: bool) -> float | None:
    if name in figures:
        return figures[name]
    if baseline and name.startswith(_BASELINE_ONLY):
        return 0.0  # no finding of that kind appeared or went: the count is zero, not unknown
    return None


def evaluate_rule(rule: Rule, current: dict[str, float], previous: dict[str, float] | None) -> Verdict:
    """One rule against this run's figures and the previous run's (None: no previous run)."""
    cur = _value(current, rule.figure, baseline=previous is not None)
    prev = _value(previous, rule.figure, baseline=True) if previous is not None else None
    needs_base = rule.mode != ABSOLUTE or rule.figure.startswith(_BASELINE_ONLY)
    if needs_base and previous is None:
        return Verdict(
            rule.text,
            rule.figure,
            cur,
            None,
            None,
            NO_BASELINE,
            f"{rule.text}: no previous run of this target to compare with",
        )
    if cur is None:
        return Verdict(
            rule.text,
            rule.figure,
            None,
            prev,
            None,
            MISSING,
            f"{rule.figure} was not recorded by this run (rule {rule.text!r}); "
            "check the name with `kit compare latest previous`",
        )
    if rule.mode == ABSOLUTE:
        observed, shown = cur, f"{rule.figure} = {cur:g}"
    elif prev is None:
        return Verdict(
            rule.text,
            rule.figure,
            cur,
            None,
            None,
            NO_BASELINE,
            f"{rule.text}: the previous run did not record {rule.figure}",
        )
    elif rule.mode == CHANGE:
        observed = cur - prev
        shown = f"{rule.figure} changed by {observed:+g} ({prev:g} -> {cur:g})"
    else:
        observed = (
            100.0 * (cur - prev) / abs(prev) if prev else (0.0 if cur == prev else math.copysign(math.inf, cur - prev))
        )
        shown = f"{rule.figure} changed by {observed:+.1f}% ({prev:g} -> {cur:g})"
    fired = _OPS[rule.op](observed, rule.threshold)
    return Verdict(
        rule.text,
        rule.figure,
        cur,
        prev,
        observed,
        REGRESSION if fired else OK,
        f"{shown}, rule {rule.text!r}" + (" fired" if fired else " holds"),
    )


def evaluate(rules: Iterable[Rule | str], current: Bundle, previous: Bundle | None) -> GateResult:
    """Every rule against two bundles (``previous`` None on the first run of a target)."""
    parsed = [r if isinstance(r, Rule) else parse_rule(r) for r in rules]
    cur = numeric_figures(current)
    prev = numeric_figures(previous) if previous is not None else None
    verdicts = tuple(evaluate_rule(r, cur, prev) for r in parsed)
    # name the new findings behind a fired new_<kind> rule
    named = []
    new_keys = _new_subjects(current, previous)
    for v in verdicts:
        if v.status == REGRESSION and v.figure.startswith("new_") and new_keys.get(v.figure[4:]):
            subjects = new_keys[v.figure[4:]]
            v = replace(v, message=v.message + ": " + ", ".join(subjects[:5]) + (" ..." if len(subjects) > 5 else ""))
        named.append(v)
    return GateResult(
        run=current.run, previous_run=previous.run if previous is not None else None, verdicts=tuple(named)
    )


def _new_subjects(current: Bundle, previous: Bundle | None) -> dict[str, list[str]]:
    if previous is None:
        return {}
    before = finding_keys(previous)
    out: dict[str, list[str]] = {}
    for f in current.findings:
        if f.key not in before:
            out.setdefault(f.kind, []).append(f.subject)
    return out
