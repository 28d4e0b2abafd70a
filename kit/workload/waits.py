"""Where each statement's time goes while the workload runs: ``pg_stat_activity`` sampled every few
milliseconds (the sessions of this database that are active, the kit's own left out), each sample
counted for the statement it runs (``query_id``, PostgreSQL 14+ with ``compute_query_id``) under its
wait class — CPU (active, waiting on nothing), IO, Lock, LWLock, Client, IPC or other — and, for a
session waiting on a lock, how many sessions block it (``pg_blocking_pids``, only then: it takes
the lock manager's locks).

    with WaitSampler(url) as sampler:
        run_the_workload()
    sampler.profile().share(queryid)     # {"Lock": 74.0, "CPU": 20.0, ...}, % of the statement's samples
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg
from sqlalchemy import Engine

from kit.db import sessions
from kit.errors import first_line

CLASSES: Final = ("CPU", "IO", "Lock", "LWLock", "Client", "IPC", "other")
INTERVAL_S: Final = 0.01
APP: Final = "dbperf-kit-waits"

SAMPLE = """SELECT /* kit */ query_id, wait_event_type, wait_event,
       CASE WHEN wait_event_type = 'Lock' THEN cardinality(pg_blocking_pids(pid)) ELSE 0 END
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active'
  AND backend_type = 'client backend' AND query_id IS NOT NULL
  AND coalesce(application_name, '') NOT LIKE 'dbperf-kit%'"""


def wait_class(event_type: str | None) -> str:
    """The class of a ``wait_event_type``: None (active, waiting on nothing) is CPU."""
    if event_type is None:
        return "CPU"
    return event_type if event_type in CLASSES else "other"


@dataclass(frozen=True)
class WaitProfile:
    """Samples per statement and class over ``seconds``; ``status`` says why there are none."""

    status: str  # "ok" | "unavailable"
    message: str
    seconds: float = 0.0
    polls: int = 0
    samples: dict[int, Counter[str]] = field(default_factory=dict)  # query_id -> class -> samples
    events: dict[int, Counter[str]] = field(default_factory=dict)  # query_id -> "Lock/transactionid" -> samples
    waiting_at_once: dict[int, int] = field(default_factory=dict)  # query_id -> most sessions in Lock waits at once

    def share(self, queryid: int | None) -> dict[str, float]:
        """% of the statement's samples per class (empty: never sampled)."""
        counts = self.samples.get(queryid or 0, Counter())
        total = sum(counts.values())
        return {c: 100.0 * counts[c] / total for c in CLASSES if counts[c]} if total else {}

    def count(self, queryid: int | None) -> int:
        return sum(self.samples.get(queryid or 0, Counter()).values())

    def top_event(self, queryid: int | None, wait: str) -> str | None:
        """The most sampled wait event of class ``wait`` ("Lock/transactionid")."""
        events = Counter(
            {e: n for e, n in self.events.get(queryid or 0, Counter()).items() if e.startswith(wait + "/")}
        )
        return events.most_common(1)[0][0] if events else None

    def to_frame(self) -> Any:
        import pandas as pd

        rows = [
            {"queryid": q, "samples": self.count(q), **{f"{c}_pct": self.share(q).get(c, 0.0) for c in CLASSES}}
            for q in self.samples
        ]
        return pd.DataFrame(rows, columns=["queryid", "samples", *(f"{c}_pct" for c in CLASSES)])


class WaitSampler:
    """Sample in a thread of its own, on one session, from ``__enter__`` to ``__exit__``."""

    def __init__(self, url: str | Engine, *, interval_s: float = INTERVAL_S) -> None:
        self.url, self.interval_s = url, interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._samples: dict[int, Counter[str]] = {}
        self._events: dict[int, Counter[str]] = {}
        self._at_once: Counter[int] = Counter()
        self._polls, self._seconds, self._error = 0, 0.0, ""

    def __enter__(self) -> WaitSampler:
        self._thread = threading.Thread(target=self._run, name="kit-wait-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        started = time.monotonic()
        try:
            with sessions.connect(self.url, app=APP) as conn:
                while not self._stop.is_set():
                    self._poll(conn)
                    self._stop.wait(self.interval_s)
        except psycopg.Error as exc:
            self._error = first_line(exc)
        self._seconds = time.monotonic() - started

    def _poll(self, conn: psycopg.Connection) -> None:
        rows = conn.execute(SAMPLE).fetchall()
        self._polls += 1
        waiting: Counter[int] = Counter()
        for queryid, event_type, event, blockers in rows:
            cls = wait_class(event_type)
            self._samples.setdefault(queryid, Counter())[cls] += 1
            if event_type is not None:
                self._events.setdefault(queryid, Counter())[f"{event_type}/{event}"] += 1
            if blockers:
                waiting[queryid] += 1
        for queryid, n in waiting.items():
            self._at_once[queryid] = max(self._at_once[queryid], n)

    @property
    def quiet(self) -> bool:
        """No active session of the database was seen yet (and the sampler works)."""
        return not self._samples and not self._error

    def profile(self) -> WaitProfile:
        if self._error:
            return WaitProfile("unavailable", f"pg_stat_activity could not be sampled: {self._error}")
        if not self._polls:
            return WaitProfile("unavailable", "no sample was taken")
        message = f"{self._polls:,} samples over {self._seconds:.1f} s of {len(self._samples)} statement(s)" + (
            "" if self._samples else ": no session of this database was active (the workload was not running)"
        )
        return WaitProfile("ok", message, self._seconds, self._polls, self._samples, self._events, dict(self._at_once))


QUIET_S: Final = 1.0


def sample_waits(
    url: str | Engine, seconds: float, *, interval_s: float = INTERVAL_S, quiet_s: float = QUIET_S
) -> WaitProfile:
    """Sample for ``seconds`` (while the workload runs elsewhere) and return the profile; a database
    where no session was active in the first ``quiet_s`` seconds is left at that (its message says so)."""
    started = time.monotonic()
    with WaitSampler(url, interval_s=interval_s) as sampler:
        while time.monotonic() - started < seconds:
            time.sleep(min(0.1, seconds))
            if time.monotonic() - started >= quiet_s and sampler.quiet:
                break
    return sampler.profile()
