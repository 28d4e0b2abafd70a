"""The database's apply lock: one session-level advisory lock per database, held by whoever changes
it through the kit — from the plan to the last verdict — so two applies never overlap (talks to
PostgreSQL).

One key for the whole kit (:data:`KEY`): ``kit run -p apply true``, :func:`kit.fixes.run_loop`
with ``apply`` and :func:`kit.indexes.apply_indexes` all take the same lock, and a second apply
on the same database is refused at once with :class:`~kit.errors.ApplyInProgress`, naming the
holder (advisory locks are per database: other databases of the server are not affected).

The lock lives on a session of its own, never a pooled one, that runs nothing else: PostgreSQL
releases it when that session ends — also when the process holding it is killed, since an idle
session notices its client's closed socket at once. A ``kit run`` with ``apply`` takes it before
anything runs, under the application name ``dbperf-kit-run <run folder>``; its kernels find
that holder and work under it (:func:`hold` inherits it) instead of being refused by their own
run. A caller that already holds the lock passes its :class:`ApplyLock` down (``lock=``): there is
no module-level state.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg

from kit import escape
from kit.config import run_dir
from kit.db import sessions
from kit.db.engine import one_row
from kit.errors import ApplyInProgress, IndexBuildError

KEY = "dbperf-kit:apply"
APP = "dbperf-kit-apply"  # the application name of a lock session of the kit's library calls
RUN_APP = "dbperf-kit-run"  # ... and of a `kit run`'s, followed by the run folder's name

TRY_LOCK = "SELECT /* kit */ pg_try_advisory_lock(hashtext(%s))"
UNLOCK = "SELECT /* kit */ pg_advisory_unlock(hashtext(%s))"
# pg_locks shows a one-bigint advisory key as classid (high 32 bits) and objid (low), objsubid 1
HOLDER = """SELECT /* kit */ a.pid, a.application_name, a.backend_start
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtext(%s)::bigint"""


@dataclass(frozen=True)
class Holder:
    """The session that holds the apply lock."""

    pid: int
    application: str | None
    since: datetime | None  # its session's start (it locks right after connecting); None: not ours to see

    def describe(self, now: datetime | None = None) -> str:
        app = escape.line(self.application) if self.application else "no application name"
        if self.since is None:
            return f"session {self.pid} ({app})"
        now = now or datetime.now(UTC)
        age = max(0.0, (now - self.since).total_seconds())
        when = self.since.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        return f"session {self.pid} ({app}, since {when} UTC, {age:.0f} s ago)"


@dataclass(frozen=True)
class ApplyLock:
    """Proof that an apply may change the database: the lock held by session ``pid`` — a session of
    this process (``inherited`` False) or of the ``kit run`` this kernel belongs to."""

    pid: int
    inherited: bool = False

    def require(self, conn: psycopg.Connection) -> None:
        """IndexBuildError when session ``pid`` no longer holds the lock (it ended: terminated, or its
        process killed) — another apply could be running by now."""
        found = holder(conn)
        if found is None or found.pid != self.pid:
            raise IndexBuildError(
                f"the apply lock of session {self.pid} was lost (its session ended); stopped "
                "before changing anything more — check what ran, then apply again"
            )


def holder(conn: psycopg.Connection) -> Holder | None:
    """Who holds the apply lock of ``conn``'s database, if anyone."""
    row = conn.execute(HOLDER, [KEY]).fetchone()
    return Holder(*row) if row else None


def run_application(run: str) -> str:
    """The application name of the lock session of the ``kit run`` writing into folder ``run``."""
    return f"{RUN_APP} {run}"[:63]  # PostgreSQL keeps 63 bytes of it


def _own_run() -> str | None:
    folder = run_dir()
    return run_application(folder.name) if folder else None


def refusal(found: Holder | None) -> str:
    who = found.describe() if found else "a session that has ended since"
    kill = f" (a session left over? end it: SELECT pg_terminate_backend({found.pid}))" if found else ""
    return (
        f"another session is applying indexes or fixes to this database: {who} holds the kit's apply "
        f"lock; nothing was planned or changed — wait for it to finish, then apply again{kill}"
    )


@contextmanager
def hold(url: str, *, app: str = APP, inherit: bool = True) -> Iterator[ApplyLock]:
    """The apply lock for the block. Steps: 1. a session of its own; 2. the lock, without waiting;
    3. when refused: work under the holder if it is the ``kit run`` this process belongs to (with
    ``inherit``), else raise ApplyInProgress naming it; 4. release it (PostgreSQL does too when the
    session ends, however it ends)."""
    conn = sessions.connect(url, app=app)  # 1.
    try:
        for _attempt in range(3):  # the holder may end between 2. and 3.: then try again
            if one_row(conn.execute(TRY_LOCK, [KEY]))[0]:  # 2.
                break
            found = holder(conn)  # 3.
            if found is not None and inherit and found.application == _own_run():
                conn.close()
                yield ApplyLock(found.pid, inherited=True)
                return
            if found is not None:
                raise ApplyInProgress(refusal(found))
        else:
            raise ApplyInProgress(refusal(None))
        try:
            yield ApplyLock(conn.info.backend_pid)
        finally:
            _release(conn)  # 4.
    finally:
        conn.close()


def _release(conn: psycopg.Connection) -> None:
    try:
        conn.execute(UNLOCK, [KEY])
    except psycopg.Error:
        pass  # the session is gone, and its lock with it
