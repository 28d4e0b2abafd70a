"""Keep or revert, from timings (pure)."""

from __future__ import annotations

from dataclasses import replace

from kit.fixes import CREATE, DROP, KEPT, REVERTED, Fix
from kit.fixes.verify import judge, settle, slower
from kit.workload.timing import ESTIMATED, MEASURED, Timing


def _t(*ms, indexes=(), mode=MEASURED, cost=None, reproduced=None):
    return Timing("q", mode, exec_ms=tuple(ms), indexes=tuple(indexes), cost=cost, reproduced=reproduced,
                  evidence="not reproduced (rows): 0 rows in 0.007 ms; the workload: 1,204.0 rows in 50.800 ms per call"
                  if reproduced is False else "")


def _create(**kw):
    return Fix(CREATE, "sql", "public.t", ("q",), "why", "expect", "advisor", index="public.ix", index_name="ix", **kw)


def test_a_new_index_needs_its_plan_and_2x():
    fast = {"q": _t(1.0, 1.1, 0.9, indexes=["ix"])}
    assert judge(_create(), {"q": _t(10, 11, 9)}, fast).verdict == KEPT
    assert judge(_create(), {"q": _t(10, 11, 9)}, fast).speedup == 10.0
    half = judge(_create(), {"q": _t(1.5, 1.6, 1.4)}, fast)
    assert (half.verdict, half.reason) == \
        (REVERTED, "plan uses it but q: 1.500 -> 1.000 ms (1.5x, nothing to compare with) is less than 2x")
    unused = judge(_create(), {"q": _t(10, 11, 9)}, {"q": _t(1, 1, 1, indexes=["other"])})
    assert (unused.verdict, unused.reason) == (REVERTED, "the planner does not use it on q")
    kept = judge(_create(declared=True), {"q": _t(10, 11, 9)}, {"q": _t(1, 1, 1, indexes=["other"])})
    assert (kept.verdict, kept.reason) == (KEPT, "declared in the migration, so kept; but the planner does not use it on q")
    probe = Fix(CREATE, "sql", "public.t", ("q", "probe:fk"), "why", "expect", "foreign key", index="public.ix",
                index_name="ix")
    both = judge(probe, {"q": _t(3, 3, 3), "probe:fk": _t(50, 50, 50)},
                 {"q": _t(1, 1, 1, indexes=["ix"]), "probe:fk": _t(1, 1, 1, indexes=["ix"])})
    assert (both.verdict, both.speedup) == (KEPT, 3.0)  # the workload's statement decides, not the probe
    only_probe = judge(probe, {"q": _t(3, 3, 3), "probe:fk": _t(50, 50, 50)},
                       {"q": _t(3, 3, 3), "probe:fk": _t(1, 1, 1, indexes=["ix"])})
    assert (only_probe.verdict, only_probe.speedup) == (KEPT, 50.0)
    assert judge(_create(), {"q": _t(10, 11, 9, reproduced=True)}, fast).reason == \
        "plan uses it; q: 10.000 -> 1.000 ms (10.0x, as the workload runs it)"
    estimated = judge(_create(), {"q": _t(mode=ESTIMATED, cost=1000.0)}, {"q": _t(mode=ESTIMATED, cost=10.0, indexes=["ix"])})
    assert (estimated.verdict, estimated.reason) == (KEPT, "plan uses it; estimated only: cost 1000 -> 10")


def test_a_drop_is_undone_only_when_a_statement_is_slower_beyond_noise():
    assert slower(_t(1.0, 1.0, 1.0, 1.0, 1.0), _t(2.0, 2.1, 2.2, 2.0, 2.1))
    assert not slower(_t(1.0, 1.0, 1.0), _t(1.1, 1.2, 1.1))  # under 25 %
    assert not slower(_t(0.01, 0.01, 0.01), _t(0.03, 0.03, 0.03))  # 3x but 0.02 ms: noise
    assert not slower(_t(1.0, 1.1, 1.0), _t(0.9, 2.0, 2.1))  # one run after as fast as before: noise
    assert slower(_t(1.0, 3.0, 1.0, 1.0, 1.1), _t(1.9, 2.0, 2.1, 2.0, 2.2))  # one slow run before does not hide it
    drop = Fix(DROP, "sql", "public.t", ("q",), "why", "expect", "duplicate", index="public.ix", index_name="ix")
    assert judge(drop, {"q": _t(1.0, 1.0, 1.0)}, {"q": _t(1.0, 1.1, 1.0)}).verdict == KEPT
    assert judge(drop, {"q": _t(1.0, 1.0, 1.0)}, {"q": _t(5.0, 5.1, 5.0)}).verdict == REVERTED
    assert judge(drop, {"q": _t(1.0, 1.0, 1.0), "other": _t(1, 1, 1)},
                 {"q": _t(1.0, 1.0, 1.0), "other": _t(9, 9, 9)}).verdict == KEPT  # another table's statement


