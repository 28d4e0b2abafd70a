"""An index on a partitioned table, on the safe path (talks to PostgreSQL).

PostgreSQL refuses ``CREATE INDEX CONCURRENTLY`` on a partitioned table, and a plain ``CREATE
INDEX`` there locks out every write to every partition while it reads them all. So, as its
documentation advises:

1. each partition's own index, ``CONCURRENTLY``, on the same safe path as any index (its own
   session, lock and statement timeouts, retries, the kit's marker; a partition that is itself
   partitioned, the same steps one level down);
2. the parent's index ``ON ONLY`` the parent: made at once, reading nothing, INVALID for now;
3. ``ALTER INDEX parent ATTACH PARTITION child`` for each partition's index (a short lock each);
4. with every partition's index attached, PostgreSQL marks the parent's valid.

An interrupted sequence leaves partition indexes (valid, or INVALID ones the next attempt drops and
builds again) and an INVALID parent index; the next apply drops that parent index (a partitioned
index cannot be dropped ``CONCURRENTLY``: a plain ``DROP INDEX``, which drops the attached partition
indexes with it) and runs the steps again, taking what is built already. A revert is that same
drop. ``fixes.sql`` spells out the same steps (:func:`statements`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

import psycopg
from psycopg import sql

from kit.indexes.spec import IndexSpec, on_only_sql, retarget

_NAME_BYTES = 63
_UNSAFE = re.compile(r"[^a-z0-9]+")
PARTITIONS = """SELECT /* kit */ n.nspname, c.relname, c.relkind = 'p' FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.inhparent = to_regclass(format('%%I.%%I', %s::text, %s::text)) ORDER BY 2"""
IS_PARTITIONED = (
    """SELECT /* kit */ relkind = 'p' FROM pg_class WHERE oid = to_regclass(format('%%I.%%I', %s::text, %s::text))"""
)
# the partition indexes attached to a partitioned index, at every level
ATTACHED = """WITH /* kit */ RECURSIVE tree(oid) AS (
    SELECT inhrelid FROM pg_inherits WHERE inhparent = to_regclass(format('%%I.%%I', %s::text, %s::text))
    UNION ALL SELECT i.inhrelid FROM pg_inherits i JOIN tree t ON i.inhparent = t.oid)
SELECT c.relname FROM tree JOIN pg_class c ON c.oid = tree.oid ORDER BY 1"""


def is_partitioned(conn: psycopg.Connection, schema: str, table: str) -> bool:
    row = conn.execute(IS_PARTITIONED, [schema, table]).fetchone()
    return bool(row and row[0])


def partitions(conn: psycopg.Connection, schema: str, table: str) -> list[tuple[str, str, bool]]:
    """(schema, name, itself partitioned) of each partition of ``schema.table``."""
    return [(s, n, bool(p)) for s, n, p in conn.execute(PARTITIONS, [schema, table]).fetchall()]


def attached(conn: psycopg.Connection, schema: str, name: str) -> tuple[str, ...]:
    """The names of the partition indexes attached to index ``schema.name`` (none for a plain one)."""
    return tuple(r[0] for r in conn.execute(ATTACHED, [schema, name]).fetchall())


def child_name(parent: str, partition: str) -> str:
    """The kit's name for ``parent``'s index on ``partition``: the parent's name and the partition's in
    lower-case letters, digits and ``_``, cut to 63 bytes with a hash when longer (pure)."""
    name = f"{parent}_{_UNSAFE.sub('_', partition.lower()).strip('_')}"
    if len(name.encode()) <= _NAME_BYTES:
        return name
    digest = hashlib.sha1(f"{parent}\0{partition}".encode()).hexdigest()[:8]
    return name.encode()[: _NAME_BYTES - 9].decode(errors="ignore") + "_" + digest


def _children(conn: psycopg.Connection, spec: IndexSpec) -> list[tuple[IndexSpec, bool]]:
    return [
        (retarget(spec, schema=s, table=n, name=child_name(spec.name, n)), sub)
        for s, n, sub in partitions(conn, spec.schema, spec.table)
    ]


def statements(conn: psycopg.Connection, spec: IndexSpec) -> list[str]:
    """The statements of the steps for ``spec`` on a partitioned table, as psql would run them."""
    out: list[str] = []
    for child, sub in _children(conn, spec):
        out += statements(conn, child) if sub else [child.create_sql]
    out.append(on_only_sql(spec))
    out += [_attach(spec, child).as_string(None) for child, _sub in _children(conn, spec)]
    return out


def _attach(parent: IndexSpec, child: IndexSpec) -> sql.Composed:
    return sql.SQL("ALTER INDEX {} ATTACH PARTITION {}").format(
        sql.Identifier(parent.schema, parent.name), sql.Identifier(child.schema, child.name)
    )


def build(
    spec: IndexSpec,
    monitor: psycopg.Connection,
    *,
    build_child: Callable[[IndexSpec], list[str]],
    run: Callable[[str | sql.Composed], object],
) -> list[str]:
    """Steps 1-3 of the module docstring; ``build_child`` builds one partition's index concurrently on
    the safe path (its phases come back), ``run`` runs one short statement on a session of its own.
    The caller checks that the parent's index is valid (step 4)."""
    phases: list[str] = []
    children = _children(monitor, spec)
    for child, sub in children:  # 1.
        if sub:
            phases += build(child, monitor, build_child=build_child, run=run)
        else:
            phases += build_child(child)
    run(on_only_sql(spec))  # 2.
    done = set(attached(monitor, spec.schema, spec.name))
    for child, _sub in children:  # 3.
        if child.name not in done:
            run(_attach(spec, child))
    return phases
