"""Index specs parsed from a migration file with pglast, and their normalized form (pure).

The migration is the source of truth: every statement must be a named ``CREATE INDEX``; any
other statement is refused with the file and line, so nothing is applied from a file the kit
does not fully understand. ``pg_get_indexdef`` output parses with the same code, so a spec and
a live index compare as :meth:`IndexSpec.signature` values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from pglast import ast, parse_sql
from pglast.enums import ObjectType, SortByDir, SortByNulls
from pglast.parser import ParseError
from pglast.stream import RawStream

from kit.errors import ConfigError

DEFAULT_SCHEMA = "public"
# Leading blanks and comments before a statement: libpg_query's stmt_location includes them.
_LEADING = re.compile(rb"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.S)
_CAST = re.compile(r"CAST\(('(?:[^']|'')*'|\d+(?:\.\d+)?) AS [a-z_ ]+(?:\[\])?\)", re.I)


class MigrationError(ConfigError):
    """A migration file the kit refuses to apply (syntax error, non-index statement, ...)."""


@dataclass(frozen=True)
class IndexKey:
    """One key of an index: a column or an expression, with its sort order."""

    expression: str  # the column name, or the deparsed expression
    is_column: bool
    descending: bool = False
    nulls: str | None = None  # "first" | "last" | None (the default for the direction)

    def render(self) -> str:
        text = self.expression if self.is_column else f"({self.expression})"
        if self.descending:
            text += " DESC"
        if self.nulls:
            text += f" NULLS {self.nulls.upper()}"
        return text


@dataclass(frozen=True)
class IndexSpec:
    """One index as declared: where it came from and what it is."""

    name: str
    table: str
    keys: tuple[IndexKey, ...]
    schema: str = DEFAULT_SCHEMA
    method: str = "btree"
    predicate: str | None = None
    include: tuple[str, ...] = ()
    unique: bool = False
    source: str = "<text>"
    line: int = 1
    create_sql: str = field(default="", compare=False)

    @property
    def qualified_table(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def columns(self) -> tuple[str, ...]:
        """The plain columns among the keys, in order."""
        return tuple(k.expression for k in self.keys if k.is_column)

    @property
    def definition(self) -> str:
        """A short human-readable definition, e.g. ``users (lower(email))``."""
        text = f"{self.table} " + ("USING " + self.method + " " if self.method != "btree" else "")
        text += "(" + ", ".join(k.render() for k in self.keys) + ")"
        if self.include:
            text += " INCLUDE (" + ", ".join(self.include) + ")"
        if self.predicate:
            text += f" WHERE {self.predicate}"
        return ("UNIQUE " if self.unique else "") + text

    def signature(self) -> tuple:
        """What must match between a declared and a live index (names aside)."""
        return (
            self.schema,
            self.table,
            self.method,
            self.unique,
            tuple((normalize_expression(k.expression), k.descending, _nulls(k)) for k in self.keys),
            normalize_expression(self.predicate or ""),
            tuple(self.include),
        )


def _nulls(key: IndexKey) -> str:
    # NULLS LAST is the default for ASC and NULLS FIRST for DESC: spell the default out.
    return key.nulls or ("first" if key.descending else "last")


def normalize_expression(text: str) -> str:
    """Drop casts of literals, parentheses and blanks: ``(status = 'x'::text)`` == ``status = 'x'``."""
    text = _CAST.sub(r"\1", text)
    text = re.sub(r"'((?:[^']|'')*)'::[a-z_ ]+(?:\[\])?", r"'\1'", text, flags=re.I)
    return re.sub(r"[\s()]+", "", text).lower()


def _line_of(data: bytes, offset: int) -> int:
    start = _LEADING.match(data, offset)
    return data[: start.end() if start else offset].count(b"\n") + 1


def _deparse(node) -> str:
    return RawStream()(node)


def _key(elem: ast.IndexElem) -> IndexKey:
    nulls: dict[SortByNulls | None, str] = {
        SortByNulls.SORTBY_NULLS_FIRST: "first",
        SortByNulls.SORTBY_NULLS_LAST: "last",
    }
    return IndexKey(
        expression=elem.name if elem.name else _deparse(elem.expr),
        is_column=bool(elem.name),
        descending=elem.ordering == SortByDir.SORTBY_DESC,
        nulls=nulls.get(elem.nulls_ordering),
    )


def _spec(stmt: ast.IndexStmt, *, source: str, line: int) -> IndexSpec:
    relation, name, params = stmt.relation, stmt.idxname, stmt.indexParams
    # the grammar gives every CREATE INDEX a table and keys; the callers name an unnamed one
    if relation is None or relation.relname is None or name is None or params is None:
        raise MigrationError(f"{source}:{line}: a CREATE INDEX without a name, a table or keys; fix the migration")
    schema = relation.schemaname or DEFAULT_SCHEMA
    # The statement the kit runs: always CONCURRENTLY IF NOT EXISTS, always schema-qualified,
    # deparsed from the parsed tree (so identifiers are quoted by pglast, not by us).
    stmt.concurrent = True
    stmt.if_not_exists = True
    relation.schemaname = schema
    return IndexSpec(
        name=name,
        table=relation.relname,
        schema=schema,
        keys=tuple(_key(e) for e in params),
        method=(stmt.accessMethod or "btree").lower(),
        predicate=_deparse(stmt.whereClause) if stmt.whereClause is not None else None,
        include=tuple(e.name for e in (stmt.indexIncludingParams or ())),
        unique=bool(stmt.unique),
        source=source,
        line=line,
        create_sql=_deparse(stmt),
    )


def parse_index_sql(text: str, *, source: str = "<text>") -> tuple[IndexSpec, ...]:
    """Parse SQL text made only of named ``CREATE INDEX`` statements into specs.

    Raises :class:`MigrationError` naming ``source`` and the line for a syntax error, a
    statement that is not ``CREATE INDEX``, an unnamed index, or a name declared twice.
    """
    data = text.encode()
    try:
        raws = parse_sql(text)
    except ParseError as exc:
        offset = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else 0
        line = text[:offset].count("\n") + 1
        raise MigrationError(
            f"{source}:{line}: syntax error ({exc.args[0]}); fix the migration, nothing was applied"
        ) from exc
    specs: list[IndexSpec] = []
    seen: dict[str, int] = {}
    for raw in raws:
        line = _line_of(data, raw.stmt_location or 0)
        stmt = raw.stmt
        if not isinstance(stmt, ast.IndexStmt):
            kind = type(stmt).__name__
            raise MigrationError(
                f"{source}:{line}: {kind} is not index DDL; the kit applies only CREATE INDEX "
                "statements — move it to another migration, nothing was applied"
            )
        if not stmt.idxname:
            raise MigrationError(f"{source}:{line}: CREATE INDEX without a name; name the index")
        if stmt.idxname in seen:
            raise MigrationError(f"{source}:{line}: index {stmt.idxname} already declared at line {seen[stmt.idxname]}")
        seen[stmt.idxname] = line
        specs.append(_spec(stmt, source=source, line=line))
    return tuple(specs)


def parse_migration(path: str | Path) -> tuple[IndexSpec, ...]:
    """The index specs of migration file ``path`` (see :func:`parse_index_sql`)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise MigrationError(f"cannot read migration {path}: {exc.strerror}; check the path") from exc
    return parse_index_sql(text, source=str(path))


