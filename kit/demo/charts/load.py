"""Figures for the load, pool, resource and ingest results (pure: results in, plotly figures out)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kit.demo.load import QUANTILES


def load_model(r: pd.Series) -> str:
    """The load model of a :meth:`LoadResult.to_frame` row in words: open at an offered rate, or closed."""
    if r.get("model") == "open":
        return f"open, {r['rate_rps']:g} rps offered, {r['users']} users"
    think = r.get("think_s")
    return f"closed, {r['users']} users" + (f", {think:g} s think" if think == think and think else "")


def latency_chart(runs: pd.DataFrame, *, title: str = "Latency under load") -> go.Figure:
    """p50/p95/p99 per run, bars with their bootstrap 95 % intervals, log scale, each run named
    with its load model (``runs``: one :meth:`LoadResult.to_frame` row per run)."""
    fig = go.Figure()
    for _, r in runs.iterrows():
        values = [(r[f"{q}_ms"], r[f"{q}_lo"], r[f"{q}_hi"]) for q in QUANTILES]
        fig.add_bar(
            name=f"{r['label']} ({load_model(r)})",
            x=list(QUANTILES),
            y=[v for v, _, _ in values],
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [hi - v for v, _, hi in values],
                "arrayminus": [v - lo for v, lo, _ in values],
            },
        )
    fig.update_layout(title=title, barmode="group", yaxis_title="ms (log)", yaxis_type="log")
    return fig


def pool_sweep_chart(
    sweep: pd.DataFrame,
    *,
    p95_target_ms: float,
    recommended_size: int | None,
    max_wait_target_ms: float | None = None,
    title: str = "Pool size per load process: p95 and pool wait",
) -> go.Figure:
    """p95 (with interval), p99 and max pool wait against pool size; the pick marked
    (``sweep``: :meth:`PoolSweep.to_frame`). The max wait is what a starved request sees."""
    rows = sweep[sweep["fits_server"]]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_scatter(
        x=rows["size"],
        y=rows["p95_ms"],
        name="p95 ms",
        mode="lines+markers",
        error_y={
            "type": "data",
            "symmetric": False,
            "array": rows["p95_hi"] - rows["p95_ms"],
            "arrayminus": rows["p95_ms"] - rows["p95_lo"],
        },
    )
    for column, dash in (("p99_wait_ms", "dot"), ("max_wait_ms", "dashdot")):
        if column in rows:
            fig.add_scatter(
                x=rows["size"],
                y=rows[column],
                name=column.replace("_ms", " ms").replace("_", " pool "),
                mode="lines+markers",
                line={"dash": dash},
                secondary_y=True,
            )
    fig.add_hline(y=p95_target_ms, line_dash="dash", annotation_text="p95 target")
    if max_wait_target_ms is not None:
        fig.add_hline(y=max_wait_target_ms, line_dash="dot", annotation_text="max wait target", secondary_y=True)
    if recommended_size is not None:
        fig.add_vline(x=recommended_size, line_color="green", annotation_text=f"recommended {recommended_size}")
    fig.update_layout(title=title, xaxis_title="pool_size")
    fig.update_yaxes(title_text="p95 ms", secondary_y=False)
    fig.update_yaxes(title_text="pool wait ms", secondary_y=True)
    return fig


def resources_chart(samples: dict[str, pd.DataFrame], *, title: str = "Load processes: memory and CPU") -> go.Figure:
    """RSS (top) and CPU (bottom) over time, one trace per named run (``ResourceSummary.samples``)."""
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        subplot_titles=("RSS MB (the load's processes together)", "CPU % of one core"),
    )
    for name, s in samples.items():
        fig.add_scatter(x=s["t_s"], y=s["rss_mb"], name=f"{name} RSS", row=1, col=1)
        fig.add_scatter(x=s["t_s"], y=s["cpu_pct"], name=f"{name} CPU", row=2, col=1)
    fig.update_layout(title=title)
    fig.update_xaxes(title_text="seconds", row=2, col=1)
    return fig


def ingest_chart(frame: pd.DataFrame, *, title: str = "COPY ingest throughput by chunk size") -> go.Figure:
    """Rows/s per chunk size, one bar group per concurrency (a :func:`kit.demo.services.ingest.compare_ingest` frame)."""
    fig = go.Figure()
    for concurrency, part in frame.groupby("concurrency", sort=True):
        fig.add_bar(x=part["chunk"], y=part["rows_per_s"], name=f"{concurrency} file(s) at once")
    fig.update_layout(title=title, barmode="group", xaxis_title="chunk size", yaxis_title="rows/s")
    return fig
