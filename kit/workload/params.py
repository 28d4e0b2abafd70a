"""Which value to give each ``$n`` of a statement, from the statistics PostgreSQL keeps on the
column it is compared with — most common values and histogram bounds — or from a sample of the
table (pure: the values come in, the choice goes out).

The choice aims at a typical call of the statement: for equality, the middle of the histogram
(the values that are not among the most common, as a key lookup sees them) or the most common
value when the column has few values; for ranges, a bound that selects about a tenth of the rows
(the "recent rows" an application asks for); for ``= ANY($n)``, a page of ten values.

A typical call is a guess; the workload says what its calls really are (rows per call, mean time).
:func:`equality_options` and :func:`range_options` give the alternatives the measurement picks from
to match it (:mod:`kit.workload.measure`): values of a skewed column with very different
frequencies (the rare ``'open'`` besides the common ``'closed'``), and windows of a range whose
lower bound never lies above its upper bound, from a hundredth of the column to half of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from kit.sqltext.refs import Slot
from kit.sqltext.retype import FIELD_GUESS

PAGE = 10  # values in an array parameter (a page of ids)
DEFAULT_LIMIT = "20"
PAGE_SIZES = ("1", "10", "100")  # other LIMITs tried (kit.workload.sample), nearest the workload's rows kept
PAGE_DEPTHS = ("100", "1000", "10000", "100000")  # other OFFSETs, nearest the workload's time kept


@dataclass(frozen=True)
class ColumnStats:
    """What PostgreSQL (or a sample) knows about one column's values, as text."""

    mcv: tuple[str, ...] = ()
    mcf: tuple[float, ...] = ()
    histogram: tuple[str, ...] = ()
    source: str = "pg_stats"  # "pg_stats" | "sample"
    n_distinct: float | None = None  # as pg_stats has it: negative = a fraction of the rows
    null_frac: float = 0.0

    @property
    def empty(self) -> bool:
        return not self.mcv and not self.histogram


def _quantile(values: tuple[str, ...], q: float) -> str:
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def _ordered(stats: ColumnStats) -> tuple[str, ...]:
    """Values in order of the column, for ranges: the histogram, else the MCVs as they come."""
    return stats.histogram or stats.mcv


def typical(stats: ColumnStats) -> str | None:
    """One representative value for an equality lookup."""
    if stats.empty:
        return None
    common = sum(stats.mcf)
    if stats.histogram and (common < 0.5 or not stats.mcv):
        return _quantile(stats.histogram, 0.5)
    return stats.mcv[0]


def several(stats: ColumnStats, n: int) -> list[str]:
    """``n`` distinct representative values (fewer when the column has fewer): the most common
    ones first, else the histogram from its middle on; the first k of n are the k of k."""
    if not stats.histogram or (stats.mcv and sum(stats.mcf) >= 0.5):
        return list(dict.fromkeys(stats.mcv))[:n]
    pool = list(dict.fromkeys(stats.histogram))
    mid = len(pool) // 2
    return (pool[mid:] + pool[:mid][::-1])[:n]


