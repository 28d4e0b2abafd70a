"""``kit bench fleet``: a fleet of small databases on the kit's server, one with a planted regression,
audited twice through the Dagster job in process; and what one target costs the kit as its catalog
or its data grows (talks to PostgreSQL).

1. A template database seeded tiny with the migration's 23 indexes applied; ``targets`` copies of it,
   each URL in its own environment variable, and a fleet file naming those variables.
2. Round 1 (the baseline): every target is audited (``01_audit.ipynb``, the gate's rules).
3. One index of the planted target is dropped (a deploy that lost an index).
4. Round 2: every target is audited again; exactly the planted target must fail, on
   ``new_missing_indexes``; the fleet report (05) renders to HTML with plotly.js inside it.
5. Per-target cost: the kit's own per-target database work (:func:`kit.runs.bundle.collect`: pre-flight,
   statements, index status, audit) on the same catalog with 100x the rows, and on 20x the tables
   with no rows, timed side by side in interleaved rounds (median of ``repeats``).
"""

from __future__ import annotations

import os
import re
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster
import psycopg
from psycopg import sql

from kit.charts import browser
from kit.config import libpq_url
from kit.db.engine import make_engine
from kit.demo import datagen
from kit.fleet.orchestrate import run_round
from kit.fleet.spec import load
from kit.indexes import apply_indexes, default_specs, drop_indexes
from kit.runs import bundle
from kit.servers import local

TARGETS = ("alpha", "beta", "gamma")
PLANTED = "beta"
RULES = ("new_missing_indexes>0", "new_invalid_indexes>0", "new_duplicate_indexes>0")
_PLOTLY_SRC = re.compile(r"<script[^>]+src=[\"']https?://[^\"']*plotly", re.I)


STANDALONE = True  # kit bench starts nothing for it: run(seed=, home=)


def run(
    *, seed: int, home: Path, targets: tuple[str, ...] = TARGETS, concurrency: int = 2, repeats: int = 5
) -> dict[str, Any]:
    started = time.perf_counter()
    server = local.up(home=home)["postgres"]
    # 1. the template: tiny data, every declared index applied; the targets are copies of it
    url = local.create_database(server, "bench_fleet_template", replace=True)
    engine = make_engine(url)
    try:
        datagen.seed(engine, scale="tiny", seed=seed, progress=False)
        apply_indexes(engine, apply=True, progress=None, out=None, sample_s=0)
    finally:
        engine.dispose()
    work = Path(tempfile.mkdtemp(prefix="fleet-", dir=_bench_dir(home)))
    env = {
        f"KIT_BENCH_FLEET_{name.upper()}_URL": local.create_database(
            server, f"bench_fleet_{name}", replace=True, template="bench_fleet_template"
        )
        for name in targets
    }
    fleet_file = work / "fleet.toml"
    fleet_file.write_text(_fleet_toml(targets, concurrency), encoding="utf-8")
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        fleet = load(fleet_file)
        first = run_round(fleet, report=False)
        # 3. the planted regression: one index that round 1 saw applied is dropped
        planted = make_engine(env[f"KIT_BENCH_FLEET_{PLANTED.upper()}_URL"])
        try:
            dropped = drop_indexes(planted, [default_specs(planted)[0]])
        finally:
            planted.dispose()
        second = run_round(fleet, report=True)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    rounds = (first, second)
    runs: list[dict[str, Any]] = [
        {
            "round": i + 1,
            "target": o.target,
            "status": o.status,
            "seconds": o.seconds,
            "run": o.run,
            "message": o.message,
        }
        for i, r in enumerate(rounds)
        for o in r.outcomes
    ]
    ran = [r for r in runs if r["run"] and (Path(fleet.runs_dir) / r["target"] / r["run"] / "bundle.json").exists()]
    runs_ok = [r for r in ran if r["status"] in ("ok", "regression")]  # notebooks ran, bundle written
    failed = second.by_status("regression") + second.by_status("failed")
    offline = offline_check(second.report_html)
    figures: dict[str, Any] = {
        "benchmark": "fleet",
        "orchestrator": "dagster",
        "dagster_version": dagster.__version__,
        "targets": len(targets),
        "concurrency": concurrency,
        "notebooks_per_target": list(fleet.targets[0].notebooks),
        "rules": list(RULES),
        "rounds": len(rounds),
        "runs_total": len(runs),
        "runs_ok": len(runs_ok),
        "runs": runs,
        "regressions": {
            "planted": [PLANTED],
            "dropped_index": dropped,
            "failed_targets": sorted(failed),
            "round1_failed": sorted(first.by_status("regression") + first.by_status("failed")),
        },
        "fleet_report": second.report_html,
        "fleet_report_error": second.report_error,
        "fleet_report_offline": offline,
        "round_seconds": [r.seconds for r in rounds],
        "target_seconds_median": statistics.median(r["seconds"] for r in runs_ok) if runs_ok else None,
        "max_concurrent_targets": max(r.max_overlap() for r in rounds),
        "per_target_cost": per_target_cost(server, repeats=repeats),
        "fleet_dir": str(work),
    }
    figures["goals"] = {
        "every_target_runs": len(runs_ok) == len(runs),
        "exactly_planted_fails": sorted(failed) == [PLANTED] and not figures["regressions"]["round1_failed"],
        "report_renders_offline": bool(offline.get("renders_offline")),
    }
    figures["seconds"] = round(time.perf_counter() - started, 1)
    return figures


