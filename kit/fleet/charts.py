"""Plotly figures of a fleet, every target side by side (pure: a FleetView in, figures out)."""

from __future__ import annotations

import math
from itertools import cycle

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from kit import escape
from kit.fleet.view import FIX_STATES, NOT_RECORDED, FleetView

_SEVERITY_COLORS = {"high": "#E45756", "medium": "#F58518", "low": "#EECA3B", "info": "#72B7B2", "unrated": "#BAB0AC"}
_STATE_COLORS = {
    "applied": "#54A24B",
    "missing": "#E45756",
    "invalid": "#B279A2",
    "differs": "#F58518",
    "extra": "#72B7B2",
    "no table": "#BAB0AC",
}


def _empty(title: str) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, height=180, xaxis_visible=False, yaxis_visible=False)
    return fig


def findings_figure(view: FleetView) -> go.Figure:
    """Left: findings per target by kind (a heat map of counts); right: by severity (stacked bars)."""
    if view.findings.empty:
        return _empty("Findings: none recorded yet")
    matrix = view.findings_matrix()
    fig = make_subplots(
        rows=1, cols=2, column_widths=[0.65, 0.35], horizontal_spacing=0.12, subplot_titles=("by kind", "by severity")
    )
    fig.add_trace(
        go.Heatmap(
            z=matrix.values,
            x=list(matrix.columns),
            y=list(matrix.index),
            colorscale="Reds",
            text=matrix.values,
            texttemplate="%{text}",
            showscale=False,
            hovertemplate="%{y}: %{z} %{x}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    by_sev = view.findings.groupby(["target", "severity"])["count"].sum().unstack(fill_value=0)
    by_sev = by_sev.reindex(list(view.targets), fill_value=0)
    for sev in [s for s in _SEVERITY_COLORS if s in by_sev.columns] + [
        s for s in by_sev.columns if s not in _SEVERITY_COLORS
    ]:
        fig.add_trace(
            go.Bar(
                y=list(by_sev.index), x=by_sev[sev], name=sev, orientation="h", marker_color=_SEVERITY_COLORS.get(sev)
            ),
            row=1,
            col=2,
        )
    fig.update_yaxes(autorange="reversed")  # targets top to bottom in the fleet file's order
    fig.update_layout(
        barmode="stack",
        title="Findings of each target's latest run",
        height=140 + 40 * len(view.targets),
        margin=dict(l=10, r=10, t=70, b=10),
    )
    return fig


def statements_figure(view: FleetView) -> go.Figure:
    """Per target, the share of the database's time its top statements took (hover: the statement)."""
    if view.statements.empty:
        return _empty("Top statements: pg_stat_statements recorded nothing yet")
    fig = go.Figure()
    for rank, group in view.statements.groupby("rank"):
        fig.add_trace(
            go.Bar(
                y=group["target"],
                x=group["share_pct"],
                orientation="h",
                name=f"#{rank}",
                customdata=list(zip(escape.charts(group["query"]), group["calls"], strict=False)),
                hovertemplate="%{y} #" + str(rank) + ": %{x:.1f}% of the time, %{customdata[1]} calls"
                "<br>%{customdata[0]}<extra></extra>",
            )
        )
    fig.update_layout(
        barmode="stack",
        title="Share of database time taken by the top statements (latest run)",
        xaxis=dict(title="% of total execution time", range=[0, 100]),
        yaxis=dict(categoryorder="array", categoryarray=list(view.targets)[::-1]),
        height=140 + 40 * len(view.targets),
        margin=dict(l=10, r=10, t=60, b=10),
    )
    return fig


def indexes_figure(view: FleetView) -> go.Figure:
    """Declared indexes per state, per target (stacked)."""
    if view.indexes.empty:
        return _empty("Index status: not recorded yet")
    table = view.indexes.pivot_table(index="target", columns="state", values="count", aggfunc="sum", fill_value=0)
    table = table.reindex(list(view.targets), fill_value=0)
    fig = go.Figure(
        [
            go.Bar(
                y=list(table.index), x=table[state], name=state, orientation="h", marker_color=_STATE_COLORS.get(state)
            )
            for state in table.columns
        ]
    )
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(
        barmode="stack",
        title="Index status (latest run)",
        height=140 + 40 * len(view.targets),
        margin=dict(l=10, r=10, t=60, b=10),
    )
    return fig


def fixes_figure(view: FleetView) -> go.Figure:
    """Fixes planned, applied, kept, reverted, failed per target; "not recorded" where a run has none."""
    if view.fixes.empty:
        return _empty("Fixes: no targets yet")
    fig = go.Figure()
    for state in FIX_STATES:
        fig.add_trace(go.Bar(x=view.fixes["target"], y=view.fixes[state].fillna(0), name=state))
    for name in view.fixes.loc[view.fixes["source"] == NOT_RECORDED, "target"]:
        fig.add_annotation(x=name, y=0, text=NOT_RECORDED, showarrow=False, yshift=12)
    fig.update_layout(barmode="group", title="Fixes (latest run)", height=320, margin=dict(l=10, r=10, t=60, b=10))
    return fig


def trend_figure(view: FleetView) -> go.Figure:
    """One panel per headline figure, one line per target, over the last runs."""
    trend = view.trend.dropna(subset=["value"])
    names = [f for f in pd.unique(trend["figure"])]
    if not names:
        return _empty("Trend: no finished runs yet")
    cols = min(len(names), 2)
    rows = math.ceil(len(names) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=names, vertical_spacing=0.3 / rows)
    colors = dict(zip(view.targets, cycle(qualitative.Plotly)))  # one color per target in every panel
    for i, name in enumerate(names):
        panel = trend[trend["figure"] == name].sort_values("created_at")
        for target, group in panel.groupby("target", sort=False):
            fig.add_trace(
                go.Scatter(
                    x=group["created_at"],
                    y=group["value"],
                    mode="lines+markers",
                    name=target,
                    line_color=colors.get(target),
                    legendgroup=target,
                    showlegend=i == 0,
                    customdata=group[["run"]].values,
                    hovertemplate=target + " run %{customdata[0]}: %{y:,.2f}<extra></extra>",
                ),
                row=i // cols + 1,
                col=i % cols + 1,
            )
    fig.update_layout(title="The last runs of each target", height=80 + 260 * rows, margin=dict(l=10, r=10, t=80, b=10))
    return fig
