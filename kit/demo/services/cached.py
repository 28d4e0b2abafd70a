"""The batched services behind the two-level cache, with the seed's TTLs (talks to PostgreSQL and Redis).

Keys follow the seed: ``project:{id}``, ``projects:list:{page}:{per_page}``; TTLs are the seed's
(get_project 10 min, get_reconciliation_jobs 2 min, list_users 10 min). Writes register their
invalidations on the connection and they run after the commit (:class:`kit.cache.AfterCommit`).
With ``safety_net=True`` every entry also carries ``table:<name>`` tags for the tables it reads,
so any committed write to those tables invalidates it even if no service said so.

Reads on a connection whose transaction has already written bypass the cache: they must see
their own uncommitted writes, and those must never reach a shared cache. Reads assume READ
COMMITTED (each statement a fresh snapshot), PostgreSQL's default.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine

from kit.cache import AfterCommit, TieredCache
from kit.demo.services import batched

PROJECT_TTL = 600.0
JOBS_TTL = 120.0
USERS_TTL = 600.0
PROJECTS_LIST_TTL = 600.0


class CachedServices:
    """``get_project``, ``get_reconciliation_jobs``, ``list_users``, ``list_projects`` cached;
    ``update_project`` invalidating after its commit."""

    def __init__(self, cache: TieredCache, engine: Engine, *, safety_net: bool = True, invalidate: bool = True) -> None:
        self.cache, self.engine, self.safety_net, self.invalidate = cache, engine, safety_net, invalidate
        # invalidate=False reproduces the seed's bug (no invalidation on update), for the notebook
        self.after_commit = AfterCommit(engine, cache, track_tables=safety_net) if invalidate else None

    def close(self) -> None:
        if self.after_commit is not None:
            self.after_commit.close()

    def __enter__(self) -> CachedServices:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _cached(
        self,
        conn: Connection,
        key: str,
        load: Callable[[Connection], Any],
        *,
        ttl: float,
        tags: tuple[str, ...],
        tables: tuple[str, ...],
    ) -> Any:
        if self.after_commit is not None and self.after_commit.has_pending(conn):
            return load(conn)
        if self.safety_net:
            tags += tuple(f"table:{t}" for t in tables)
        return self.cache.get_or_load(
            key, lambda: load(conn), ttl=ttl, tags=tags, reload=lambda: self._on_own_connection(load)
        )

    def _on_own_connection(self, load: Callable[[Connection], Any]) -> Any:
        with self.engine.connect() as conn:
            return load(conn)

    def get_project(self, conn: Connection, project_id: int) -> dict[str, Any] | None:
        pid = int(project_id)
        return self._cached(
            conn,
            f"project:{pid}",
            lambda c: batched.get_project(c, pid),
            ttl=PROJECT_TTL,
            tags=(f"project:{pid}",),
            tables=("projects", "users"),
        )

    def get_reconciliation_jobs(
        self, conn: Connection, *, project_id: int, page: int = 1, per_page: int = 20
    ) -> dict[str, Any]:
        pid = int(project_id)
        return self._cached(
            conn,
            f"project:{pid}:jobs:{page}:{per_page}",
            lambda c: batched.get_reconciliation_jobs(c, project_id=pid, page=page, per_page=per_page),
            ttl=JOBS_TTL,
            tags=(f"project:{pid}:jobs",),
            tables=("reconciliation_jobs",),
        )

    def list_users(self, conn: Connection, *, page: int = 1, per_page: int = 20) -> dict[str, Any]:
        return self._cached(
            conn,
            f"users:list:{page}:{per_page}",
            lambda c: batched.list_users(c, page=page, per_page=per_page),
            ttl=USERS_TTL,
            tags=("users:list",),
            tables=("users", "projects"),
        )

    def list_projects(self, conn: Connection, *, page: int = 1, per_page: int = 20) -> dict[str, Any]:
        return self._cached(
            conn,
            f"projects:list:{page}:{per_page}",
            lambda c: batched.list_projects(c, page=page, per_page=per_page),
            ttl=PROJECTS_LIST_TTL,
            tags=("projects:list",),
            tables=("projects", "users"),
        )

    def update_project(self, conn: Connection, project_id: int, **fields: Any) -> dict[str, Any] | None:
        """batched.update_project (which commits), invalidating the project and the lists after it."""
        pid = int(project_id)
        if self.after_commit is not None:
            if not conn.in_transaction():
                conn.begin()
            self.after_commit.register(conn, keys=[f"project:{pid}"], tags=[f"project:{pid}", "projects:list"])
        return batched.update_project(conn, pid, **fields)
