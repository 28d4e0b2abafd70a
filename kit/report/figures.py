"""The report's charts (pure: facts in, figures out). Every chart has a title, axis titles with
units and statements named by their short labels; before and after differ in colour (Okabe–Ito
orange and blue, told apart with every common colour-vision deficiency) and in pattern."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from kit import escape
from kit.report.facts import RunFacts

BEFORE, AFTER = "#E69F00", "#0072B2"  # Okabe–Ito orange and blue
WIDTH = 1100  # the page's content is 1200 px at most: no chart scrolls the page sideways at 1280 px
_FONT = {"family": "system-ui, sans-serif", "size": 13}


def _layout(fig: go.Figure, *, title: str, height: int, **axes: Any) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0, "xanchor": "left"},
        height=height,
        autosize=True,
        font=_FONT,
        margin={"l": 10, "r": 10, "t": 60, "b": 50},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1},
        plot_bgcolor="white",
        **axes,
    )
    fig.update_xaxes(gridcolor="#ddd", automargin=True)
    fig.update_yaxes(gridcolor="#ddd", automargin=True)
    return fig


def share(facts: RunFacts, top: int = 8) -> go.Figure | None:
    """Each top statement's share of the database's time; after the fixes too when they were applied
    (estimated: its time over the window scaled by its measured speedup)."""
    rows = facts.statements[:top]
    if not rows:
        return None
    labels = [escape.chart(s.label) for s in rows][::-1]
    texts = [escape.chart(" ".join(s.text.split())[:300]) for s in rows][::-1]
    fig = go.Figure()
    fig.add_bar(
        y=labels,
        x=[s.share_pct for s in rows][::-1],
        name="before",
        orientation="h",
        marker={"color": BEFORE},
        hovertext=texts,
        hovertemplate="%{y}: %{x:.1f}% of the time<br>%{hovertext}<extra>before</extra>",
    )
    if facts.applied and facts.loop is not None:
        after = _after_shares(facts)
        fig.add_bar(
            y=labels,
            x=[after.get(s.label) for s in rows][::-1],
            name="after (estimated)",
            orientation="h",
            marker={"color": AFTER, "pattern": {"shape": "/"}},
            hovertext=texts,
            hovertemplate="%{y}: %{x:.1f}% of the time<br>%{hovertext}<extra>after</extra>",
        )
    return _layout(
        fig,
        title="Share of the database's execution time, per statement",
        height=max(260, 36 * len(rows) * (2 if len(fig.data) > 1 else 1) + 120),
        barmode="group",
        xaxis_title="% of the database's execution time over the window",
    )


def _after_shares(facts: RunFacts) -> dict[str, float]:
    """The after-share of each statement, by label: its time scaled by its measured speedup, over the
    new total (the statements the loop did not measure keep their time)."""
    total_before = facts.db_time_ms or 0.0
    if total_before <= 0:
        return {}
    scaled = {
        s.label: s.total_ms * (s.after_ms / s.before_ms if s.after_ms and s.before_ms else 1.0)
        for s in facts.statements
    }
    total_after = total_before - sum(s.total_ms for s in facts.statements) + sum(scaled.values())
    return {label: 100 * ms / total_after for label, ms in scaled.items()} if total_after > 0 else {}


def timings(facts: RunFacts, top: int = 12) -> go.Figure | None:
    """Median execution time of each measured statement before and after (log scale)."""
    rows = [s for s in facts.statements if s.before_ms is not None][:top]
    if not rows:
        return None
    labels = [escape.chart(s.label) for s in rows][::-1]
    fig = go.Figure()
    fig.add_bar(y=labels, x=[s.before_ms for s in rows][::-1], name="before", orientation="h", marker={"color": BEFORE})
    if any(s.after_ms is not None for s in rows):
        fig.add_bar(
            y=labels,
            x=[s.after_ms for s in rows][::-1],
            name="after",
            orientation="h",
            marker={"color": AFTER, "pattern": {"shape": "/"}},
        )
    return _layout(
        fig,
        title="Median execution time per statement, on the workload's own values",
        height=max(260, 36 * len(rows) * len(fig.data) + 120),
        barmode="group",
        xaxis={"type": "log", "title": {"text": "median execution time (ms, log scale)"}},
    )


def trend(facts: RunFacts, figure: str, *, title: str, axis: str) -> go.Figure | None:
    """``figure`` over the earlier runs of this target and this one (None: fewer than two runs have it)."""
    points = [(r["created_at"], r[figure]) for r in facts.trend if figure in r]
    if len(points) < 2:
        return None
    fig = go.Figure()
    fig.add_scatter(
        x=[p[0] for p in points], y=[p[1] for p in points], mode="lines+markers", name=figure, line={"color": AFTER}
    )
    return _layout(fig, title=title, height=300, xaxis_title="run (UTC)", yaxis_title=axis, showlegend=False)


def load(facts: RunFacts) -> go.Figure | None:
    """The demo's p95 latency under load per flavour of its services (None: no load was measured)."""
    p95 = {name.split(".")[-1]: v for name, v in facts.figures.items() if name.startswith("load.p95_ms.")}
    if not p95:
        return None
    names = list(p95)
    fig = go.Figure()
    fig.add_bar(
        x=[escape.chart(n) for n in names],
        y=[p95[n] for n in names],
        marker={"color": [BEFORE if n == "naive" else AFTER for n in names]},
        hovertemplate="%{x}: %{y:.1f} ms<extra></extra>",
    )
    return _layout(
        fig,
        title="p95 latency of the endpoint mix under load, per version of the services",
        height=320,
        xaxis_title="services",
        yaxis_title="p95 latency (ms)",
        showlegend=False,
    )
