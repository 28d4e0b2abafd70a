"""Make a normalized statement preparable again, keeping its ``$n`` numbering, and say what each
``$n`` is when no column does (pure; pglast).

pg_stat_statements replaces every constant with ``$n``, and some of its texts are then no SQL that
PostgreSQL accepts, though pglast's parser (libpg_query) reads them. The shapes rewritten here:

- a typed literal, ``date $6``, ``interval $2 month``, ``timestamp with time zone $1``:
  ``CAST($6 AS date)``, ``CAST($2 AS interval month)`` (a type followed by a parameter is no syntax);
- ``extract($1 FROM x)``: the field must be a keyword there, so the call becomes the function it
  stands for, ``pg_catalog.extract(CAST($1 AS text), x)`` (PostgreSQL 14+); which field the
  workload used is not in pg_stat_statements: the value is a guess (:data:`FIELD_GUESS`);
- arithmetic of parameters alone, ``$4 - $5`` or ``$8 + $9`` (``unknown - unknown`` has no operator):
  each parameter cast to the type of the column the expression is compared with (``column_type``),
  else ``numeric``;
- ``sum($1)``, ``avg(CASE WHEN ... THEN $3 ELSE $4 END)``: results of unknown type would be text,
  which sum cannot add: cast to ``numeric``.

A statement needing none of these comes back as it was. One that needs one is printed again from
its parse tree (keywords upper case, comments dropped); the parameters keep their numbers, so values
drawn for the original text still apply to the rewritten one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from pglast import ast, parse_sql
from pglast.enums import A_Expr_Kind, CoercionForm
from pglast.parser import ParseError
from pglast.stream import RawStream

FIELD_GUESS = "year"  # the field given to extract($n FROM ...): the original is not in pg_stat_statements
_ARITH = {"+", "-", "*", "/", "%", "^"}
_COMPARE = {"=", "<", ">", "<=", ">=", "<>", "!="}
_NUMERIC_AGGREGATES = {"sum", "avg", "stddev", "stddev_pop", "stddev_samp", "variance", "var_pop", "var_samp"}
_CAST_TYPE = re.compile(r"^CAST\(\$\d+ AS (.+)\)$", re.S)

ColumnType = Callable[[str | None, str], str | None]  # (qualifier, column) -> its type name, None if unknown


@dataclass(frozen=True)
class Retyped:
    """The preparable text and what was changed to get it (one line per change; no values)."""

    text: str
    changes: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.changes)


@dataclass(frozen=True)
class ParamContext:
    """What the text says about one ``$n`` besides a column: the type it is cast to, and its part in
    an expression — "field" (of extract), "offset" (the right side of ``+``/``-``), "factor" (of
    ``*``/``/``), "operand" (the left side of ``+``/``-``), or "" (none of these)."""

    number: int
    cast: str | None = None  # "date", "interval month", "numeric", ...
    role: str = ""


def _parse(query: str):
    try:
        stmts = parse_sql(query)
    except (ParseError, ValueError):
        return None
    return stmts[0].stmt if len(stmts) == 1 else None


def retype(query: str, *, column_type: ColumnType | None = None) -> Retyped | None:
    """``query`` made preparable (see the module docstring); None when it cannot be parsed at all."""
    stmt = _parse(query)
    if stmt is None:
        return None
    fixer = _Fixer(query, column_type)
    stmt = fixer.fix(stmt)
    if not fixer.changes:
        return Retyped(query)
    return Retyped(RawStream()(stmt), tuple(dict.fromkeys(fixer.changes)))


def contexts(query: str) -> dict[int, ParamContext]:
    """Per ``$n`` whose text says something about it: its cast and its part in an expression."""
    stmt = _parse(query)
    if stmt is None:
        return {}
    out: dict[int, ParamContext] = {}
    _collect(stmt, None, "", out)
    return out


def _bare(node) -> ast.ParamRef | None:
    return node if isinstance(node, ast.ParamRef) else None


def _op(node: ast.A_Expr) -> str:
    names = node.name or ()
    return getattr(names[-1], "sval", "") if names else ""


def _is_arith(node) -> bool:
    return isinstance(node, ast.A_Expr) and node.kind == A_Expr_Kind.AEXPR_OP and _op(node) in _ARITH


def _untyped(node) -> bool:
    """A bare parameter, or arithmetic of bare parameters only: nothing gives it a type."""
    if isinstance(node, ast.ParamRef):
        return True
    return _is_arith(node) and all(_untyped(n) for n in (node.lexpr, node.rexpr) if n is not None)


def _cast(node: ast.ParamRef, type_name: str) -> ast.TypeCast:
    names = tuple(ast.String(sval=part) for part in type_name.split("."))
    return ast.TypeCast(arg=node, typeName=ast.TypeName(names=names, typemod=-1))


def _column(node) -> tuple[str | None, str] | None:
    while isinstance(node, ast.TypeCast):
        node = node.arg
    if (
        not isinstance(node, ast.ColumnRef)
        or not node.fields
        or not all(isinstance(f, ast.String) for f in node.fields)
    ):
        return None
    names = [f.sval for f in node.fields]
    return (names[-2] if len(names) > 1 else None, names[-1])


def _slots_of(cls: type) -> tuple[str, ...]:
    out: list[str] = []
    for klass in cls.__mro__:
        out.extend(s for s in getattr(klass, "__slots__", ()) if s != "location")
    return tuple(out)


def _funcname(node: ast.FuncCall) -> str:
    return getattr(node.funcname[-1], "sval", "") if node.funcname else ""


class _Fixer:
    def __init__(self, query: str, column_type: ColumnType | None) -> None:
        self.query = query
        self.column_type = column_type
        self.changes: list[str] = []
        self._made: set[int] = set()  # the casts this rewrite added (they have no location)

    def fix(self, node):
        if isinstance(node, tuple):
            return tuple(self.fix(n) for n in node)
        if not isinstance(node, ast.Node):
            return node
        if isinstance(node, ast.TypeCast) and isinstance(node.arg, ast.ParamRef):
            if id(node) not in self._made and self._typed_literal(node):
                self.changes.append(f"a typed literal: {RawStream()(node)}")
            return node
        if isinstance(node, ast.A_Expr):
            self._compared(node)
            if _is_arith(node) and _untyped(node):
                return self._numbers(node, "numeric", "arithmetic of parameters alone")
        for name in _slots_of(type(node)):
            value = getattr(node, name, None)
            if isinstance(value, (ast.Node, tuple)):
                setattr(node, name, self.fix(value))
        if isinstance(node, ast.FuncCall):
            self._extract(node)
            self._aggregate(node)
        return node

    def _typed_literal(self, node: ast.TypeCast) -> bool:
        """``date $1`` (PostgreSQL rejects it) rather than ``$1::date`` or ``CAST($1 AS date)``."""
        loc, param_loc = getattr(node, "location", None), getattr(node.arg, "location", None)
        if loc is None or loc < 0:
            return True
        return param_loc is not None and loc < param_loc and not self.query[loc : loc + 4].lower() == "cast"

    def _compared(self, node: ast.A_Expr) -> None:
        """Arithmetic of parameters compared with a column takes the column's type."""
        if node.kind in (A_Expr_Kind.AEXPR_OP,) and _op(node) in _COMPARE:
            pairs = [(node.lexpr, "rexpr"), (node.rexpr, "lexpr")]
        elif node.kind in (A_Expr_Kind.AEXPR_BETWEEN, A_Expr_Kind.AEXPR_NOT_BETWEEN):
            pairs = [(node.lexpr, "rexpr")]
        else:
            return
        for col_node, side in pairs:
            col = _column(col_node)
            if col is None:
                continue
            type_name = (self.column_type(*col) if self.column_type else None) or "numeric"
            value = getattr(node, side)
            if isinstance(value, tuple):  # BETWEEN's two bounds
                setattr(
                    node,
                    side,
                    tuple(
                        self._numbers(v, type_name, f"compared with {col[1]}") if _is_arith(v) and _untyped(v) else v
                        for v in value
                    ),
                )
            elif _is_arith(value) and _untyped(value):
                setattr(node, side, self._numbers(value, type_name, f"compared with {col[1]}"))

    def _numbers(self, node, type_name: str, why: str):
        """Every bare parameter of an arithmetic expression cast to ``type_name``."""
        if isinstance(node, ast.ParamRef):
            self.changes.append(f"${node.number} {why}: CAST(${node.number} AS {type_name})")
            cast = _cast(node, type_name)
            self._made.add(id(cast))
            return cast
        if _is_arith(node):
            node.lexpr = self._numbers(node.lexpr, type_name, why) if node.lexpr is not None else None
            node.rexpr = self._numbers(node.rexpr, type_name, why)
        return node

    def _extract(self, node: ast.FuncCall) -> None:
        if (
            _funcname(node) != "extract"
            or not node.args
            or _bare(node.args[0]) is None
            or node.funcformat != CoercionForm.COERCE_SQL_SYNTAX
        ):
            return
        n = node.args[0].number
        field = _cast(node.args[0], "text")
        self._made.add(id(field))
        node.args = (field, *node.args[1:])
        node.funcformat = CoercionForm.COERCE_EXPLICIT_CALL
        self.changes.append(
            f"extract(${n} FROM ...) as the function pg_catalog.extract(CAST(${n} AS text), ...): "
            f"the field is not in pg_stat_statements ('{FIELD_GUESS}' assumed)"
        )

    def _aggregate(self, node: ast.FuncCall) -> None:
        if _funcname(node) not in _NUMERIC_AGGREGATES or not node.args:
            return
        arg = node.args[0]
        if isinstance(arg, ast.ParamRef):
            node.args = (self._numbers(arg, "numeric", f"in {_funcname(node)}()"), *node.args[1:])
        elif isinstance(arg, ast.CaseExpr):
            results = [w.result for w in arg.args or ()] + ([arg.defresult] if arg.defresult is not None else [])
            if results and all(isinstance(r, ast.ParamRef) or _is_null(r) for r in results):
                why = f"a CASE result in {_funcname(node)}()"
                for w in arg.args or ():
                    if isinstance(w.result, ast.ParamRef):
                        w.result = self._numbers(w.result, "numeric", why)
                if isinstance(arg.defresult, ast.ParamRef):
                    arg.defresult = self._numbers(arg.defresult, "numeric", why)


