"""Keep or revert each applied fix from its statements measured before and after (pure).

A new index must be named in the plan of one of its statements and make that statement at least
:data:`MIN_SPEEDUP` times faster (median of the repeats; a statement of the workload whose
measurement reproduced the workload decides before a probe the kit wrote), else it is reverted,
saying why; a fix whose only evidence is measurements that did not reproduce the workload (other
rows, other time than pg_stat_statements saw per call) is not kept on that evidence. A drop
is kept only when no top statement on its table got slower (median up by more than :data:`SLOWER`
and the whole confidence interval after above the median before) and did more work for it (another
plan, or more shared blocks touched: the same plan over the same blocks slowed only by a busy
machine is noise, not the drop); statements on other tables cannot lose the index. ANALYZE
cannot be undone: it is kept, with the row-estimate error before and after; so is VACUUM, with the
blocks its statements read per call before and after. Extended statistics are kept when the row
estimate and the time (:data:`MIN_SPEEDUP`) improve and the plan changed; a role's work_mem when its statements no longer
spill and one is :data:`MIN_SPEEDUP` faster. An index the user's migration declares is kept and the
reason says what the measurement found.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeGuard

from kit.fixes.model import ANALYZE, CREATE, DROP, KEPT, REVERTED, STATISTICS, VACUUM, WORK_MEM, Fix, FixKind, Verdict
from kit.workload.timing import MEASURED, Timing

MIN_SPEEDUP = 2.0
PROBE = "probe:"  # the key prefix of a statement the kit wrote (not the workload's)
SLOWER = 1.25  # a drop that makes a statement 25 % slower (beyond noise) is undone
_NOISE_MS = 0.05


def _measured(t: Timing | None) -> TypeGuard[Timing]:
    return t is not None and t.mode == MEASURED and bool(t.exec_ms)


def slower(before: Timing | None, after: Timing | None) -> bool:
    """Whether ``after`` is slower than ``before`` beyond noise (both measured).

    With few repeats a median's interval is the whole range, so one sample slowed by a busy
    machine would keep the intervals from parting: the interval after is held against the median
    before, which one slow sample does not move."""
    b, a = _ms(before), _ms(after)
    if b is None or a is None or after is None:
        return False
    lo, _hi = after.ci_ms
    return a > SLOWER * b and a - b > _NOISE_MS and lo is not None and lo > b


def _ms(t: Timing | None) -> float | None:
    """The median of a measured timing (a measured one has repeats), else None."""
    return t.median_ms if _measured(t) else None


def _medians(before: Timing | None, after: Timing | None) -> tuple[float, float] | None:
    """(median before, median after) of a statement measured both times, else None."""
    b, a = _ms(before), _ms(after)
    return (b, a) if b is not None and a is not None else None


def _primary(fix: Fix, before: dict[str, Timing]) -> str | None:
    """The fix's statement that took longest before (measured ones first)."""
    keys = [k for k in fix.statements if k in before]
    if not keys:
        return None
    return max(keys, key=lambda k: (_measured(before[k]), _ms(before[k]) or 0.0))


def _with_times(fix: Fix, key: str | None, before: dict[str, Timing], after: dict[str, Timing]) -> Fix:
    b, a = (_ms(before.get(key)), _ms(after.get(key))) if key else (None, None)
    return fix.but(
        exec_ms_before=b, exec_ms_after=a, speedup=b / a if b and a else None, evidence=evidence_of(key, before)
    )


def evidence_of(key: str | None, before: dict[str, Timing]) -> str:
    """``key: <its measurement's evidence>`` (fixes.json's ``evidence``): reproduced the workload or not."""
    timing = before.get(key) if key else None
    return f"{key}: {timing.evidence or timing.reason}" if timing is not None else ""


def planned_evidence(fix: Fix, before: dict[str, Timing]) -> Fix:
    """A planned fix with the evidence of its statement that took longest (a dry run judges nothing)."""
    return fix.but(evidence=evidence_of(_primary(fix, before), before))


