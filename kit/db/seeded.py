"""What the kit wrote into a database it built itself, read back (talks to PostgreSQL, read-only).

A database the kit seeded carries a ``kit_meta`` table (key, value): ``platform`` names the
application whose schema it holds — the notebooks' cells tagged ``platform`` run only there — and
``migration`` the index migration that application declares, a file of the kit's
``data/migrations/`` named without a path. Any other database has none of this, or a ``kit_meta``
of its own that says nothing the kit reads: the name is taken only when it is a plain file name of
that folder, so a database cannot point the kit at a file elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from kit.config import data_dir

HAS_META = "SELECT /* kit */ to_regclass('public.kit_meta') IS NOT NULL"
READ_META = """
SELECT /* kit */ key::text, value::text FROM public.kit_meta WHERE key::text IN ('platform', 'migration')
"""


@dataclass(frozen=True)
class Seeded:
    platform: str  # "" when the database names none
    migration: Path | None  # the declared index migration, inside data/migrations/


def seeded(conn: Connection) -> Seeded:
    """What ``kit_meta`` says; empty for a database the kit did not build (or whose table is not readable)."""
    if not conn.exec_driver_sql(HAS_META).scalar_one():
        return Seeded("", None)
    try:
        with conn.begin_nested():
            meta = {key: value for key, value in conn.exec_driver_sql(READ_META)}
    except DBAPIError:  # a kit_meta of another shape, or one this role may not read, says nothing to the kit
        return Seeded("", None)
    return Seeded(meta.get("platform", ""), _migration(meta.get("migration", "")))


def _migration(name: str) -> Path | None:
    folder = data_dir() / "migrations"
    path = folder / name
    if not name or Path(name).name != name or not path.is_file():
        return None
    return path
