"""Figures in the units a reader thinks in: MB, ms or s, "3 h ago", 1.2k calls (pure)."""

from __future__ import annotations

from datetime import UTC, datetime


def size(n: float | None) -> str:
    """Bytes as B, kB, MB, GB or TB (powers of 1024, one decimal from kB up)."""
    if n is None:
        return "—"
    value, sign = abs(float(n)), "−" if n < 0 else ""
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1024 or (unit == "GB" and value < 1024**2):
            return f"{sign}{value:.0f} {unit}" if unit == "B" else f"{sign}{value:.1f} {unit}"
        value /= 1024
    return f"{sign}{value:.1f} TB"


def duration(ms: float | None) -> str:
    """Milliseconds as µs, ms, s, min or h, with three significant figures at most."""
    if ms is None:
        return "—"
    ms = float(ms)
    if ms < 1:
        return f"{ms * 1000:.0f} µs"
    if ms < 1000:
        return f"{ms:.3g} ms"
    if ms < 60_000:
        return f"{ms / 1000:.3g} s"
    if ms < 3_600_000:
        return f"{ms / 60_000:.3g} min"
    return f"{ms / 3_600_000:.3g} h"


def count(n: float | None) -> str:
    """A count as 950, 12.3k, 4.5M."""
    if n is None:
        return "—"
    n = float(n)
    if abs(n) < 1000:
        return f"{n:.0f}"
    if abs(n) < 1_000_000:
        return f"{n / 1000:.3g}k"
    return f"{n / 1_000_000:.3g}M"


def percent(p: float | None) -> str:
    return "—" if p is None else f"{p:.1f} %" if p < 10 else f"{p:.0f} %"


def speedup(x: float | None) -> str:
    """A measured ratio: 2.4× faster, 1.1× slower."""
    if x is None or x <= 0:
        return "—"
    return f"{x:.3g}× faster" if x >= 1 else f"{1 / x:.3g}× slower"


def ago(when: datetime, now: datetime | None = None) -> str:
    """How long before ``now``: "just now", "12 min ago", "3 h ago", "2 days ago"."""
    seconds = ((now or datetime.now(UTC)) - when).total_seconds()
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min ago"
    if seconds < 86_400 * 2:
        return f"{seconds // 3600:.0f} h ago"
    return f"{seconds // 86_400:.0f} days ago"


def moment(when: datetime) -> str:
    """A timestamp to the minute, in UTC: "2026-12-06 14:03 UTC"."""
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