def judge_create(fix: Fix, before: dict[str, Timing], after: dict[str, Timing]) -> Fix:
    used = [k for k in fix.statements if k in after and fix.index_names & set(after[k].indexes)]
    verdict: Verdict
    if not used:
        on = ", ".join(fix.statements) or "any statement"
        verdict, reason, key = REVERTED, f"the planner does not use it on {on}", _primary(fix, before)
    else:
        medians = {k: m for k in used if (m := _medians(before.get(k), after[k])) is not None}
        timed = list(medians)
        # the workload's own statements decide when one of them reproduced the workload; a probe the kit
        # wrote otherwise; a measurement that did not reproduce the workload is no evidence
        workload = [k for k in timed if not k.startswith(PROBE)]
        unlike = [k for k in workload if before[k].reproduced is False]
        timed = [k for k in workload if k not in unlike] or [k for k in timed if k.startswith(PROBE)]
        if unlike and not timed:
            key = unlike[0]
            verdict, reason = (
                REVERTED,
                (
                    f"not kept on this evidence: {key}'s measurement does not reproduce the "
                    f"workload ({before[key].evidence})"
                ),
            )
        elif timed:
            key = max(timed, key=lambda k: medians[k][0] / medians[k][1])
            b_ms, a_ms = medians[key]
            x = b_ms / a_ms
            how = (
                "a statement the kit wrote"
                if key.startswith(PROBE)
                else "as the workload runs it"
                if before[key].reproduced
                else "nothing to compare with"
            )
            shown = f"{key}: {b_ms:.3f} -> {a_ms:.3f} ms ({x:.1f}x, {how})"
            verdict, reason = (
                (KEPT, f"plan uses it; {shown}")
                if x >= MIN_SPEEDUP
                else (REVERTED, f"plan uses it but {shown} is less than {MIN_SPEEDUP:.0f}x")
            )
        else:
            key = used[0]
            b, a = before.get(key), after[key]
            ratio = b.cost / a.cost if b is not None and b.cost and a.cost else None
            shown = (
                f"estimated only: cost {b.cost:.0f} -> {a.cost:.0f}" if ratio and b is not None else "estimated only"
            )
            verdict, reason = (
                (KEPT, f"plan uses it; {shown}")
                if ratio and ratio >= MIN_SPEEDUP
                else (REVERTED, f"plan uses it; {shown} (less than {MIN_SPEEDUP:.0f}x)")
            )
    if fix.declared and verdict == REVERTED:
        verdict, reason = KEPT, f"declared in the migration, so kept; but {reason}"
    return _with_times(fix, key, before, after).but(verdict=verdict, reason=reason)


def more_work(before: Timing, after: Timing | None) -> bool:
    """Whether ``after`` ran another plan or touched more shared blocks than ``before`` (either unknown: True)."""
    if after is None or before.buffers is None or after.buffers is None:
        return True
    return after.plan != before.plan or after.buffers > before.buffers


def judge_drop(fix: Fix, before: dict[str, Timing], after: dict[str, Timing]) -> Fix:
    # only a statement that reads the table can lose the index: its statements are those
    worse = [
        k
        for k in fix.statements
        if k in before and slower(before[k], after.get(k)) and more_work(before[k], after.get(k))
    ]
    key = _primary(fix, before)
    if worse:
        k = worse[0]
        return _with_times(fix, k, before, after).but(
            verdict=REVERTED, reason=f"{k} got slower: {before[k].median_ms:.3f} -> {after[k].median_ms:.3f} ms"
        )
    n = sum(_measured(before.get(k)) and _measured(after.get(k)) for k in fix.statements)
    return _with_times(fix, key, before, after).but(
        verdict=KEPT, reason=f"no top statement on {fix.target_table} got slower ({n} measured before and after)"
    )


def judge_analyze(fix: Fix, before: dict[str, Timing], after: dict[str, Timing]) -> Fix:
    key = _primary(fix, before)
    if key is None:
        return fix.but(
            verdict=KEPT, reason="statistics refreshed (ANALYZE cannot be undone); no top statement reads it"
        )
    b, a = before.get(key), after.get(key)
    errors = ""
    if b is not None and a is not None and b.estimate_error and a.estimate_error:
        errors = f"; {key}: row estimate off {b.estimate_error:.1f}x before, {a.estimate_error:.1f}x after"
    return _with_times(fix, key, before, after).but(
        verdict=KEPT, reason=f"statistics refreshed (ANALYZE cannot be undone){errors}"
    )


def _gain(fix: Fix, before: dict[str, Timing], after: dict[str, Timing]) -> tuple[str | None, float | None, str]:
    """The fix's statement measured before and after that gained most: (key, speedup, "k: b -> a ms (x)")."""
    timed = {k: m for k in fix.statements if (m := _medians(before.get(k), after.get(k))) is not None}
    if not timed:
        return _primary(fix, before), None, "not measured before and after"
    key = max(timed, key=lambda k: timed[k][0] / timed[k][1])
    b, a = timed[key]
    return key, b / a, f"{key}: {b:.3f} -> {a:.3f} ms ({b / a:.1f}x)"


