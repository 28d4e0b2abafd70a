"""The platform's mix on Locust, in processes of its own: one run, a saturation search, the commands
for several machines (starts processes; the load they run talks to PostgreSQL and Redis).

gevent never enters the caller's process (a Jupyter kernel, ``kit load``, a bench): :func:`run_locust`
starts ``python -m locust -f kit/demo/load/locustfile.py`` — one process, or a master and ``processes``
forked workers — and reads back every user's raw samples, from which :mod:`kit.demo.load.stats` computes
percentiles with bootstrap intervals. Secrets travel in the children's environment, never on a
command line. See :mod:`kit.demo.load.locustfile` for what a user does.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from sqlalchemy import text

from kit.config import mask_url
from kit.db.engine import make_engine
from kit.demo.load.connections import PoolConfig
from kit.demo.load.mix import LOAD_APPLICATION_NAME
from kit.demo.load.stats import MODELS, SAMPLE_COLUMNS, LoadResult, resource_summary, summarize
from kit.errors import LoadFailed
from kit.servers.local import free_port

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
ARRIVALS = ("poisson", "constant")
DEFAULT_MASTER_PORT = 5557
WORKERS_MAX_WAIT_S = 300.0  # how long a master waits for the workers started on other machines


def kit_options(
    *,
    flavor: str = "naive",
    model: str = "open",
    rate_rps: float = 50.0,
    users: int = 100,
    think_s: float = 1.0,
    arrivals: str = "poisson",
    warmup_s: float = 1.0,
    duration_s: float = 5.0,
    drain_s: float = 5.0,
    config: PoolConfig | None = None,
    seed: int = 42,
    publish_to: Path | None = None,
) -> list[str]:
    """The ``--kit-*`` options of a run, checked (the master hands them to every worker)."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {', '.join(MODELS)}")
    if arrivals not in ARRIVALS:
        raise ValueError(f"unknown arrivals {arrivals!r}; expected one of {', '.join(ARRIVALS)}")
    if users < 1 or duration_s <= 0 or warmup_s < 0 or drain_s < 0 or think_s < 0:
        raise ValueError("need users >= 1, duration_s > 0, and warmup_s, drain_s, think_s >= 0")
    if model == "open" and not rate_rps > 0:
        raise ValueError("the open model needs rate_rps > 0 (the offered arrival rate)")
    pool = dataclasses.asdict(config) if config is not None else {}  # {}: the seed's production pool
    return [
        "--kit-flavor",
        flavor,
        "--kit-model",
        model,
        "--kit-rate",
        str(rate_rps),
        "--kit-arrivals",
        arrivals,
        "--kit-think",
        str(think_s),
        "--kit-users",
        str(users),
        "--kit-warmup",
        str(warmup_s),
        "--kit-duration",
        str(duration_s),
        "--kit-drain",
        str(drain_s),
        "--kit-pool",
        json.dumps(pool),
        "--kit-seed",
        str(seed),
        "--kit-metrics",
        str(publish_to or ""),
    ]


def master_command(
    options: list[str],
    *,
    users: int,
    out: Path,
    processes: int = 0,
    expect_workers: int = 0,
    bind_host: str = "127.0.0.1",
    bind_port: int = DEFAULT_MASTER_PORT,
    run_time_s: float = 60.0,
    logfile: Path | None = None,
) -> list[str]:
    """``locust`` headless: local (``processes`` 0), a master forking ``processes`` workers, or a master
    waiting for ``expect_workers`` workers started elsewhere with :func:`worker_command`."""
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "-u",
        str(users),
        "-r",
        str(users),
        "--run-time",
        f"{int(run_time_s) + 1}s",
        "--exit-code-on-error",
        "0",
        "--only-summary",
        "--loglevel",
        "WARNING",
        *options,
        "--kit-out",
        str(out),
    ]
    if processes:  # the forked workers dial --master-port, the master listens on --master-bind-port
        cmd += [
            "--processes",
            str(processes),
            "--master-bind-host",
            bind_host,
            "--master-bind-port",
            str(bind_port),
            "--master-port",
            str(bind_port),
        ]
    elif expect_workers:
        cmd += [
            "--master",
            "--expect-workers",
            str(expect_workers),
            "--expect-workers-max-wait",
            str(int(WORKERS_MAX_WAIT_S)),
            "--master-bind-host",
            bind_host,
            "--master-bind-port",
            str(bind_port),
        ]
    if logfile is not None:
        cmd += ["--logfile", str(logfile)]
    return cmd


