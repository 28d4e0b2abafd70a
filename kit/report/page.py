"""The one-page report as HTML: the verdict and the top findings first, then a section per concern,
then the statements' full texts (pure: facts in, a string out).

Every text from the database or a run's files goes through :func:`kit.escape.html` (or
:func:`kit.escape.chart` in a figure); the page holds no code cell, no assert and no ``kit.record``
line. plotly.js is embedded once, so the file reads offline.
"""

from __future__ import annotations

from datetime import UTC, datetime

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from kit import escape
from kit.fixes.model import KEPT, PLANNED, REVERTED
from kit.report import figures, units
from kit.report.facts import ATTENTION, HEALTHY, INCOMPLETE, REGRESSION, TOP, RunFacts, Statement

_BADGE = {HEALTHY: "#0072B2", ATTENTION: "#E69F00", REGRESSION: "#D55E00", INCOMPLETE: "#555"}
_SYMBOL = {HEALTHY: "✓", ATTENTION: "!", REGRESSION: "▼", INCOMPLETE: "…"}

_STYLE = """
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, sans-serif; color: #1b1b1b; margin: 0; background: #fafafa; }
main { max-width: 1200px; margin: 0 auto; padding: 16px 24px 48px; background: white; }
h1 { font-size: 22px; margin: 4px 0; } h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; }
.meta { color: #555; font-size: 13px; }
.verdict { display: flex; gap: 14px; align-items: center; padding: 10px 14px; border-radius: 6px;
           color: white; margin: 10px 0; }
.verdict b { font-size: 20px; } .verdict .symbol { font-size: 26px; font-weight: bold; }
.numbers { display: flex; flex-wrap: wrap; gap: 10px; margin: 8px 0; }
.numbers div { border: 1px solid #ddd; border-radius: 6px; padding: 6px 12px; min-width: 150px; }
.numbers b { display: block; font-size: 18px; }
table { border-collapse: collapse; width: 100%; table-layout: fixed; font-size: 14px; }
th, td { text-align: left; vertical-align: top; padding: 5px 8px; border-bottom: 1px solid #e6e6e6;
         overflow-wrap: anywhere; }
th { background: #f3f3f3; font-weight: 600; }
td.num, th.num { text-align: right; white-space: nowrap; }
.label { font-weight: 600; cursor: help; }
.none { color: #555; font-style: italic; margin: 4px 0; }
.kept { color: #0072B2; font-weight: 600; } .reverted, .failed { color: #D55E00; font-weight: 600; }
.planned { color: #8a6100; font-weight: 600; }
.statement-text { font-family: ui-monospace, monospace; font-size: 12px; white-space: pre-wrap;
                  overflow-wrap: anywhere; background: #f6f6f6; padding: 6px 8px; margin: 2px 0 10px; }
.chart { width: 100%; overflow: hidden; }
ul { margin: 4px 0; padding-left: 22px; }
"""


def render(facts: RunFacts, *, now: datetime | None = None) -> str:
    """The report of one run as one HTML document."""
    now = now or datetime.now(UTC)
    body = [
        _header(facts, now),
        _first_screen(facts),
        _fixes(facts),
        _todo(facts),
        _workload(facts),
        _health(facts),
        _indexes(facts),
        _candidates(facts),
        _load(facts),
        _trend(facts),
        _notebooks(facts),
        _appendix(facts),
    ]
    title = f"dbperf kit report — {escape.html(escape.line(facts.target))} — {facts.run}"
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{title}</title><style>{_STYLE}</style>"
        f"<script>{get_plotlyjs()}</script></head>\n<body><main>\n" + "\n".join(body) + "\n</main></body></html>\n"
    )


def _e(text: object) -> str:
    return escape.html(escape.line(text))


def _header(facts: RunFacts, now: datetime) -> str:
    return (
        f"<h1>Database performance report: {_e(facts.target)}</h1>"
        f"<p class='meta'>Run {_e(facts.run)}, {units.moment(facts.created_at)} ({units.ago(facts.created_at, now)})"
        + (
            f"; compared with run {_e(facts.previous_run)}"
            if facts.previous_run
            else "; the first run of this database"
        )
        + (f". Statement figures {_e(facts.basis)}." if facts.basis else ".")
        + "</p>"
    )


def _first_screen(facts: RunFacts) -> str:
    colour = _BADGE[facts.verdict]
    verdict = (
        f"<div class='verdict' id='verdict' style='background:{colour}'><span class='symbol' aria-hidden='true'>"
        f"{_SYMBOL[facts.verdict]}</span><div><b>{facts.verdict.capitalize()}</b><br>{_e(facts.verdict_why)}</div></div>"
    )
    kept = sum(f.verdict == KEPT for f in facts.fixes)
    numbers = [
        ("database time in the window", units.duration(facts.db_time_ms)),
        ("statements with calls", units.count(len(facts.statements))),
        ("severe findings", str(sum(i.severity in ("critical", "high") for i in facts.issues))),
    ]
    if facts.fixes:
        numbers.append(("fixes kept / planned", f"{kept} / {len(facts.fixes)}"))
    if facts.share_fixed is not None:
        before, after = facts.share_fixed
        numbers.append(
            (
                "share of time of the fixed statements",
                f"{units.percent(before)} → {units.percent(after)}" if after is not None else units.percent(before),
            )
        )
    boxes = "".join(f"<div>{_e(label)}<b>{_e(value)}</b></div>" for label, value in numbers)
    return f"{verdict}<div class='numbers'>{boxes}</div>" + _top_findings(facts)


