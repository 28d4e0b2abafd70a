"""The platform's endpoint mix as Locust users (talks to PostgreSQL; imported only by Locust's processes).

Locust monkey-patches the whole process with gevent as it is imported: :mod:`kit.demo.load.engine`
starts ``locust -f`` this file in processes of their own, never in a Jupyter kernel. psycopg >= 3.1.14
waits cooperatively under gevent, and SQLAlchemy's pool then queues greenlets instead of threads.

One code path for every layout — one local process, ``--processes N`` (a master and N forked
workers), or ``--master`` / ``--worker`` on several machines:

1. The master's ``--kit-*`` options reach every worker with Locust's spawn message (secrets do not:
   each worker reads its own ``KIT_DATABASE_URL`` / ``KIT_REDIS_URL``).
2. On ``test_start`` each process that runs users builds its own engine (one pool per process),
   the endpoint mix, its metrics publisher (``kit metrics serve`` sees the real figures while the
   load runs) and an RSS/CPU sampler.
3. Each user runs one schedule. *open*: arrivals at ``rate / users`` per user (Poisson or
   constant), every arrival its own greenlet, latency timed from the intended start — a slow
   request never delays the next arrival (no coordinated omission). *closed*: request, think, repeat.
   Requests intended before ``warmup`` are warm-up; the schedule ends at ``warmup + duration``; a
   request still running ``drain`` seconds later is killed and counted as ``unfinished``.
4. The user sends its raw samples to the master (``kit_samples``); when every user has reported,
   the master writes them to ``--kit-out`` and quits.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import time

import gevent
import psutil
from locust import User, constant, events, task
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner

from kit.config import url_from_env
from kit.demo.load.connections import PRODUCTION, PoolConfig, make_pool_engine
from kit.demo.load.mix import Endpoint, classify, seed_endpoints
from kit.demo.metrics import KitMetrics, MetricsPublisher, queue_pool

SAMPLES = "kit_samples"
RESOURCE_INTERVAL_S = 0.25


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    kit = parser.add_argument_group("dbperf kit")
    kit.add_argument("--kit-flavor", default="naive", choices=["naive", "batched", "cached"])
    kit.add_argument("--kit-model", default="open", choices=["open", "closed"])
    kit.add_argument("--kit-rate", type=float, default=50.0, help="open: offered requests/s, all users together")
    kit.add_argument("--kit-arrivals", default="poisson", choices=["poisson", "constant"])
    kit.add_argument("--kit-think", type=float, default=1.0, help="closed: mean think time, s")
    kit.add_argument("--kit-users", type=int, default=1, help="users of the whole run (every worker)")
    kit.add_argument("--kit-warmup", type=float, default=1.0)
    kit.add_argument("--kit-duration", type=float, default=5.0)
    kit.add_argument("--kit-drain", type=float, default=5.0)
    kit.add_argument("--kit-pool", default="{}", help="a kit.demo.load.pool.PoolConfig as JSON")
    kit.add_argument("--kit-seed", type=int, default=42)
    kit.add_argument("--kit-metrics", default="", help="folder to publish this process's metrics in")
    kit.add_argument("--kit-out", default="", help="master: where to write the samples (JSON)")


class _Process:
    """What one process running users owns: engine, endpoints, metrics, resource samples."""

    def __init__(self, options) -> None:
        self.options = options
        pool = json.loads(options.kit_pool)
        self.config = PoolConfig(**pool) if pool else PRODUCTION
        self._stack = contextlib.ExitStack()
        self.engine = make_pool_engine(url_from_env(kind="database"), self.config)
        self._stack.callback(self.engine.dispose)
        redis_url = url_from_env(kind="redis") if options.kit_flavor == "cached" else None
        self.endpoints = self._stack.enter_context(
            seed_endpoints(self.engine, flavor=options.kit_flavor, redis_url=redis_url)
        )
        self.cum = list(itertools.accumulate(e.weight for e in self.endpoints))
        cache = self.endpoints.cache
        self.metrics = KitMetrics(
            engine=self.engine, database_gauges=False, cache_stats=cache.stats if cache is not None else None
        )
        if options.kit_metrics:
            self._stack.enter_context(MetricsPublisher(self.metrics, options.kit_metrics))
        self.ids = itertools.count()
        self.in_use = self.peak_in_use = 0
        self.resources: list[tuple[float, float, float]] = []
        self.t0 = time.perf_counter()
        self.measure_start: float | None = None
        self.end: float | None = None
        self._sampler = gevent.spawn(self._sample)

    def begin(self) -> None:
        """The schedule starts with this process's first user, not at its setup: on a busy machine
        users may spawn seconds after ``test_start``, and a window already past would be empty."""
        if self.measure_start is None:
            self.measure_start = time.perf_counter() + self.options.kit_warmup
            self.end = self.measure_start + self.options.kit_duration

    def _sample(self) -> None:
        proc = psutil.Process()
        proc.cpu_percent(None)
        while True:
            self.resources.append(
                (time.perf_counter() - self.t0, proc.memory_info().rss / 2**20, proc.cpu_percent(None))
            )
            gevent.sleep(RESOURCE_INTERVAL_S)

    def pick(self, rng: random.Random) -> Endpoint:
        return self.endpoints[rng.choices(range(len(self.endpoints)), cum_weights=self.cum)[0]]

    def request(self, endpoint: Endpoint, rng: random.Random, start: float, out: list) -> None:
        """One request intended at ``start`` (perf_counter): a row in ``out`` whatever happens."""
        error, wait, queued = None, None, self.in_use >= self.config.capacity
        asked = time.perf_counter()
        try:
            with self.metrics.track(endpoint.name), self.engine.connect() as conn:
                wait = time.perf_counter() - asked
                self.in_use += 1
                self.peak_in_use = max(self.peak_in_use, self.in_use)
                try:
                    endpoint.call(conn, rng)
                finally:
                    self.in_use -= 1
        except Exception as exc:  # a failed request is a measurement, not a crash of the run
            error = classify(exc)
        latency = time.perf_counter() - start
        events.request.fire(
            request_type="db",
            name=endpoint.name,
            response_time=latency * 1000.0,
            response_length=0,
            exception=error and RuntimeError(error),
            context={},
        )
        out.append(self.row(endpoint.name, start, latency, wait, error, queued))  # last: a kill never counts it twice

    def row(self, name, start, latency, wait, error, queued=False) -> list:
        def ms(s):
            return None if s is None else round(s * 1000.0, 3)

        return [name, round(start - self.measure_start, 6), ms(latency), ms(wait), error, queued]

    def report(self) -> dict:
        pool = queue_pool(self.engine)
        return {
            "pid": os.getpid(),
            "peak_in_use": self.peak_in_use,
            "capacity": self.config.capacity,
            "open_connections": pool.checkedin() + pool.checkedout(),
            "resources": self.resources,
        }

    def close(self) -> None:
        self._sampler.kill()
        self._stack.close()


@events.test_start.add_listener
def _start(environment, **_) -> None:
    if not isinstance(environment.runner, MasterRunner):
        try:
            environment.kit = _Process(environment.parsed_options)
        except Exception as exc:  # every user reports it, so the run ends now with the reason
            environment.kit = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


@events.test_stop.add_listener
def _stop(environment, **_) -> None:
    process = getattr(environment, "kit", None)
    if isinstance(process, _Process):
        environment.kit = None
        process.close()


@events.init.add_listener
def _collect(environment, **_) -> None:
    """The master (or the single local process) gathers every user's samples, then quits."""
    if environment.runner is None or isinstance(environment.runner, WorkerRunner):
        return
    received: dict = {"rows": [], "users": 0, "processes": {}}

    def on_samples(environment, msg, **_) -> None:
        received["rows"].extend(msg.data["rows"])
        received["users"] += 1
        if "failed" in msg.data:
            received["failed"] = msg.data["failed"]
        else:
            received["processes"][str(msg.data["process"]["pid"])] = msg.data["process"]
        if received["users"] >= environment.parsed_options.kit_users:
            gevent.spawn_later(0.1, environment.runner.quit)

    def write(environment, **_) -> None:
        path = environment.parsed_options.kit_out
        if path:
            with open(path, "w") as f:
                json.dump({**received, "expected_users": environment.parsed_options.kit_users}, f)

    environment.runner.register_message(SAMPLES, on_samples)
    environment.events.quitting.add_listener(write)


