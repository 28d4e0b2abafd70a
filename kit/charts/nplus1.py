"""Plotly figures of the N+1 fix: statements per request and latency before/after, next to the
seed audit's own expectations (pure: DataFrames in, figures out).

Input frames are :meth:`kit.demo.bench.nplus1.EndpointRuns.to_frame` outputs, concatenated:
columns ``implementation, endpoint, queries, ms``.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

# The seed's §1.1/§1.2 statement counts for a page of 20, and its §9 latency ranges (ms).
SEED_QUERIES = {
    "search_projects": {"before": 41, "after (seed's fix)": 2},
    "list_users": {"before": 21, "after (seed's fix)": 2},
}
SEED_LATENCY_MS = {
    "search_projects": {"before": (400, 800), "after": (50, 100)},  # "List Projects Query"
    "list_users": {"before": (200, 500), "after": (50, 100)},
}
_COLORS = {"naive": "#E45756", "batched": "#54A24B"}


def queries_per_request_figure(requests: pd.DataFrame) -> go.Figure:
    """Statements per request for each endpoint, naive vs batched, with the seed's counts."""
    per = requests.groupby(["endpoint", "implementation"], sort=False)["queries"].max().unstack()
    fig = go.Figure()
    for impl in [c for c in ("naive", "batched") if c in per.columns]:
        fig.add_trace(
            go.Bar(
                x=per.index,
                y=per[impl],
                name=f"measured: {impl}",
                marker_color=_COLORS[impl],
                text=per[impl],
                textposition="outside",
            )
        )
    for label, symbol in (("before", "line-ew-open"), ("after (seed's fix)", "diamond-open")):
        xs = [e for e in per.index if e in SEED_QUERIES]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=[SEED_QUERIES[e][label] for e in xs],
                mode="markers",
                marker=dict(symbol=symbol, size=18, color="black", line=dict(width=2)),
                name=f"seed audit: {label}",
            )
        )
    fig.update_layout(
        barmode="group",
        title="Statements per request (page of 20)",
        yaxis_title="statements",
        legend=dict(orientation="h"),
        margin=dict(l=10, r=10, t=60, b=10),
    )
    return fig


def latency_figure(requests: pd.DataFrame) -> go.Figure:
    """Latency distribution per endpoint before/after (box plots, log scale), with the seed's
    §9 before/after ranges as shaded bands."""
    endpoints = [e for e in requests["endpoint"].unique() if e in SEED_LATENCY_MS]
    fig = make_subplots(rows=1, cols=max(1, len(endpoints)), subplot_titles=endpoints)
    for col, endpoint in enumerate(endpoints, 1):
        sub = requests[requests["endpoint"] == endpoint]
        for impl in ("naive", "batched"):
            ms = sub.loc[sub["implementation"] == impl, "ms"]
            if len(ms):
                fig.add_trace(
                    go.Box(y=ms, name=impl, marker_color=_COLORS[impl], boxpoints="all", showlegend=col == 1), 1, col
                )
        for label, (lo, hi) in SEED_LATENCY_MS[endpoint].items():
            # no annotation_text: on a log axis plotly places annotations in log10 units, so an
            # annotation at y=800 would stretch the axis to 1e800
            fig.add_hrect(
                y0=lo,
                y1=hi,
                row=1,
                col=col,
                line_width=0,
                opacity=0.12,
                fillcolor="#E45756" if label == "before" else "#54A24B",
            )
        fig.update_yaxes(type="log", title_text="ms per request" if col == 1 else None, row=1, col=col)
    fig.update_layout(
        title="Latency per request, naive vs batched (same data, same run)<br><sup>shaded: the "
        "seed's §9 expectations, red before, green after</sup>",
        margin=dict(l=10, r=10, t=70, b=10),
    )
    return fig
