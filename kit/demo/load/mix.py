"""The platform's endpoint mix over ``kit.demo.services`` naive / batched / cached (talks to PostgreSQL, and
to Redis for the cached flavor): what one virtual user's request does, whichever engine drives it."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from kit.cache import TieredCache
from kit.demo.services import batched, naive
from kit.demo.services.cached import CachedServices

LOAD_APPLICATION_NAME = "dbperf-kit-load"  # the load's sessions, as pg_stat_activity names them


@dataclass(frozen=True)
class Endpoint:
    """One endpoint of the mix: ``call(conn, rng)`` does one request's database work."""

    name: str
    call: Callable[[Connection, random.Random], object]
    weight: float = 1.0


# -- the seed's endpoints ------------------------------------------------------------------------

FLAVORS = ("naive", "batched", "cached")
# the seed's read endpoints and a plausible share of traffic each
MIX = {"search_projects": 3.0, "list_users": 2.0, "get_project": 3.0, "get_reconciliation_jobs": 2.0}
SEARCH_TERMS = ("Acme", "Globex", "Payroll", "Treasury", "EMEA", "Wonka", "Intercompany", "Hooli")
HOT_SHARE, HOT_FRACTION = 0.8, 0.01  # 80 % of lookups go to the hottest 1 % of projects
MAX_IDS = "SELECT /* kit */ coalesce((SELECT max(id) FROM projects), 1), coalesce((SELECT max(id) FROM users), 1)"


class _Reads(Protocol):
    """The reads of the mix, as the services modules and :class:`CachedServices` offer them."""

    def list_users(self, conn: Connection, *, page: int = ..., per_page: int = ...) -> dict[str, Any]: ...

    def get_project(self, conn: Connection, project_id: int) -> dict[str, Any] | None: ...

    def get_reconciliation_jobs(
        self, conn: Connection, *, project_id: int, page: int = ..., per_page: int = ...
    ) -> dict[str, Any]: ...


class _Search(Protocol):
    def __call__(self, conn: Connection, *, query: str, page: int = ..., per_page: int = ...) -> dict[str, Any]: ...


class EndpointSet(list):
    """The endpoints of a mix (a list), with the cache behind them when there is one."""

    cache: TieredCache | None = None


def _project_id(rng: random.Random, n: int) -> int:
    hot = max(int(n * HOT_FRACTION), 1)
    return rng.randint(1, hot) if rng.random() < HOT_SHARE else rng.randint(1, n)


@contextlib.contextmanager
def seed_endpoints(
    engine: Engine, *, flavor: str = "naive", redis_url: str | None = None, mix: dict[str, float] | None = None
) -> Iterator[EndpointSet]:
    """The seed's endpoints over ``kit.demo.services.<flavor>`` (``cached``: batched behind a
    TieredCache on ``redis_url``, L1 only without it; its search is batched, uncached).

    A context manager because the cached flavor owns a cache and its invalidation listener.
    """
    if flavor not in FLAVORS:
        raise ValueError(f"unknown flavor {flavor!r}; expected one of {', '.join(FLAVORS)}")
    with engine.connect() as conn:
        n_projects, _ = conn.exec_driver_sql(MAX_IDS).one()
    svc: _Reads
    search: _Search
    cache: TieredCache | None = None
    closer: CachedServices | None = None
    if flavor == "cached":
        cache = TieredCache(redis_url=redis_url, namespace=f"kit-load-{random.getrandbits(32):08x}")
        svc = closer = CachedServices(cache, engine)
        search = batched.search_projects
    elif flavor == "naive":
        svc, search = naive, naive.search_projects
    else:
        svc, search = batched, batched.search_projects
    calls = {
        "search_projects": lambda c, r: search(c, query=r.choice(SEARCH_TERMS), page=r.randint(1, 3), per_page=20),
        "list_users": lambda c, r: svc.list_users(c, page=r.randint(1, 5), per_page=20),
        "get_project": lambda c, r: svc.get_project(c, _project_id(r, n_projects)),
        "get_reconciliation_jobs": lambda c, r: svc.get_reconciliation_jobs(
            c, project_id=_project_id(r, n_projects), page=1, per_page=20
        ),
    }
    weights = mix or MIX
    unknown = set(weights) - set(calls)
    if unknown:
        raise ValueError(f"unknown endpoints in mix: {sorted(unknown)}; known: {sorted(calls)}")
    endpoints = EndpointSet(Endpoint(name, calls[name], w) for name, w in weights.items() if w > 0)
    endpoints.cache = cache
    try:
        yield endpoints
    finally:
        if closer is not None:
            closer.close()
        if cache is not None:
            cache.clear()
            cache.close()


def classify(exc: BaseException) -> str:
    """The error kind a failed request is counted under."""
    if isinstance(exc, PoolTimeout):
        return "pool_timeout"
    if isinstance(exc, DBAPIError):
        return "db_error"
    return type(exc).__name__