def _top_findings(facts: RunFacts) -> str:
    rows = facts.statements[:5]
    issues = [i for i in facts.issues if i.severity in ("critical", "high")][: max(0, 6 - len(rows))]
    if not rows and not issues:
        return "<h2 id='top'>Top findings</h2><p class='none'>no statement ran in the window and no severe finding</p>"
    head = (
        "<tr><th style='width:19%'>statement</th><th class='num' style='width:8%'>share</th>"
        "<th class='num' style='width:9%'>mean</th><th style='width:30%'>why</th><th>what was done</th></tr>"
    )
    body = "".join(
        f"<tr><td>{_label(s)}</td><td class='num'>{units.percent(s.share_pct)}</td>"
        f"<td class='num'>{units.duration(s.mean_ms)}</td><td>{_e(s.cause)}</td><td>{_verdict_words(_e(s.fix))}</td></tr>"
        for s in rows
    )
    body += "".join(
        f"<tr><td><span class='label'>{_e(i.check)}</span></td><td class='num'>{_e(i.severity)}</td><td></td>"
        f"<td>{_e(i.subject)}: {_e(i.detail)}</td><td>{_e(i.remedy)}</td></tr>"
        for i in issues
    )
    return f"<h2 id='top'>Top findings, by share of database time</h2><table>{head}{body}</table>"


def _label(s: Statement) -> str:
    return f"<span class='label' title='{_e(' '.join(s.text.split())[:600])}'>{_e(s.label)}</span>"


def _verdict_words(text: str) -> str:
    """The verdict of a fix sentence in its colour (the sentences of :mod:`kit.report.facts`)."""
    for phrase, word, css in (
        ("applied and kept", "kept", KEPT),
        ("measured and reverted", "reverted", REVERTED),
        (": planned (dry run)", "planned", PLANNED),
        (": failed", "failed", "failed"),
    ):
        if phrase in text:
            return text.replace(phrase, phrase.replace(word, f"<span class='{css}'>{word}</span>"), 1)
    return text


def _none(title: str, anchor: str, line: str) -> str:
    return f"<h2 id='{anchor}'>{title}</h2><p class='none'>{_e(line)}</p>"


def _declared(facts: RunFacts) -> str:
    n = len(facts.declared_applied)
    if not n:
        return ""
    return (
        f"<p>{n} index(es) declared by {_e(facts.declared_by or 'a migration')} and missing at the audit "
        "were built in this run and verified (see the indexes section).</p>"
    )


def _fixes(facts: RunFacts) -> str:
    declared = _declared(facts)
    if facts.applied is None:
        return _none("Fixes", "fixes", "the fix loop did not run in this run") + declared
    if not facts.fixes:
        line = "no further fix planned: no index, drop or ANALYZE the kit measured would help the workload"
        return _none("Fixes", "fixes", line) + declared
    head = (
        "<tr><th style='width:30%'>fix</th><th style='width:10%'>verdict</th><th class='num' style='width:16%'>"
        "median before → after</th><th style='width:12%'>gain</th><th>why, and the measurement</th></tr>"
    )
    body = "".join(
        f"<tr><td>{_e(f.what)}<br><span class='meta'>for {_e(', '.join(f.statements) or 'no statement')}</span></td>"
        f"<td><span class='{_e(f.verdict)}'>{_e(f.verdict)}</span></td>"
        f"<td class='num'>{units.duration(f.before_ms)} → {units.duration(f.after_ms)}</td>"
        f"<td>{units.speedup(f.speedup)}</td><td>{_e(f.why)} {_e(f.reason)}</td></tr>"
        for f in facts.fixes
    )
    what = "applied and measured" if facts.applied else "planned only (a dry run)"
    return f"<h2 id='fixes'>Fixes ({what})</h2>{declared}<table>{head}{body}</table>"


def _todo(facts: RunFacts) -> str:
    if not facts.todo:
        return _none("Left to do", "todo", "nothing: no planned fix, no severe finding, no heavy statement left")
    items = "".join(f"<li>{_e(t)}</li>" for t in facts.todo)
    return f"<h2 id='todo'>Left to do</h2><ul>{items}</ul>"


def _chart(fig: go.Figure | None) -> str:
    if fig is None:
        return ""
    html = fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False, "responsive": True})
    return f"<div class='chart'>{html}</div>"