def test_a_drop_that_leaves_the_plan_and_its_blocks_alone_cannot_have_slowed_it():
    """The duplicate dropped, the statement runs the same plan over the same blocks: a slower measurement
    is the machine, not the drop; another plan, or more blocks, is the drop."""
    drop = Fix(DROP, "sql", "public.t", ("q",), "why", "expect", "duplicate", index="public.ix", index_name="ix")

    def timed(*ms, plan="Index Scan", buffers=3):
        return replace(_t(*ms), plan=plan, buffers=buffers)

    before = {"q": timed(0.02, 0.02, 0.02)}
    assert judge(drop, before, {"q": timed(0.2, 0.3, 0.2)}).verdict == KEPT  # a busy machine
    assert judge(drop, before, {"q": timed(0.2, 0.3, 0.2, plan="Seq Scan", buffers=300)}).verdict == REVERTED
    assert judge(drop, before, {"q": timed(0.2, 0.3, 0.2, buffers=9)}).verdict == REVERTED  # more blocks
    assert judge(drop, before, {"q": timed(0.2, 0.3, 0.2, buffers=None)}).verdict == REVERTED  # unknown: the time


def test_a_measurement_that_does_not_reproduce_the_workload_keeps_nothing():
    """An empty range measured at 0.007 ms where the workload takes 50.8 ms per call: 2,173x on it is
    no evidence; a probe the kit wrote still is, and a migration's index is kept anyway."""
    fast = {"q": _t(0.001, 0.001, 0.001, indexes=["ix"]), "probe:fk": _t(1, 1, 1, indexes=["ix"])}
    unlike = judge(_create(), {"q": _t(2.0, 2.1, 1.9, reproduced=False)}, fast)
    assert unlike.verdict == REVERTED
    assert unlike.reason == ("not kept on this evidence: q's measurement does not reproduce the workload (not "
                             "reproduced (rows): 0 rows in 0.007 ms; the workload: 1,204.0 rows in 50.800 ms per call)")
    probe = Fix(CREATE, "sql", "public.t", ("q", "probe:fk"), "why", "expect", "foreign key", index="public.ix",
                index_name="ix")
    on_probe = judge(probe, {"q": _t(2.0, reproduced=False), "probe:fk": _t(8, 8, 8)}, fast)
    assert (on_probe.verdict, on_probe.speedup) == (KEPT, 8.0)
    assert judge(_create(declared=True), {"q": _t(2.0, reproduced=False)}, fast).verdict == KEPT


def test_the_set_is_judged_as_a_whole():
    """A kept index that another statement's plan now uses and that made it slower is reverted; a drop
    that relied on a new index covering it goes with it."""
    new = _create().but(verdict=KEPT, reason="plan uses it")
    covered = Fix(DROP, "sql", "public.t", ("q",), "why", "expect", "covered by a new index", index="public.old",
                  index_name="old", depends_on="ix", verdict=KEPT)
    before = {"q": _t(1.0, 1.0, 1.0), "other": _t(1.0, 1.0, 1.0, 1.0, 1.0)}
    fine = {"q": _t(0.1, 0.1, 0.1, indexes=["ix"]), "other": _t(1.0, 1.0, 1.0, 1.0, 1.0, indexes=["ix"])}
    assert [f.verdict for f in settle([new, covered], before, fine)] == [KEPT, KEPT]
    worse = {**fine, "other": _t(3.0, 3.1, 3.2, 3.0, 3.1, indexes=["ix"])}
    settled = settle([new, covered], before, worse)
    assert [f.verdict for f in settled] == [REVERTED, REVERTED]
    assert settled[0].reason == "other got slower with it: 1.000 -> 3.100 ms"
    assert settled[1].reason == "ix, the new index that covers it, was not kept"


def test_statistics_are_kept_for_a_better_estimate_a_new_plan_and_2x():
    stats = Fix("create_statistics", "sql", "public.t", ("q",), "why", "expect", "plan insight", object_name="s")

    def timed(*ms, plan, est, act):
        return replace(_t(*ms), plan=plan, est_rows=est, actual_rows=act)

    bad = {"q": timed(40, 41, 40, plan="Nested Loop Anti Join", est=1, act=200)}
    fixed = {"q": timed(1, 1, 1, plan="Hash Anti Join", est=190, act=200)}
    kept = judge(stats, bad, fixed)
    assert (kept.verdict, kept.speedup) == (KEPT, 40.0) and kept.reason.startswith("row estimate off 200x before, 1x after")
    quiet = judge(stats, bad, {"q": timed(10, 10, 10, plan="Nested Loop Anti Join", est=190, act=200)})
    assert quiet.verdict == REVERTED and quiet.reason.endswith("(the same plan: statistics cannot have changed its time)")
    same = judge(stats, bad, {"q": timed(1, 1, 1, plan="Hash Anti Join", est=1, act=200)})
    assert same.verdict == REVERTED and same.reason.endswith("(needs a better estimate and 2x)")
