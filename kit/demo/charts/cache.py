"""Figures of the cache's measurements (pure: dicts in, plotly figures out)."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go


def latency_per_level(figures: dict[str, Any]) -> go.Figure:
    """µs per read: bare cachetools vs L1, bare redis GET vs L2, and the database (log scale)."""
    lp = figures["list_projects"]
    names = [
        "cachetools get",
        "L1 hit",
        "redis GET",
        "L2 hit",
        "list_projects L1",
        "list_projects L2",
        "list_projects DB",
    ]
    values = [
        figures["cachetools_get_us"],
        figures["l1_hit_us"],
        figures["redis_get_us"],
        figures["l2_hit_us"],
        lp["l1_ms"] * 1000,
        lp["l2_ms"] * 1000,
        lp["uncached_ms"] * 1000,
    ]
    fig = go.Figure(go.Bar(x=names, y=values, text=[f"{v:,.1f} µs" for v in values], textposition="outside"))
    fig.update_layout(title="Read latency per level (µs, log scale)", yaxis_type="log", yaxis_title="µs")
    return fig


def hit_rate(stats: dict[str, dict[str, int]]) -> go.Figure:
    """Share of requests served by L1, L2 and the database, from ``CacheStats.snapshot()``."""
    served = {"L1": stats["l1"]["hits"], "L2": stats["l2"]["hits"], "database": stats["db"]["loads"]}
    fig = go.Figure(go.Pie(labels=list(served), values=list(served.values()), hole=0.4))
    fig.update_layout(title="Where requests were served")
    return fig


def stale_reads(figures: dict[str, Any]) -> go.Figure:
    """Stale reads after update with and without invalidation, and the cross-process window."""
    s, w = figures["stale_reads_same_process"], figures["stale_window_ms"]
    fig = go.Figure(
        go.Bar(
            x=["without invalidation (seed)", "with invalidation (kit)"],
            y=[s["without_invalidation"], s["with_invalidation"]],
            text=[s["without_invalidation"], s["with_invalidation"]],
            textposition="outside",
        )
    )
    fig.update_layout(
        title=f"Stale reads in the writer's process; other processes: window p50 "
        f"{w['p50']:.1f} ms, p99 {w['p99']:.1f} ms",
        yaxis_title="stale reads",
    )
    return fig


def cold_vs_warm(figures: dict[str, Any]) -> go.Figure:
    w = figures["warm"]
    fig = go.Figure(
        go.Bar(
            x=["cold (after flush)", "warm (after warming)"],
            y=[w["cold_ms"], w["warm_ms"]],
            text=[f"{w['cold_ms']:.3f} ms", f"{w['warm_ms']:.4f} ms"],
            textposition="outside",
        )
    )
    fig.update_layout(title=f"get_project per key, {w['keys']} hot keys", yaxis_title="ms", yaxis_type="log")
    return fig