class PlatformUser(User):
    """One virtual user of the platform: its whole schedule is one task (see the module docstring)."""

    wait_time = constant(0)

    @task
    def schedule(self) -> None:
        process: _Process | str = self.environment.kit
        if isinstance(process, str):  # the process could not set up: no request ran
            self.environment.runner.send_message(
                SAMPLES, {"rows": [], "failed": process, "process": {"pid": os.getpid()}}
            )
            raise StopUser()
        o = self.environment.parsed_options
        process.begin()
        rng = random.Random(o.kit_seed * 1_000_003 + os.getpid() * 1009 + next(process.ids))
        rows: list = []
        if o.kit_model == "open":
            self._open(process, o, rng, rows)
        else:
            self._closed(process, o, rng, rows)
        self.environment.runner.send_message(SAMPLES, {"rows": rows, "process": process.report()})
        raise StopUser()

    @staticmethod
    def _open(process: _Process, o, rng: random.Random, rows: list) -> None:
        gap = o.kit_users / o.kit_rate  # per user; the superposition of the users' arrivals is the rate
        end = process.end
        assert end is not None  # schedule() began the process's window
        t = time.perf_counter() + (rng.uniform(0.0, gap) if o.kit_arrivals == "constant" else 0.0)
        flights: list[tuple[gevent.Greenlet, str, float]] = []
        while True:
            t += rng.expovariate(1.0 / gap) if o.kit_arrivals == "poisson" else gap
            if t >= end:
                break
            gevent.sleep(max(t - time.perf_counter(), 0.0))
            endpoint = process.pick(rng)
            flights.append((gevent.spawn(process.request, endpoint, rng, t, rows), endpoint.name, t))
        gevent.joinall([g for g, _, _ in flights], timeout=max(end + o.kit_drain - time.perf_counter(), 0.0))
        for g, name, start in flights:
            if not g.ready():  # killed before it wrote its row: counted here, once
                g.kill(block=True, timeout=1.0)
                rows.append(process.row(name, start, None, None, "unfinished"))

    @staticmethod
    def _closed(process: _Process, o, rng: random.Random, rows: list) -> None:
        end = process.end
        assert end is not None  # schedule() began the process's window
        while time.perf_counter() < end:
            process.request(process.pick(rng), rng, time.perf_counter(), rows)
            if o.kit_think > 0:
                gevent.sleep(rng.uniform(0.5, 1.5) * o.kit_think)