def worker_command(*, master_host: str, master_port: int = DEFAULT_MASTER_PORT, processes: int = 1) -> list[str]:
    """A machine's workers for a master elsewhere; they read the URLs from their own environment."""
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--worker",
        "--master-host",
        master_host,
        "--master-port",
        str(master_port),
        "--processes",
        str(processes),
        "--loglevel",
        "WARNING",
    ]


def _run(cmd: list[str], env: dict, *, timeout_s: float) -> tuple[int, str]:
    """Run Locust in a session of its own, so that a timeout ends the forked workers with the master."""
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, stderr = proc.communicate()
        return -9, f"{stderr}\nno result within {timeout_s:.0f} s"
    return proc.returncode, stderr


# a request killed at the end of the drain leaves its statement running on the server: cancel it,
# or the next run (or the index build after the naive side) competes with the last one's backlog
CANCEL_LEFTOVERS = text(
    "SELECT /* kit */ count(pg_cancel_backend(pid)) FROM pg_stat_activity"
    " WHERE application_name = :app AND state = 'active' AND datname = current_database()"
)


def _cancel_leftovers(url: str) -> int:
    engine = make_engine(url, pool_size=1, max_overflow=0, check=False)
    try:
        with engine.connect() as conn:
            return conn.execute(CANCEL_LEFTOVERS, {"app": LOAD_APPLICATION_NAME}).scalar_one()
    finally:
        engine.dispose()


def run_locust(
    url: str,
    *,
    flavor: str = "naive",
    model: str = "open",
    rate_rps: float = 50.0,
    users: int = 100,
    think_s: float = 1.0,
    arrivals: str = "poisson",
    warmup_s: float = 1.0,
    duration_s: float = 5.0,
    drain_s: float = 5.0,
    config: PoolConfig | None = None,
    redis_url: str | None = None,
    processes: int = 0,
    expect_workers: int = 0,
    bind_host: str = "127.0.0.1",
    bind_port: int | None = None,
    seed: int = 42,
    label: str | None = None,
    publish_to: Path | None = None,
    n_boot: int = 300,
) -> LoadResult:
    """One Locust run of the platform's mix on ``flavor`` services (see the module docstring).

    ``processes`` 0 runs the users in one local process; N forks a master and N workers on this
    machine; ``expect_workers`` N instead waits for N workers started elsewhere
    (:func:`worker_command`). Each worker process opens its own pool from ``config``.
    """
    options = kit_options(
        flavor=flavor,
        model=model,
        rate_rps=rate_rps,
        users=users,
        think_s=think_s,
        arrivals=arrivals,
        warmup_s=warmup_s,
        duration_s=duration_s,
        drain_s=drain_s,
        config=config,
        seed=seed,
        publish_to=publish_to,
    )
    make_engine(url, pool_size=1, max_overflow=0).dispose()  # unreachable: one line (exit 2) before any process
    env = {**os.environ, "KIT_DATABASE_URL": url, "PYTHONDONTWRITEBYTECODE": "1"}
    if redis_url:
        env["KIT_REDIS_URL"] = redis_url
    run_time = warmup_s + duration_s + drain_s + 30.0 + (think_s if model == "closed" else 0.0)
    with tempfile.TemporaryDirectory(prefix="kit-locust-") as tmp:
        out, log = Path(tmp) / "samples.json", Path(tmp) / "locust.log"
        cmd = master_command(
            options,
            users=users,
            out=out,
            processes=processes,
            expect_workers=expect_workers,
            bind_host=bind_host,
            bind_port=bind_port or free_port(),
            run_time_s=run_time,
            logfile=log,
        )
        try:
            code, stderr = _run(cmd, env, timeout_s=run_time + 60.0 + (WORKERS_MAX_WAIT_S if expect_workers else 0.0))
        finally:
            _cancel_leftovers(url)
        if code != 0 or not out.exists():
            tail = " | ".join((stderr or (log.read_text() if log.exists() else "")).strip().splitlines()[-3:])
            raise LoadFailed(
                mask_url(
                    f"the Locust run exited with code {code} and "
                    f"{'no samples' if not out.exists() else 'samples'}: {tail or 'no output'}; "
                    "run `kit load` with the same options to see it"
                )
            )
        data = json.loads(out.read_text())
    if "failed" in data:
        raise LoadFailed(
            mask_url(
                f"the load processes could not start their users: {data['failed']}; "
                "check the database URL and that the demo schema is seeded (`kit seed`)"
            )
        )
    label = label or f"{flavor} / {config.name if config else 'production'}"
    return _result(
        data,
        label=label,
        users=users,
        model=model,
        rate_rps=rate_rps if model == "open" else None,
        think_s=think_s if model == "closed" else 0.0,
        duration_s=duration_s,
        n_boot=n_boot,
        seed=seed,
    )


