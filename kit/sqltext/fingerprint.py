"""Normalize and fingerprint SQL, and name the tables a statement reads and writes (pure).

pglast (libpg_query, the parser of PostgreSQL itself) gives the same ``$1`` normalization as
pg_stat_statements and a fingerprint that ignores constants, parameters, comments, whitespace and
the length of ``IN (...)`` lists. Text the parser rejects (another dialect, a fragment, a typo) is
never an error here: a regex normalizer produces a fallback form and a fallback fingerprint, so a
capture of anything keeps working.

Driver placeholders (``%s``, ``%(name)s``, as psycopg and SQLAlchemy send them) are turned into
``$n`` first, so a statement fingerprints the same whether it is seen by SQLAlchemy's events or in
pg_stat_statements.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from pglast import ast, parse_sql, parser

# %(name)s, %s and %% (a literal percent once parameters are bound)
_PLACEHOLDER = re.compile(r"%\((?P<name>[^)]+)\)s|%s|%%")
_STRING = re.compile(r"(?:[EeBbXxNn])?'(?:[^']|'')*'")
_NUMBER = re.compile(r"(?<![\w$.])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?\b")
_LITERAL = re.compile(rf"{_STRING.pattern}|{_NUMBER.pattern}|\$\d+")
_IN_LIST = re.compile(r"\bIN\s*\(\s*\$\d+(?:\s*,\s*\$\d+)*\s*\)", re.I)
_SPACE = re.compile(r"\s+")
_WRITE_VERB = re.compile(
    r"\b(?:INSERT\s+INTO|UPDATE(?:\s+ONLY)?|DELETE\s+FROM(?:\s+ONLY)?|MERGE\s+INTO|"
    r"TRUNCATE(?:\s+TABLE)?(?:\s+ONLY)?)\s+(?P<name>(?:\"[^\"]+\"|\w+)(?:\.(?:\"[^\"]+\"|\w+))?)",
    re.I,
)
_COPY_FROM = re.compile(
    r"\bCOPY\s+(?P<name>(?:\"[^\"]+\"|\w+)(?:\.(?:\"[^\"]+\"|\w+))?)(?:\s*\([^)]*\))?\s+FROM\b", re.I
)
_READ_VERB = re.compile(r"\b(?:FROM|JOIN)\s+(?P<name>(?:\"[^\"]+\"|\w+)(?:\.(?:\"[^\"]+\"|\w+))?)", re.I)
_NOT_TABLES = {"select", "lateral", "only", "unnest", "generate_series", "values"}


@dataclass(frozen=True)
class Shape:
    """What a statement is: its kind, normal form, fingerprint and the tables it touches."""

    kind: str  # "select", "insert", "update", "delete", "merge", "copy", "truncate", "other"
    normalized: str
    fingerprint: str
    tables: frozenset[str]
    written: frozenset[str]
    # columns compared to one parameter (``project_id = $1``): the key an N+1 loop iterates on
    keyed_on: tuple[str, ...]
    aggregate: bool
    parsed: bool  # False when the regex fallback produced this shape


def to_dollar_params(sql: str) -> str:
    """Replace ``%s`` / ``%(name)s`` placeholders with ``$1, $2, ...`` (one number per name)."""
    numbers: dict[str, int] = {}

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "%%":
            return "%"
        key = m.group("name") or f"#{len(numbers)}"
        numbers.setdefault(key, len(numbers) + 1)
        return f"${numbers[key]}"

    if "%" not in sql:
        return sql
    return _PLACEHOLDER.sub(repl, sql)


def fallback_normalize(sql: str) -> str:
    """The regex normal form: literals become ``$n``, IN lists collapse, whitespace is one space."""
    counter = iter(range(1, 1_000_000))
    text = to_dollar_params(sql)
    text = _LITERAL.sub(lambda _m: f"${next(counter)}", text)
    text = _IN_LIST.sub("IN (...)", text)
    return _SPACE.sub(" ", text).strip().rstrip(";").strip()


def _fallback_fingerprint(normalized: str) -> str:
    # numbering differs with the count of literals: drop it so the fingerprint ignores values
    key = re.sub(r"\$\d+", "$", normalized).lower()
    return hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


def normalize(sql: str) -> str:
    """pg_stat_statements' form of ``sql`` (constants as ``$n``); the regex form if it cannot parse."""
    text = to_dollar_params(sql)
    try:
        return parser.normalize(text)
    except parser.ParseError:
        return fallback_normalize(sql)


def fingerprint(sql: str) -> str:
    """A 16-hex-digit fingerprint equal for statements that differ only in values and layout."""
    text = to_dollar_params(sql)
    try:
        return parser.fingerprint(text)
    except parser.ParseError:
        return _fallback_fingerprint(fallback_normalize(sql))


def tables_written(sql: str) -> frozenset[str]:
    """Names (unqualified, as PostgreSQL folds them) of the tables ``sql`` inserts, updates,
    deletes, merges into, truncates or copies into; empty for a read."""
    return shape(sql).written