def array_literal(values: list[str]) -> str:
    """A PostgreSQL array literal of text values, quoted so any value round-trips."""
    quoted = ['"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values]
    return "{" + ",".join(quoted) + "}"


def choose(slot: Slot, stats: ColumnStats | None, *, position: int = 0) -> str | None:
    """The value for one parameter; None when nothing says what it should be. ``position`` is the
    slot's rank among the slots of the same ``IN (...)`` list."""
    if slot.op == "limit":
        return DEFAULT_LIMIT
    if slot.op == "offset":
        return "0"
    if stats is None or stats.empty:
        return None
    ordered = _ordered(stats)
    if slot.array:
        return array_literal(several(stats, PAGE))
    if slot.op == "in":
        values = several(stats, position + 1)
        return values[position] if position < len(values) else values[-1]
    if slot.op in (">", ">="):
        return _quantile(ordered, 0.9)
    if slot.op in ("<", "<="):
        return _quantile(ordered, 0.1)
    if slot.op == "between_lo":
        return _quantile(ordered, 0.45)
    if slot.op == "between_hi":
        return _quantile(ordered, 0.55)
    return typical(stats)


WIDTHS = (0.01, 0.05, 0.2, 0.5, 0.9)  # range windows, as shares of the column's values
_LOWER = {">", ">=", "between_lo"}
_UPPER = {"<", "<=", "between_hi"}


def equality_options(stats: ColumnStats | None, *, limit: int = 3) -> list[str]:
    """Distinct values for an equality lookup whose frequencies differ as much as the column allows:
    the typical one, the rarest and the most common of the most common values, a histogram value."""
    if stats is None or stats.empty:
        return []
    found = [typical(stats)]
    if stats.mcv:
        rarest = min(range(len(stats.mcv)), key=lambda i: stats.mcf[i] if i < len(stats.mcf) else 1.0)
        found += [stats.mcv[rarest], stats.mcv[0]]
    if stats.histogram:
        found.append(_quantile(stats.histogram, 0.5))
    return [v for v in dict.fromkeys(found) if v is not None][:limit]


def range_options(stats: ColumnStats | None, *, lower: bool, upper: bool) -> list[tuple[str | None, str | None]]:
    """(lower bound, upper bound) windows of several widths over the column's ordered values (a bound
    the statement does not have is None): a lower bound alone selects up to the recent end, an upper
    bound alone from the start; with both, windows at the recent end, then in the middle — the lower
    bound never above the upper one, and at least one histogram bucket apart."""
    if stats is None or stats.empty or not (lower or upper):
        return []
    ordered = _ordered(stats)
    last = len(ordered) - 1

    def at(q: float) -> int:
        return max(0, min(last, round(q * last)))

    out: list[tuple[str | None, str | None]] = []
    for width in WIDTHS:
        if not upper:
            out.append((ordered[at(1.0 - width)], None))
        elif not lower:
            out.append((None, ordered[at(width)]))
        else:
            for start in (1.0 - width, 0.5 - width / 2):
                lo = at(start)
                hi = max(at(start + width), min(lo + 1, last))
                out.append((ordered[lo], ordered[hi]))
    return list(dict.fromkeys(out))


def like_options(value: str | None) -> list[str]:
    """LIKE patterns made of a value's words, as applications write them: its first word then
    anything, anything then its last word, a middle word anywhere (a whole value is an equality)."""
    words = (value or "").split()
    if not words:
        return []
    if len(words) == 1:
        half = max(1, len(words[0]) // 2)
        return list(dict.fromkeys([f"{words[0][:half]}%", f"%{words[0][half:]}"]))
    return list(dict.fromkeys([f"{words[0]}%", f"%{words[-1]}", f"%{words[len(words) // 2]}%"]))


def is_lower(op: str) -> bool:
    return op in _LOWER


def is_upper(op: str) -> bool:
    return op in _UPPER


def from_sample(values: list[str | None]) -> ColumnStats:
    """Statistics of a column from sampled values (a never-analyzed table): most common first,
    and the distinct values in order as the histogram when most values are distinct."""
    seen = [v for v in values if v is not None]
    if not seen:
        return ColumnStats(source="sample")
    counts: dict[str, int] = {}
    for v in seen:
        counts[v] = counts.get(v, 0) + 1
    common = sorted(counts, key=lambda v: -counts[v])
    distinct = sorted(counts, key=_sort_key)
    if len(counts) > len(seen) / 2:  # mostly distinct: a key-like column
        return ColumnStats(histogram=tuple(distinct), source="sample")
    return ColumnStats(mcv=tuple(common), mcf=tuple(counts[v] / len(seen) for v in common), source="sample")


def _sort_key(value: str) -> tuple:
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


_NUMBERS = {"smallint", "integer", "bigint", "numeric", "real", "double precision", "money"}
_TEXTS = {"text", "character varying", "character", "bpchar", "varchar", "name", "unknown", "citext"}


def _unit(cast: str | None) -> str | None:
    """The unit of an interval with a qualifier (``interval month``: month), else None."""
    words = (cast or "").split()
    return words[1] if len(words) == 2 and words[0] == "interval" and words[1].isalpha() else None


def by_type(type_name: str | None, *, role: str = "", cast: str | None = None) -> tuple[str, str] | None:
    """(value, where it came from) for a parameter that no column describes, from its type (as
    PostgreSQL infers it, else the cast the text gives it) and its part in an expression
    (:func:`kit.sqltext.retype.contexts`); None when neither says enough. Every such value is a guess
    and its source says so: the measurement that uses it is labelled by whether it reproduced the
    workload's rows and time per call."""
    kind = (type_name or cast or "").split("(")[0].strip().lower()
    if role == "field":
        return FIELD_GUESS, f"the field of extract: not in pg_stat_statements, '{FIELD_GUESS}' guessed"
    if kind.startswith("interval"):
        unit = _unit(cast) or _unit(type_name)
        return ("1", f"an interval: 1 {unit} guessed") if unit else ("1 day", "an interval: 1 day guessed")
    if kind in _NUMBERS:
        if role == "offset":
            return "0", f"a {kind} that moves a bound: 0 guessed (the bound alone)"
        return "1", (
            f"{_article(kind)} {kind} in an expression: 1 guessed"
            if role
            else f"{_article(kind)} {kind} no column describes: 1 guessed"
        )
    if kind == "boolean":
        return "true", "a boolean no column describes: true guessed"
    if kind in _TEXTS:
        return "", f"a {kind} no column describes: '' guessed"
    return None


MAGNITUDES = ("0.0001", "0.001", "0.01", "0.1", "10", "100", "1000")  # a guessed number's other candidates


def guessed_number(value: str | None, source: str) -> bool:
    """Whether ``value`` is a number :func:`by_type` guessed (its source says so): one the measurement
    may try at other magnitudes (a HAVING threshold, a fraction) to find the workload's rows."""
    if value is None or not source.endswith("guessed"):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"
