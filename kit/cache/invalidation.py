"""Invalidation after commit, from SQLAlchemy connection events (talks to PostgreSQL and Redis).

Writes register their invalidations on the connection (``after_commit.register(conn, keys=...,
tags=...)``); they run once the transaction has committed and are discarded on rollback. The
statements the transaction ran are watched too: every table written (named by
:func:`kit.sqltext.fingerprint.tables_written`) invalidates the tag ``table:<name>``, so a cached read tagged
with the tables it reads is safe even when a service forgets to invalidate.

Why *after*: invalidating before the commit lets a reader reload the old row between the
invalidation and the commit and cache it. SQLAlchemy's ``commit`` event fires *before* the DBAPI
commit, so the listener commits the DBAPI connection itself, then invalidates; SQLAlchemy's own
commit that follows finds no open transaction and is a no-op in psycopg. Readers that loaded
before the commit are refused by the generation check (:mod:`kit.cache.l2`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Connection, Engine, event

from kit.errors import DatabaseUnavailable
from kit.sqltext.fingerprint import tables_written

_WRITE_VERBS = ("insert", "update", "delete", "merge", "with", "truncate", "copy")
_PENDING = "kit.cache.pending"  # suffixed with id(self): several instances may share an engine


def table_tag(table: str) -> str:
    """The tag every cached read of ``table`` carries (schema qualification dropped)."""
    return f"table:{table.rsplit('.', 1)[-1]}"


class AfterCommit:
    """Installs the listeners on ``engine``; ``close()`` removes them."""

    def __init__(self, engine: Engine, cache: Any, *, track_tables: bool = True) -> None:
        self.engine, self.cache, self.track_tables = engine, cache, track_tables
        self._parsed: dict[str, frozenset[str]] = {}
        self._slot = f"{_PENDING}.{id(self)}"
        self._listeners: list[tuple[str, Callable[..., None]]] = [
            ("commit", self._on_commit),
            ("rollback", self._on_rollback),
        ]
        if track_tables:
            self._listeners.append(("before_cursor_execute", self._on_execute))
        for name, fn in self._listeners:
            event.listen(engine, name, fn)

    def close(self) -> None:
        for name, fn in self._listeners:
            event.remove(self.engine, name, fn)

    def register(self, conn: Connection, *, keys: Iterable[str] = (), tags: Iterable[str] = ()) -> None:
        """Invalidate ``keys`` and ``tags`` when ``conn``'s transaction commits (now, if none is open)."""
        if not conn.in_transaction():
            self.cache.invalidate(keys=tuple(keys), tags=tuple(tags))
            return
        pending = self._pending(conn)
        pending[0].update(keys)
        pending[1].update(tags)

    def has_pending(self, conn: Connection) -> bool:
        """True when ``conn``'s open transaction wrote: its reads must bypass the cache."""
        keys, tags = conn.info.get(self._slot, ((), ()))
        return bool(keys or tags)

    def tables_of(self, statement: str) -> frozenset[str]:
        if not statement.lstrip().lower().startswith(_WRITE_VERBS):
            return frozenset()
        tables = self._parsed.get(statement)
        if tables is None:
            tables = tables_written(statement)
            if len(self._parsed) < 10_000:  # statement texts repeat; bound it anyway
                self._parsed[statement] = tables
        return tables

    def _pending(self, conn: Connection) -> tuple[set[str], set[str]]:
        return conn.info.setdefault(self._slot, (set(), set()))

    def _on_execute(
        self, conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        # under AUTOCOMMIT isolation SQLAlchemy still ends its transaction with commit(): the
        # invalidation runs then (later than the server's commit; use transactions for writes)
        tables = self.tables_of(statement)
        if tables:
            self._pending(conn)[1].update(map(table_tag, tables))

    def _on_commit(self, conn: Connection) -> None:
        keys, tags = conn.info.pop(self._slot, (set(), set()))
        if not keys and not tags:
            return
        dbapi = conn.connection.dbapi_connection
        if dbapi is None:  # the pool invalidated the connection: the transaction is lost, not committed
            raise DatabaseUnavailable(
                "the connection to PostgreSQL was lost before its transaction could commit: nothing was "
                "committed and no cache entry invalidated; run the transaction again"
            )
        dbapi.commit()  # commit first, then invalidate (see module doc)
        self.cache.invalidate(keys=tuple(sorted(keys)), tags=tuple(sorted(tags)))

    def _on_rollback(self, conn: Connection) -> None:
        conn.info.pop(self._slot, None)