def _is_null(node) -> bool:
    return isinstance(node, ast.A_Const) and bool(node.isnull)


def _cast_type(node: ast.TypeCast) -> str | None:
    match = _CAST_TYPE.match(RawStream()(node))
    return match.group(1) if match else None


def _collect(node, parent, side: str, out: dict[int, ParamContext]) -> None:
    """Walk the tree with each node's parent and which side of it the node is on."""
    if isinstance(node, tuple):
        for item in node:
            _collect(item, parent, side, out)
        return
    if not isinstance(node, ast.Node):
        return
    if isinstance(node, ast.ParamRef):
        if node.number is not None:
            _note(node.number, parent, side, out)
        return
    if isinstance(node, ast.TypeCast) and isinstance(node.arg, ast.ParamRef):
        if (n := node.arg.number) is not None:
            found = out.get(n, ParamContext(n))
            out[n] = ParamContext(n, found.cast or _cast_type(node), found.role)
            _note(n, parent, side, out)
        return
    for name in _slots_of(type(node)):
        _collect(getattr(node, name, None), node, name, out)


def _note(n: int, parent, side: str, out: dict[int, ParamContext]) -> None:
    role = ""
    if (
        isinstance(parent, ast.FuncCall)
        and _funcname(parent) in ("extract", "date_part")
        and side == "args"
        and parent.args
        and _param_number(parent.args[0]) == n
    ):
        role = "field"
    elif _is_arith(parent):
        op = _op(parent)
        if op in ("+", "-"):
            role = "offset" if side == "rexpr" and parent.lexpr is not None else "operand"
        else:
            role = "factor"
    found = out.get(n, ParamContext(n))
    out[n] = ParamContext(n, found.cast, found.role or role)


def _param_number(node) -> int | None:
    while isinstance(node, ast.TypeCast):
        node = node.arg
    return node.number if isinstance(node, ast.ParamRef) else None
