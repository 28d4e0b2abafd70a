"""Why a plan is slow, read from ``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`` of one execution on the
workload's own values (pure: a plan in, insights out). Each insight names the plan node, the evidence
in figures and the class of fix that answers it:

No insight quotes a condition: a plan on the workload's values holds those values, drawn from the
data; an insight names the columns compared.

* ``misestimate`` — a node's planned rows off by 10× or more from what it returned (per loop), where it
  matters (100+ rows on either side): the planner chose on a wrong count (under a Limit, which stops
  its input early, only more rows than planned count). Columns of one table
  compared together (``a = $1 AND b = $2``) are likely correlated → ``create_statistics``; else
  stale statistics → ``analyze``. A statement that is simply big, and estimated right, has none.
* ``sort_spill`` / ``hash_spill`` — a sort written to disk (``external``), a hash or a hash aggregate in
  several batches:
  ``work_mem`` too small for it → ``work_mem``.
* ``lossy_bitmap`` — a bitmap heap scan that lost its exact pages (``Lossy Heap Blocks``), rechecking
  every row of them: ``work_mem`` again.
* ``filter_discards`` — a scan that threw away 90 %+ of the rows it read (1,000 at least) → ``index``.
* ``many_loops`` — the inner side of a nested loop run 1,000+ times → ``advice`` (how the join is done).
* ``heap_fetches`` — an index-only scan that visited the table for most rows: the visibility map is
  stale → ``vacuum``.
* ``jit`` — JIT compilation took 30 %+ of a statement's time (10 ms at least) → ``advice`` (raise
  ``jit_above_cost``, or ``jit = off`` for the role).
* ``planning`` — planning took longer than executing (1 ms at least) → ``advice`` (prepared statements;
  fewer partitions scanned).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final, Literal

InsightKind = Literal[
    "misestimate",
    "sort_spill",
    "hash_spill",
    "lossy_bitmap",
    "filter_discards",
    "many_loops",
    "heap_fetches",
    "jit",
    "planning",
]
FixClass = Literal["create_statistics", "analyze", "work_mem", "index", "vacuum", "advice"]

MISESTIMATE: Final = 10.0  # planned vs actual rows, either way
MISESTIMATE_MIN_ROWS: Final = 100.0
DISCARDED: Final = 0.9
DISCARDED_MIN_ROWS: Final = 1000
MANY_LOOPS: Final = 1000
JIT_SHARE: Final = 0.3
JIT_MIN_MS: Final = 10.0
PLANNING_MIN_MS: Final = 1.0
BLOCK: Final = 8192

_COLUMN = re.compile(r"\(?(?:\w+\.)?\"?(\w+)\"?\s*(?:=|<|>|<=|>=|<>|~~)")


@dataclass(frozen=True)
class Insight:
    kind: InsightKind
    node: str  # "Seq Scan on orders", "Sort", "Hash Join"
    evidence: str  # a sentence with the figures
    fix: FixClass
    columns: tuple[str, ...] = ()  # a misestimate's compared columns of one table (for create_statistics)
    relation: str | None = None


def insights(explain: dict[str, Any]) -> tuple[Insight, ...]:
    """The insights of one ``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`` result (its first element)."""
    out: list[Insight] = []
    _walk(explain["Plan"], out)
    out += _statement_level(explain)
    return tuple(out)


def _name(node: dict[str, Any]) -> str:
    relation = node.get("Relation Name")
    return f"{node['Node Type']} on {relation}" if relation else str(node["Node Type"])


def _walk(node: dict[str, Any], out: list[Insight], *, limited: bool = False) -> None:
    """``limited``: a Limit above stops this node early, so fewer rows than planned is no misestimate."""
    for check in (_sort_spill, _hash_spill, _hashagg_spill, _lossy, _discards, _loops, _heap_fetches):
        found = check(node)
        if found is not None:
            out.append(found)
    mis = _misestimate(node)
    if mis is not None and not (limited and "fewer" in mis.evidence):
        out.append(mis)
    limited = limited or node.get("Node Type") == "Limit"
    for child in node.get("Plans", ()):
        _walk(child, out, limited=limited)


def _misestimate(node: dict[str, Any]) -> Insight | None:
    if "Actual Rows" not in node or not node.get("Actual Loops"):
        return None
    planned, actual = float(node.get("Plan Rows", 0)), float(node["Actual Rows"])
    ratio = max(planned, 1.0) / max(actual, 1.0)
    off = ratio if ratio >= 1 else 1 / ratio
    if off < MISESTIMATE or max(planned, actual) < MISESTIMATE_MIN_ROWS:
        return None
    condition = " AND ".join(node[k] for k in ("Index Cond", "Recheck Cond", "Filter") if node.get(k))
    columns = tuple(dict.fromkeys(_COLUMN.findall(condition)))
    together = len(columns) >= 2 and " AND " in condition and node.get("Relation Name") is not None
    # the columns only: a custom plan's condition holds the values it ran with, drawn from the data
    where = f" on ({', '.join(columns)})" if columns else ""
    return Insight(
        "misestimate",
        _name(node),
        f"{_name(node)}{where}: planned {planned:,.0f} rows, returned {actual:,.0f} "
        f"({off:,.0f}× {'fewer' if ratio > 1 else 'more'} than planned)",
        "create_statistics" if together else "analyze",
        columns=columns if together else (),
        relation=node.get("Relation Name"),
    )


def _sort_spill(node: dict[str, Any]) -> Insight | None:
    method = str(node.get("Sort Method", ""))
    if node.get("Node Type") not in {"Sort", "Incremental Sort"}:
        return None
    if node.get("Sort Space Type") != "Disk" and "external" not in method:
        return None
    used = float(node.get("Sort Space Used", 0) or 0) / 1024
    return Insight("sort_spill", _name(node), f"Sort spilled {used:,.1f} MB to disk ({method})", "work_mem")


def _hash_spill(node: dict[str, Any]) -> Insight | None:
    batches = int(node.get("Hash Batches", 1) or 1)
    if node.get("Node Type") != "Hash" or batches <= 1:
        return None
    peak = float(node.get("Peak Memory Usage", 0) or 0) / 1024
    return Insight(
        "hash_spill", _name(node), f"Hash built in {batches} batches (spilled; {peak:,.1f} MB in memory)", "work_mem"
    )


def _hashagg_spill(node: dict[str, Any]) -> Insight | None:
    batches = int(node.get("HashAgg Batches", 1) or 1)
    disk = float(node.get("Disk Usage", 0) or 0) / 1024
    if node.get("Node Type") != "Aggregate" or (batches <= 1 and disk <= 0):
        return None
    return Insight(
        "hash_spill", _name(node), f"HashAggregate in {batches} batches (spilled {disk:,.1f} MB to disk)", "work_mem"
    )


def _lossy(node: dict[str, Any]) -> Insight | None:
    lossy = int(node.get("Lossy Heap Blocks", 0) or 0)
    if lossy <= 0:
        return None
    exact = int(node.get("Exact Heap Blocks", 0) or 0)
    share = lossy / (lossy + exact)
    return Insight(
        "lossy_bitmap",
        _name(node),
        f"{_name(node)}: {lossy:,} of {lossy + exact:,} heap pages lossy ({share:.0%}), every row on them rechecked",
        "work_mem",
        relation=node.get("Relation Name"),
    )


def _discards(node: dict[str, Any]) -> Insight | None:
    removed = float(node.get("Rows Removed by Filter", 0) or 0) * float(node.get("Actual Loops", 1) or 1)
    kept = float(node.get("Actual Rows", 0) or 0) * float(node.get("Actual Loops", 1) or 1)
    if removed < DISCARDED_MIN_ROWS or removed / (removed + kept) < DISCARDED:
        return None
    return Insight(
        "filter_discards",
        _name(node),
        f"{_name(node)} read {removed + kept:,.0f} rows to keep {kept:,.0f} ({removed / (removed + kept):.1%} "
        f"thrown away by its filter{_on(node.get('Filter'))})",
        "index",
        relation=node.get("Relation Name"),
    )


def _on(condition: str | None) -> str:
    """`` on (a, b)``: the columns a condition compares, never its values."""
    columns = tuple(dict.fromkeys(_COLUMN.findall(condition or "")))
    return f" on ({', '.join(columns)})" if columns else ""


def _loops(node: dict[str, Any]) -> Insight | None:
    if node.get("Node Type") != "Nested Loop" or len(node.get("Plans", ())) < 2:
        return None
    inner = node["Plans"][1]
    loops = int(inner.get("Actual Loops", 0) or 0)
    if loops < MANY_LOOPS:
        return None
    return Insight(
        "many_loops",
        "Nested Loop",
        f"the inner side ({_name(inner)}) ran {loops:,} times, once per outer row",
        "advice",
        relation=inner.get("Relation Name"),
    )


def _heap_fetches(node: dict[str, Any]) -> Insight | None:
    if node.get("Node Type") != "Index Only Scan":
        return None
    fetches = float(node.get("Heap Fetches", 0) or 0)
    rows = float(node.get("Actual Rows", 0) or 0) * float(node.get("Actual Loops", 1) or 1)
    if fetches < DISCARDED_MIN_ROWS or fetches < 0.5 * rows:
        return None
    return Insight(
        "heap_fetches",
        _name(node),
        f"{_name(node)} visited the table for {fetches:,.0f} of {rows:,.0f} rows: its visibility map is stale",
        "vacuum",
        relation=node.get("Relation Name"),
    )


def _statement_level(explain: dict[str, Any]) -> list[Insight]:
    out = []
    execution = float(explain.get("Execution Time", 0) or 0)
    planning = float(explain.get("Planning Time", 0) or 0)
    jit = float(((explain.get("JIT") or {}).get("Timing") or {}).get("Total", 0) or 0)
    if jit >= JIT_MIN_MS and jit >= JIT_SHARE * execution:
        out.append(
            Insight(
                "jit",
                "JIT",
                f"JIT compilation took {jit:,.1f} ms of {execution:,.1f} ms ({jit / execution:.0%})",
                "advice",
            )
        )
    if planning >= PLANNING_MIN_MS and planning > execution:
        out.append(
            Insight(
                "planning", "Planning", f"planning took {planning:,.1f} ms, executing {execution:,.1f} ms", "advice"
            )
        )
    return out
