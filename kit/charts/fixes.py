"""Figures of the general loop on any database: each statement before/after, the share of the
database's time before/after, index bytes added and freed (pure: frames in, figures out)."""

from __future__ import annotations

import plotly.graph_objects as go

from kit import escape
from kit.fixes.report import LoopReport


def _empty(title: str) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, height=200)
    return fig


def statements_figure(report: LoopReport) -> go.Figure:
    """Median EXPLAIN ANALYZE time per statement before and after (log scale, 95 % CI of the median)."""
    df = report.measured()
    if df.empty:
        return _empty("No statement could be measured (see the workload section)")
    labels = escape.charts(
        f"{k}: {' '.join(str(q).split())[:50]}" for k, q in zip(df["key"], df["query"], strict=False)
    )
    fig = go.Figure()
    for phase, color in (("before", "#E45756"), ("after", "#4C78A8")):
        ms = df[f"{phase}_ms"]
        if ms.isna().all():
            continue
        error = dict(
            type="data",
            symmetric=False,
            array=(df[f"{phase}_hi"] - ms).tolist(),
            arrayminus=(ms - df[f"{phase}_lo"]).tolist(),
        )
        fig.add_bar(
            y=labels,
            x=ms,
            name=phase,
            orientation="h",
            marker_color=color,
            error_x=error,
            hovertext=escape.charts(df["fixes"]),
        )
    what = "before and after the fixes" if report.applied else "before (dry run: nothing applied)"
    fig.update_layout(
        barmode="group",
        xaxis_type="log",
        xaxis_title="median execution ms (EXPLAIN ANALYZE)",
        height=max(300, 40 * len(df) + 120),
        title=f"Each statement {what}",
    )
    return fig


def share_figure(report: LoopReport) -> go.Figure:
    """Stacked share of the database's execution time per statement, before and after (estimated)."""
    df = report.share()
    if df.empty:
        return _empty("No workload: pg_stat_statements has nothing for this database")
    fig = go.Figure()
    for statement, part in df.groupby("statement", sort=False):
        fig.add_bar(
            x=part["phase"],
            y=part["share_pct"],
            name=escape.chart(statement),
            hovertemplate="%{x}: %{y:.1f}%<extra>%{fullData.name}</extra>",
        )
    fig.update_layout(
        barmode="stack",
        yaxis_title="% of the database's execution time",
        height=420,
        title=f"Share of database time ({report.basis})",
        legend=dict(font=dict(size=9)),
    )
    return fig


def bytes_figure(report: LoopReport) -> go.Figure:
    """Index bytes added (new indexes kept) and freed (duplicates dropped)."""
    df = report.index_bytes()
    if df.empty:
        return _empty("No index added or freed" + ("" if report.applied else " (dry run)"))
    df = df.assign(mib=df["bytes"] / 2**20)
    colors = ["#4C78A8" if k == "added" else "#54A24B" for k in df["kind"]]
    fig = go.Figure(
        go.Bar(
            x=escape.charts(df["index"]),
            y=df["mib"],
            marker_color=colors,
            text=df["kind"],
            hovertemplate="%{x}: %{y:.2f} MiB<extra></extra>",
        )
    )
    fig.update_layout(
        yaxis_title="MiB (+ added, - freed)",
        height=360,
        title=f"Index bytes: +{df.loc[df['bytes'] > 0, 'mib'].sum():.2f} MiB added, "
        f"{-df.loc[df['bytes'] < 0, 'mib'].sum():.2f} MiB freed",
    )
    return fig