def tables_read(sql: str) -> frozenset[str]:
    """Every table ``sql`` touches (read or written), unqualified; CTE names are not tables."""
    return shape(sql).tables


def shape(sql: str) -> Shape:
    """Parse ``sql`` once and describe it (the regex fallback when the parser rejects it)."""
    text = to_dollar_params(sql)
    try:
        stmts = parse_sql(text)
    except parser.ParseError:
        return _fallback_shape(sql)
    walk = _Walk()
    for raw in stmts:
        walk.visit(raw.stmt)
    kind = _kind(stmts[0].stmt) if stmts else "other"
    return Shape(
        kind=kind,
        normalized=parser.normalize(text),
        fingerprint=parser.fingerprint(text),
        tables=frozenset(walk.tables - walk.ctes),
        written=frozenset(walk.written - walk.ctes),
        keyed_on=tuple(dict.fromkeys(walk.keyed_on)),
        aggregate=walk.aggregate,
        parsed=True,
    )


_KINDS = {
    ast.SelectStmt: "select",
    ast.InsertStmt: "insert",
    ast.UpdateStmt: "update",
    ast.DeleteStmt: "delete",
    ast.MergeStmt: "merge",
    ast.CopyStmt: "copy",
    ast.TruncateStmt: "truncate",
}
_AGGREGATES = {"count", "sum", "avg", "min", "max", "bool_and", "bool_or", "array_agg", "string_agg"}


def _kind(stmt: ast.Node | None) -> str:
    if isinstance(stmt, (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.SelectStmt)):
        # a data-modifying CTE around a SELECT still writes; the top-level verb names the kind
        return _KINDS[type(stmt)]
    return _KINDS.get(type(stmt), "other")


class _Walk:
    """Collect table names, written tables, CTE names and ``column = $n`` keys from a parse tree."""

    def __init__(self) -> None:
        self.tables: set[str] = set()
        self.written: set[str] = set()
        self.ctes: set[str] = set()
        self.keyed_on: list[str] = []
        self.aggregate = False

    def visit(self, node: object) -> None:
        if isinstance(node, tuple):
            for item in node:
                self.visit(item)
            return
        if not isinstance(node, ast.Node):
            return
        self._note(node)
        for slot in _slots(type(node)):
            self.visit(getattr(node, slot, None))

    def _note(self, node: ast.Node) -> None:
        if isinstance(node, ast.RangeVar) and node.relname:
            self.tables.add(node.relname)
        elif isinstance(node, ast.CommonTableExpr) and node.ctename:
            self.ctes.add(node.ctename)
        elif isinstance(node, (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)):
            if node.relation is not None and node.relation.relname:
                self.written.add(node.relation.relname)
        elif isinstance(node, ast.TruncateStmt):
            self.written.update(rv.relname for rv in node.relations or () if rv.relname)
        elif isinstance(node, ast.CopyStmt) and node.is_from and node.relation is not None:
            if node.relation.relname:
                self.written.add(node.relation.relname)
        elif isinstance(node, ast.FuncCall):
            if node.funcname and getattr(node.funcname[-1], "sval", "") in _AGGREGATES:
                self.aggregate = True
        elif isinstance(node, ast.A_Expr) and _is_eq(node):
            for col, other in ((node.lexpr, node.rexpr), (node.rexpr, node.lexpr)):
                if isinstance(col, ast.ColumnRef) and col.fields and isinstance(other, (ast.ParamRef, ast.A_Const)):
                    self.keyed_on.append(getattr(col.fields[-1], "sval", "?"))


def _is_eq(node: ast.A_Expr) -> bool:
    names = node.name or ()
    return len(names) == 1 and getattr(names[0], "sval", None) == "="


def _slots(cls: type) -> tuple[str, ...]:
    names: list[str] = []
    for klass in cls.__mro__:
        names.extend(s for s in getattr(klass, "__slots__", ()) if s != "location")
    return tuple(names)


def _bare(name: str) -> str:
    last = name.split(".")[-1]
    return last[1:-1] if last.startswith('"') else last.lower()


def _fallback_shape(sql: str) -> Shape:
    normalized = fallback_normalize(sql)
    no_strings = _STRING.sub("''", sql)
    written = {_bare(m["name"]) for m in _WRITE_VERB.finditer(no_strings)}
    written |= {_bare(m["name"]) for m in _COPY_FROM.finditer(no_strings)}
    read = {_bare(m["name"]) for m in _READ_VERB.finditer(no_strings)} - _NOT_TABLES
    first = (no_strings.split(None, 1) or ["other"])[0].lower()
    return Shape(
        kind=first if first in set(_KINDS.values()) else "other",
        normalized=normalized,
        fingerprint=_fallback_fingerprint(normalized),
        tables=frozenset(read | written),
        written=frozenset(written),
        keyed_on=tuple(dict.fromkeys(re.findall(r"(\w+)\s*=\s*\$\d+", normalized))),
        aggregate=bool(re.search(r"\b(?:count|sum|avg|min|max)\s*\(", normalized, re.I)),
        parsed=False,
    )