def _parse_or_refuse(text: str, source: str):
    try:
        return parse_sql(text)
    except ParseError as exc:
        offset = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else 0
        raise MigrationError(
            f"{source}:{text[:offset].count(chr(10)) + 1}: syntax error ({exc.args[0]}); "
            "fix the migration, nothing was applied"
        ) from exc


def _default_name(stmt: ast.IndexStmt) -> str:
    """PostgreSQL's own name for an unnamed index: table_column(s)_idx (63 bytes at most)."""
    parts = [e.name or "expr" for e in stmt.indexParams or ()]
    table = stmt.relation.relname if stmt.relation is not None else ""  # none: _spec refuses the statement
    return f"{table}_{'_'.join(parts)}_idx"[:63]


def declared_in_migrations(path: str | Path) -> tuple[tuple[IndexSpec, ...], int]:
    """The indexes that a migration file — or a folder of ``.sql`` migrations applied in name
    order — leaves declared, and how many other statements (tables, data ...) were skipped:
    CREATE INDEX declares, DROP INDEX removes; an unnamed index gets PostgreSQL's name."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.sql"))
        if not files:
            raise MigrationError(f"no .sql file in {path}; name a migration file or a folder of them")
    elif path.is_file():
        files = [path]
    else:
        raise MigrationError(f"migrations {path} not found; name a .sql file or a folder of .sql files")
    declared: dict[tuple[str, str], IndexSpec] = {}
    skipped = 0
    for file in files:
        text = file.read_text()
        data = text.encode()
        for raw in _parse_or_refuse(text, str(file)):
            stmt = raw.stmt
            if isinstance(stmt, ast.IndexStmt):
                stmt.idxname = stmt.idxname or _default_name(stmt)
                spec = _spec(stmt, source=str(file), line=_line_of(data, raw.stmt_location or 0))
                declared[(spec.schema, spec.name)] = spec
            elif isinstance(stmt, ast.DropStmt) and stmt.removeType == ObjectType.OBJECT_INDEX:
                for obj in stmt.objects or ():
                    names = [n.sval for n in obj]
                    key = (names[0], names[1]) if len(names) == 2 else (DEFAULT_SCHEMA, names[-1])
                    declared.pop(key, None)
            else:
                skipped += 1
    return tuple(declared.values()), skipped


def _index_stmt(text: str, *, source: str) -> tuple[ast.IndexStmt, ast.RangeVar]:
    """The one CREATE INDEX of ``text`` (a spec's own statement, or ``pg_get_indexdef()`` output) and its table."""
    (raw,) = parse_sql(text)
    stmt = raw.stmt
    if not isinstance(stmt, ast.IndexStmt) or stmt.relation is None:
        raise MigrationError(f"{source}: not a CREATE INDEX on a table: {text!r}")
    return stmt, stmt.relation


def retarget(spec: IndexSpec, *, schema: str, table: str, name: str) -> IndexSpec:
    """``spec`` built on another table (a partition of its own) under another name (pure)."""
    stmt, relation = _index_stmt(spec.create_sql, source=spec.source)
    relation.schemaname, relation.relname, stmt.idxname = schema, table, name
    return _spec(stmt, source=spec.source, line=spec.line)


def on_only_sql(spec: IndexSpec) -> str:
    """``CREATE INDEX IF NOT EXISTS name ON ONLY table ...``: the partitioned parent's own index, made
    at once and invalid until every partition's index is attached to it (pure)."""
    stmt, relation = _index_stmt(spec.create_sql, source=spec.source)
    stmt.concurrent, relation.inh = False, False
    return _deparse(stmt)


def parse_indexdef(indexdef: str) -> IndexSpec:
    """A spec from ``pg_get_indexdef()`` output, for comparison with a declared one."""
    stmt, _relation = _index_stmt(indexdef, source="database")
    return _spec(stmt, source="database", line=1)


def specs_frame(specs: tuple[IndexSpec, ...] | list[IndexSpec]) -> pd.DataFrame:
    """One row per spec: name, table, definition, file:line."""
    return pd.DataFrame(
        [
            {
                "name": s.name,
                "table": s.table,
                "definition": s.definition,
                "declared_at": f"{Path(s.source).name}:{s.line}",
            }
            for s in specs
        ],
        columns=["name", "table", "definition", "declared_at"],
    )