def _workload(facts: RunFacts) -> str:
    if not facts.statements:
        return _none("Workload", "workload", "no statement with calls in the window (pg_stat_statements)")
    rows = "".join(
        f"<tr><td>{_label(s)}</td><td class='num'>{units.count(s.calls)}</td>"
        f"<td class='num'>{units.duration(s.total_ms)}</td><td class='num'>{units.percent(s.share_pct)}</td>"
        f"<td class='num'>{units.duration(s.mean_ms)}</td></tr>"
        for s in facts.statements[: TOP * 2]
    )
    table = (
        "<table><tr><th>statement</th><th class='num'>calls</th><th class='num'>total time</th>"
        f"<th class='num'>share</th><th class='num'>mean</th></tr>{rows}</table>"
    )
    more = len(facts.statements) - TOP * 2
    extra = f"<p class='meta'>{more} more statement(s) in the appendix.</p>" if more > 0 else ""
    return (
        "<h2 id='workload'>Workload</h2>"
        + _chart(figures.share(facts))
        + _chart(figures.timings(facts))
        + table
        + extra
    )


def _health(facts: RunFacts) -> str:
    if not facts.issues:
        return _none("Health checks", "health", "no finding above info severity")
    rows = "".join(
        f"<tr><td>{_e(i.severity)}</td><td>{_e(i.check)}</td><td>{_e(i.subject)}</td><td>{_e(i.detail)}</td>"
        f"<td>{_e(i.remedy)}</td></tr>"
        for i in facts.issues
    )
    return (
        "<h2 id='health'>Health checks</h2><table><tr><th style='width:9%'>severity</th><th style='width:16%'>check"
        "</th><th style='width:20%'>about</th><th>detail</th><th style='width:30%'>what to do</th></tr>"
        f"{rows}</table>"
    )


def _indexes(facts: RunFacts) -> str:
    if not facts.indexes:
        return _none("Declared indexes", "indexes", "no migration declares indexes for this database")
    counts = ", ".join(f"{n} {state}" for state, n in sorted(facts.indexes.items()) if n)
    return f"<h2 id='indexes'>Declared indexes</h2><p>{_e(facts.declared_by)}: {_e(counts)}.</p>"


def _candidates(facts: RunFacts) -> str:
    f = facts.figures
    lines = []
    if plus := f.get("candidates.n_plus_one"):
        lines.append(f"{plus} statement(s) called many times for about one row each: an N+1 loop in the application.")
    if cache := f.get("candidates.cache"):
        lines.append(f"{cache} statement(s) read far more often than their tables change: worth caching.")
    for name in sorted(n for n in f if n.startswith("nplus1.") and n.endswith(".queries.naive")):
        endpoint = name.removeprefix("nplus1.").removesuffix(".queries.naive")
        after = f.get(f"nplus1.{endpoint}.queries.batched")
        fixed = f" → {after} batched" if after is not None else ""
        lines.append(f"{endpoint}: {f[name]} queries per request{fixed}.")
    stale = {n.removeprefix("cache.stale_reads."): v for n, v in f.items() if n.startswith("cache.stale_reads.")}
    if stale:
        lines.append("Stale cache reads measured: " + ", ".join(f"{v:,} ({k})" for k, v in stale.items()) + ".")
    if (rate := f.get("cache.hit_rate")) is not None:
        lines.append(f"Cache hit rate under the endpoint mix: {100 * rate:.0f} %.")
    if not lines:
        return _none("N+1 and cache", "candidates", "no N+1 pattern and no cache candidate in the workload")
    return "<h2 id='candidates'>N+1 and cache</h2><ul>" + "".join(f"<li>{_e(t)}</li>" for t in lines) + "</ul>"


def _load(facts: RunFacts) -> str:
    fig = figures.load(facts)
    return "" if fig is None else "<h2 id='load'>Under load</h2>" + _chart(fig)


def _trend(facts: RunFacts) -> str:
    charts = [
        figures.trend(facts, "workload.db_time_s", title="Database time in each run's window", axis="seconds"),
        figures.trend(facts, "findings_total", title="Findings in each run", axis="findings"),
    ]
    if not any(charts):
        return _none("Trend", "trend", "no earlier run of this database to compare with")
    return "<h2 id='trend'>Trend</h2>" + "".join(_chart(c) for c in charts)


def _notebooks(facts: RunFacts) -> str:
    items = "".join(
        f"<li>{_e(name)}: {_e(status)}"
        + (f" — <a href='{_e(html)}'>the notebook with its code</a>" if html else "")
        + "</li>"
        for name, status, html in facts.notebooks
    )
    return f"<h2 id='notebooks'>The notebooks of this run</h2><ul>{items}</ul>" if items else ""


def _text(text: str) -> str:
    """A statement's text with its own line breaks, each line escaped (:func:`kit.escape.line`)."""
    return "\n".join(_e(line) for line in text.splitlines())


def _appendix(facts: RunFacts) -> str:
    if not facts.statements:
        return ""
    items = "".join(
        f"<h3 id='s{s.rank}' style='font-size:14px;margin:10px 0 2px'>{_e(s.label)}</h3>"
        f"<div class='statement-text'>{_text(s.text)}</div>"
        for s in facts.statements
    )
    return "<h2 id='appendix'>Appendix: the statements' texts (as pg_stat_statements keeps them, redacted)</h2>" + items
