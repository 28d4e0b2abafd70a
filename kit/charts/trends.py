"""Plotly figures of runs over time and of one comparison (pure: DataFrames in, figures out)."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kit import escape
from kit.store.history import Comparison


def headline_figures(trend: pd.DataFrame, *, limit: int = 12) -> list[str]:
    """The figures worth charting: those that vary across runs first, then the rest, by name."""
    if trend.empty:
        return []
    spread = trend.groupby("figure")["value"].agg(lambda v: v.max() - v.min())
    ordered = sorted(spread.index, key=lambda f: (spread[f] == 0, f))
    return ordered[:limit]


def trend_figure(trend: pd.DataFrame, *, figures: list[str] | None = None, limit: int = 12) -> go.Figure:
    """One small panel per figure: its value per run (with the CI as error bars where recorded);
    hovering a point shows the run and its scale."""
    names = figures or headline_figures(trend, limit=limit)
    if not names:
        fig = go.Figure()
        fig.update_layout(title="No runs yet", height=200)
        return fig
    cols = 3 if len(names) > 4 else max(len(names), 1)
    rows = math.ceil(len(names) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=names, vertical_spacing=0.5 / max(rows, 1))
    for i, name in enumerate(names):
        df = trend[trend["figure"] == name].sort_values("created_at")
        has_ci = df["lo"].notna().all() and df["hi"].notna().all() and len(df) > 0
        error = (
            dict(
                type="data",
                symmetric=False,
                array=(df["hi"] - df["value"]).tolist(),
                arrayminus=(df["value"] - df["lo"]).tolist(),
            )
            if has_ci
            else None
        )
        fig.add_trace(
            go.Scatter(
                x=df["created_at"],
                y=df["value"],
                mode="lines+markers",
                name=name,
                error_y=error,
                customdata=df[["run", "scale"]].astype(str).values,
                hovertemplate="run %{customdata[0]} (scale %{customdata[1]})<br>%{y:,.3f}<extra>" + name + "</extra>",
                showlegend=False,
            ),
            row=i // cols + 1,
            col=i % cols + 1,
        )
    target = trend["target"].dropna().iloc[0] if trend["target"].notna().any() else "?"
    fig.update_layout(
        title=f"Headline figures over the last {trend['run'].nunique()} run(s) of {target}",
        height=60 + 230 * rows,
        margin=dict(l=10, r=10, t=80, b=10),
    )
    return fig


def comparison_figure(comparison: Comparison | None, *, limit: int = 20) -> go.Figure:
    """Relative change per figure from run a to run b, largest moves first (grey: CIs overlap)."""
    if comparison is None:
        fig = go.Figure()
        fig.update_layout(title="Two runs of the same database are needed for a comparison", height=200)
        return fig
    df = comparison.figures.dropna(subset=["change_pct"])
    df = df.reindex(df["change_pct"].abs().sort_values(ascending=False).index).head(limit).iloc[::-1]
    colors = [
        "#BBBBBB" if s is False else "#E45756" if c > 0 else "#4C78A8"
        for s, c in zip(df["significant"], df["change_pct"], strict=False)
    ]
    fig = go.Figure(
        go.Bar(
            y=df["figure"],
            x=df["change_pct"],
            orientation="h",
            marker_color=colors,
            hovertemplate="%{y}: %{x:+.1f}%<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"Change from run {comparison.a} to {comparison.b} (%)",
        xaxis_title="change (%)",
        height=120 + 24 * max(len(df), 1),
        margin=dict(l=10, r=10, t=60, b=10),
    )
    return fig


def statement_trend_figure(trend: pd.DataFrame) -> go.Figure:
    """Mean time per call of the top statements across runs (pg_stat_statements over each run's
    window); open markers: the kit's measured medians before and after that run's apply."""
    if trend.empty:
        fig = go.Figure()
        fig.update_layout(
            title="No statement trend yet: runs of this database with pg_stat_statements are needed", height=200
        )
        return fig
    fig = go.Figure()
    for label, part in trend.groupby("statement", sort=False):
        part = part.sort_values("created_at")
        fig.add_scatter(
            x=part["created_at"],
            y=part["mean_ms"],
            mode="lines+markers",
            name=escape.chart(label),
            legendgroup=label,
            customdata=part[["run"]].values,
            hovertemplate="run %{customdata[0]}<br>%{y:.3f} ms/call<extra>%{fullData.name}</extra>",
        )
        for phase, symbol in (("before_ms", "circle-open"), ("after_ms", "diamond-open")):
            if phase in part and part[phase].notna().any():
                fig.add_scatter(
                    x=part["created_at"],
                    y=part[phase],
                    mode="markers",
                    legendgroup=label,
                    showlegend=False,
                    marker=dict(symbol=symbol, size=10),
                    name=escape.chart(label),
                    hovertemplate=phase.replace("_ms", "") + " apply: %{y:.3f} ms<extra>%{fullData.name}</extra>",
                )
    fig.update_layout(
        yaxis_type="log",
        yaxis_title="ms per call",
        height=440,
        legend=dict(font=dict(size=9)),
        title="Top statements' mean time across runs (open markers: measured before/after apply)",
    )
    return fig