def _result(
    data: dict,
    *,
    label: str,
    users: int,
    model: str,
    rate_rps: float | None,
    think_s: float,
    duration_s: float,
    n_boot: int,
    seed: int,
) -> LoadResult:
    frame = pd.DataFrame(data["rows"], columns=[*SAMPLE_COLUMNS[:5], "queued"])
    frame = frame.astype({"start_s": float, "latency_ms": float, "wait_ms": float})
    frame["measured"] = (frame["start_s"] >= 0) & (frame["start_s"] < duration_s)
    processes = data["processes"]
    m = frame[frame["measured"]]
    waited = m["wait_ms"].dropna()
    pool = {
        "measure": {
            "checkouts": len(waited),
            "waits": int(m["queued"].sum()),
            "wait_s": float(waited.sum()) / 1000.0,
            "max_wait_s": float(waited.max()) / 1000.0 if len(waited) else 0.0,
            "timeouts": int((m["error"] == "pool_timeout").sum()),
            "peak_in_use": max((p["peak_in_use"] for p in processes.values()), default=0),
            "capacity": max((p["capacity"] for p in processes.values()), default=0),
            "processes": len(processes),
            "connections": sum(p["capacity"] for p in processes.values()),
        }
    }
    rows = [(pid, *r) for pid, p in processes.items() for r in p["resources"]]
    resources = resource_summary(pd.DataFrame(rows, columns=["pid", "t_s", "rss_mb", "cpu_pct"]))
    return summarize(
        frame,
        label=label,
        users=users,
        duration_s=duration_s,
        pool=pool,
        hung=data["users"] < data["expected_users"],
        resources=resources,
        n_boot=n_boot,
        seed=seed,
        model=model,
        rate_rps=rate_rps,
        think_s=think_s,
        engine="locust",
        workers=len(processes),
    )


# -- saturation --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Saturation:
    """Open-model runs at rising offered rates; ``saturation_rps`` is the highest rate whose p95
    met ``p95_target_ms`` with no error (0 when the first step already failed)."""

    label: str
    p95_target_ms: float | None  # None only when no rate was given (no step ran, no knee to set it)
    saturation_rps: float
    steps: pd.DataFrame = field(repr=False)

    def to_frame(self) -> pd.DataFrame:
        return self.steps.copy()


def saturation(
    url: str,
    *,
    rates: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 400),
    p95_target_ms: float | None = None,
    knee_factor: float = 3.0,
    floor_ms: float = 100.0,
    min_requests: int = 20,
    refine: int = 0,
    label: str | None = None,
    **run,
) -> Saturation:
    """Step the offered rate through ``rates`` until p95 passes the target or an error appears,
    then ``refine`` times try the geometric middle between the last rate that held and the first
    that did not (``run``: :func:`run_locust` keywords; the model is open).

    Without ``p95_target_ms`` the target is the knee: ``knee_factor`` times the p95 of the lowest
    rate (the service nearly unloaded), at least ``floor_ms`` — queueing then dominates the
    latency. One rule for every flavor: a slow service is not saturated by its own slowness.
    A step lasts long enough for ``min_requests`` arrivals at its rate: a p95 needs samples.
    """
    duration_s = run.pop("duration_s", 5.0)
    rows: list[dict] = []

    def step(rate: float) -> bool:
        nonlocal p95_target_ms
        r = run_locust(url, model="open", rate_rps=rate, duration_s=max(duration_s, min_requests / rate), **run)
        if p95_target_ms is None:
            p95_target_ms = max(knee_factor * r.p95_ms, floor_ms) if r.p95_ms == r.p95_ms else floor_ms
        ok = r.errors == 0 and r.p95_ms <= p95_target_ms and not r.hung
        rows.append(
            {
                "rate_rps": rate,
                "p95_ms": r.p95_ms,
                "throughput_rps": r.throughput_rps,
                "errors": r.errors,
                "max_wait_ms": r.max_wait_ms,
                "requests": r.requests,
                "ok": ok,
            }
        )
        return ok

    held, failed = 0.0, None
    for rate in sorted(rates):
        if not step(rate):
            failed = rate
            break
        held = rate
    if held and failed:
        for _ in range(refine):
            middle = round((held * failed) ** 0.5, 1)
            if step(middle):
                held = middle
            else:
                failed = middle
    return Saturation(label or run.get("flavor", "naive"), p95_target_ms, held, pd.DataFrame(rows))
