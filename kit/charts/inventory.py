"""Plotly figures of the inventory (pure: DataFrames in, figures out)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kit import escape


def inventory_figure(tables: pd.DataFrame, *, top: int = 15) -> go.Figure:
    """Rows and on-disk size (heap vs indexes) of the largest tables, side by side."""
    df = tables.head(top).iloc[::-1]
    labels = escape.charts(df["table"] if df["schema"].eq("public").all() else df["schema"] + "." + df["table"])
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, subplot_titles=("rows (estimate)", "size (MB)"))
    fig.add_trace(go.Bar(y=labels, x=df["rows_estimate"], orientation="h", name="rows", marker_color="#4C78A8"), 1, 1)
    fig.add_trace(go.Bar(y=labels, x=df["table_bytes"] / 2**20, orientation="h", name="heap"), 1, 2)
    fig.add_trace(go.Bar(y=labels, x=df["index_bytes"] / 2**20, orientation="h", name="indexes"), 1, 2)
    fig.update_layout(
        barmode="stack",
        height=120 + 28 * len(df),
        title="What is in the audited database",
        margin=dict(l=10, r=10, t=60, b=10),
        legend=dict(orientation="h"),
    )
    return fig
