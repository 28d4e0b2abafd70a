"""Figures for the index section: per-index before/after times, and status counts (pure)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from kit import escape

SEED_CLAIM_MS = (10.0, 50.0)  # the seed's "10-50 ms" for indexed queries


def before_after(frame: pd.DataFrame) -> go.Figure:
    """Median execution time per index before and after (log scale); unused ones marked."""
    df = frame.sort_values("exec_ms_before", ascending=True, na_position="first")
    labels = escape.charts(f"{n}{'' if u else ' (unused)'}" for n, u in zip(df["name"], df["used"], strict=False))
    fig = go.Figure()
    fig.add_bar(
        y=labels,
        x=df["exec_ms_before"],
        name="before",
        orientation="h",
        hovertext=escape.charts(df["plan_before"]) if "plan_before" in df else None,
    )
    fig.add_bar(y=labels, x=df["exec_ms_after"], name="after", orientation="h", hovertext=escape.charts(df["reason"]))
    # no annotation_text: plotly places annotations on a log axis in log10 units (x=10 -> 1e10)
    fig.add_vrect(x0=SEED_CLAIM_MS[0], x1=SEED_CLAIM_MS[1], fillcolor="grey", opacity=0.15, line_width=0)
    fig.update_layout(
        barmode="group",
        xaxis_type="log",
        xaxis_title="median EXPLAIN ANALYZE execution ms",
        height=max(400, 28 * len(df)),
        title="Representative query per index, before vs after<br><sup>shaded: the seed's "
        "expectation for indexed queries, 10-50 ms</sup>",
    )
    return fig


def status_counts(status: pd.DataFrame) -> go.Figure:
    """How many declared indexes are applied, missing, invalid, differ; extras too."""
    counts = status["state"].value_counts()
    return go.Figure(
        go.Bar(x=counts.index.tolist(), y=counts.values.tolist()),
        layout={"title": "Index status vs the migration", "yaxis_title": "indexes"},
    )