def _bench_dir(home: Path) -> Path:
    folder = Path(home) / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _fleet_toml(targets: tuple[str, ...], concurrency: int) -> str:
    rules = ", ".join(f'"{r}"' for r in RULES)
    head = (
        f'[fleet]\nname = "bench"\nconcurrency = {concurrency}\nnotebooks = ["01_audit.ipynb"]\n'
        f"fail_on = [{rules}]\n\n[fleet.parameters]\nload_users = 2\nload_seconds = 0.5\n"
    )
    return head + "".join(
        f'\n[[targets]]\nname = "{n}"\nurl_env = "KIT_BENCH_FLEET_{n.upper()}_URL"\n' for n in targets
    )


def offline_check(html: str | None) -> dict[str, Any]:
    """Whether a report's charts are drawn without the network: plotly.js inside the file, and every
    chart slot drawn by the system chromium with every request off the machine refused
    (:mod:`kit.charts.browser`; nbconvert's template also links require.js and MathJax from a CDN, which
    the charts do not need). Without chromium only the file is read (``method`` says which)."""
    if not html or not Path(html).exists():
        return {"renders_offline": False, "why": "no report"}
    text = Path(html).read_text(encoding="utf-8")
    embedded = "plotly.js v" in text
    plotly_cdn = len(_PLOTLY_SRC.findall(text))
    plots = text.count("Plotly.newPlot(")
    out: dict[str, Any] = {
        "plotly_embedded": embedded,
        "plotly_from_network": plotly_cdn,
        "figures": plots,
        "bytes": len(text.encode("utf-8")),
    }
    if browser.find_chromium() is None:
        out.update(method="static (no chromium)", renders_offline=embedded and plotly_cdn == 0 and plots > 0)
        return out
    with browser.launch() as chromium:
        check = browser.check_report(Path(html), chromium)
    out.update(
        method="chromium (kit.charts.browser), requests off the machine refused",
        charts=len(check.charts),
        drawn=len(check.drawn),
        refused_requests=len(check.blocked),
        renders_offline=embedded and plots > 0 and len(check.charts) == plots and not check.undrawn,
    )
    return out


# -- per-target cost ---------------------------------------------------------------------

_TABLE = "CREATE TABLE {t} (id bigint PRIMARY KEY, owner_id int NOT NULL, label text)"
_INDEX = "CREATE INDEX {i} ON {t} (owner_id)"
_FILL = "INSERT /* kit */ INTO {t} SELECT g, g %% 1000, 'label ' || g FROM generate_series(%s::bigint, %s::bigint) AS g"


def per_target_cost(server: local.Server, *, repeats: int = 5) -> dict[str, Any]:
    """The kit's per-target database work on four databases side by side — the same 5 tables with
    10k and 1M rows each, and 20 and 400 empty tables — timed in interleaved rounds, so that a busy
    machine slows every database alike."""
    shapes = {"rows_small": (5, 10_000), "rows_large": (5, 1_000_000), "tables_20": (20, 0), "tables_400": (400, 0)}
    urls = {}
    for name, (tables, rows) in shapes.items():
        urls[name] = local.create_database(server, f"bench_fleet_cost_{name}", replace=True)
        _tables(urls[name], tables)
        if rows:
            _fill(urls[name], tables, rows)
    with _connect(urls["rows_large"]) as conn:
        conn.execute("CHECKPOINT")  # the fill's dirty pages written before anything is timed
    times: dict[str, list[float]] = {name: [] for name in shapes}
    for i in range(repeats + 1):  # round 0 warms the catalog caches and connections: not counted
        for name, url in urls.items():
            seconds = _collect_seconds(url)
            if i:
                times[name].append(seconds)
    med = {name: round(statistics.median(t), 3) for name, t in times.items()}
    databases = [
        {
            "database": name,
            "tables": shapes[name][0],
            "rows": shapes[name][0] * shapes[name][1],
            "seconds": med[name],
            "spread": [round(min(times[name]), 3), round(max(times[name]), 3)],
        }
        for name in shapes
    ]
    return {
        "measure": "kit.runs.bundle.collect (pre-flight, statements, index status, audit): median of "
        f"{repeats} interleaved rounds after a warm-up; the notebook kernel not included",
        "databases": databases,
        "data_ratio": round(med["rows_large"] / med["rows_small"], 2),  # 100x the rows
        "catalog_ratio": round(med["tables_400"] / med["tables_20"], 2),
    }  # 20x the tables


def _connect(url: str) -> psycopg.Connection:
    return psycopg.connect(libpq_url(url), autocommit=True)


def _tables(url: str, n: int) -> None:
    with _connect(url) as conn:
        for i in range(n):
            t = sql.Identifier(f"t{i:04d}")
            conn.execute(sql.SQL(_TABLE).format(t=t))
            conn.execute(sql.SQL(_INDEX).format(i=sql.Identifier(f"t{i:04d}_owner_id_idx"), t=t))


def _fill(url: str, n: int, rows: int) -> None:
    """Each of the ``n`` tables up to ``rows`` rows, then VACUUM ANALYZE (the statistics the audit reads)."""
    with _connect(url) as conn:
        for i in range(n):
            t = sql.Identifier(f"t{i:04d}")
            count = conn.execute(sql.SQL("SELECT /* kit */ count(*) FROM {t}").format(t=t)).fetchone()
            assert count is not None  # count(*): one row
            have = count[0]
            if have < rows:
                conn.execute(sql.SQL(_FILL).format(t=t), [have + 1, rows])
            conn.execute(sql.SQL("VACUUM (ANALYZE) {t}").format(t=t))  # autovacuum would run during the timing


def _collect_seconds(url: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        folder.mkdir()
        started = time.perf_counter()
        bundle.collect(folder, database_url=url, parameters={}, notebooks=[], status="ok")
        return time.perf_counter() - started