def judge_statistics(fix: Fix, before: dict[str, Timing], after: dict[str, Timing]) -> Fix:
    """Kept when its statement's worst row estimate and its time (:data:`MIN_SPEEDUP`) both improve, and
    its plan changed: statistics act only through the plan, so the same plan faster is a quieter machine."""
    key, x, shown = _gain(fix, before, after)
    b, a = (before.get(key), after.get(key)) if key else (None, None)
    eb, ea = (b.estimate_error if b else None), (a.estimate_error if a else None)
    estimates = f"row estimate off {eb:.0f}x before, {ea:.0f}x after" if eb and ea else "row estimates unknown"
    better = bool(eb and ea and ea < eb)
    replanned = b is not None and a is not None and a.plan != b.plan
    verdict: Verdict = KEPT if better and replanned and x is not None and x >= MIN_SPEEDUP else REVERTED
    why = (
        ""
        if verdict == KEPT
        else " (the same plan: statistics cannot have changed its time)"
        if better and not replanned
        else f" (needs a better estimate and {MIN_SPEEDUP:.0f}x)"
    )
    return _with_times(fix, key, before, after).but(verdict=verdict, reason=f"{estimates}; {shown}{why}")


def judge_work_mem(fix: Fix, before: dict[str, Timing], after: dict[str, Timing]) -> Fix:
    """Kept when its statements run without spilling with the role's new setting and one is
    :data:`MIN_SPEEDUP` faster."""
    key, x, shown = _gain(fix, before, after)
    spilling = [k for k in fix.statements if k in after and any(i.fix == "work_mem" for i in after[k].insights)]
    ok = not spilling and x is not None and x >= MIN_SPEEDUP
    why = (
        f"{', '.join(spilling)} still spills with work_mem {fix.setting}"
        if spilling
        else f"work_mem {fix.setting} for {fix.role}; {shown}" + ("" if ok else f" is less than {MIN_SPEEDUP:.0f}x")
    )
    return _with_times(fix, key, before, after).but(verdict=KEPT if ok else REVERTED, reason=why)


def judge_vacuum(fix: Fix, before: dict[str, Timing], after: dict[str, Timing]) -> Fix:
    """VACUUM cannot be undone: kept, with the blocks its statements read per call before and after."""
    key, _x, shown = _gain(fix, before, after)
    b, a = (before.get(key), after.get(key)) if key else (None, None)
    blocks = (
        f"{b.buffers:,} -> {a.buffers:,} blocks read per call"
        if b is not None and a is not None and b.buffers is not None and a.buffers is not None
        else "blocks not measured"
    )
    return _with_times(fix, key, before, after).but(
        verdict=KEPT, reason=f"VACUUM cannot be undone; {key}: {blocks}; {shown}" if key else "VACUUM cannot be undone"
    )


_Judge = Callable[[Fix, dict[str, Timing], dict[str, Timing]], Fix]
_JUDGES: dict[FixKind, _Judge] = {
    CREATE: judge_create,
    DROP: judge_drop,
    ANALYZE: judge_analyze,
    STATISTICS: judge_statistics,
    WORK_MEM: judge_work_mem,
    VACUUM: judge_vacuum,
}


def judge(fix: Fix, before: dict[str, Timing], after: dict[str, Timing]) -> Fix:
    return _JUDGES[fix.kind](fix, before, after)


def settle(fixes: list[Fix], before: dict[str, Timing], after: dict[str, Timing]) -> list[Fix]:
    """The verdicts of the set as a whole: a new index that a workload statement's plan now uses and
    that made it slower is reverted (the whole workload is checked, not only the fix's own
    statements); a drop that relied on a new index covering it is reverted when that index was not kept."""
    out = []
    for fix in fixes:
        if fix.kind == CREATE and fix.verdict == KEPT and not fix.declared:
            worse = [
                k
                for k, t in after.items()
                if not k.startswith(PROBE) and fix.index_names & set(t.indexes) and slower(before.get(k), t)
            ]
            if worse:
                k = worse[0]
                fix = fix.but(
                    verdict=REVERTED,
                    reason=f"{k} got slower with it: {before[k].median_ms:.3f} -> {after[k].median_ms:.3f} ms",
                )
        out.append(fix)
    kept = {f.index_name for f in out if f.kind == CREATE and f.verdict == KEPT}
    return [
        f.but(verdict=REVERTED, reason=f"{f.depends_on}, the new index that covers it, was not kept")
        if f.kind == DROP and f.depends_on and f.verdict == KEPT and f.depends_on not in kept
        else f
        for f in out
    ]
