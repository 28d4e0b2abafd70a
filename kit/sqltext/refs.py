"""What a statement refers to: its tables, the columns it filters, joins and sorts on, and what
each ``$n`` parameter stands for — compared with a column, a LIMIT, a value written into a
column (pure; pglast, the parser of PostgreSQL itself).

The what-if advisor tries indexes on the columns; parameter sampling draws values for each
``$n`` from the column it is compared with. A statement the parser rejects, or several
statements in one text, give ``None``: the caller says it cannot read it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pglast import ast, parse_sql
from pglast.enums import A_Expr_Kind
from pglast.parser import ParseError

# The operators that make a column a candidate for a btree index, and a parameter a value of it.
_RANGE_OPS = {"=", "<", ">", "<=", ">=", "~~", "~~*", "<>", "!="}
_BETWEEN = {A_Expr_Kind.AEXPR_BETWEEN, A_Expr_Kind.AEXPR_NOT_BETWEEN, A_Expr_Kind.AEXPR_BETWEEN_SYM,
            A_Expr_Kind.AEXPR_NOT_BETWEEN_SYM}


@dataclass(frozen=True)
class Relation:
    """A table named in the statement, under its alias (or its own name)."""

    schema: str | None
    name: str
    alias: str

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


@dataclass(frozen=True)
class ColumnUse:
    qualifier: str | None  # alias or table name as written, None when unqualified
    column: str
    role: str  # "where" | "join" | "order"
    op: str  # "=", "<", "any", "in", "like", "between", "null", "join", "order"


@dataclass(frozen=True)
class Slot:
    """What one ``$n`` stands for."""

    number: int
    qualifier: str | None
    column: str | None  # None: not tied to a column (a LIMIT, an expression)
    op: str  # as in ColumnUse, or "limit" | "offset" | "set" | "values" | "between_lo" | "between_hi"
    array: bool = False  # ``col = ANY($n)``: the parameter is an array of values


@dataclass(frozen=True)
class References:
    kind: str  # "select" | "insert" | "update" | "delete" | "other"
    relations: tuple[Relation, ...]
    target: Relation | None  # the table an INSERT/UPDATE/DELETE writes
    columns: tuple[ColumnUse, ...]
    slots: tuple[Slot, ...]
    nparams: int

    def relation(self, qualifier: str | None) -> Relation | None:
        """The relation a qualifier names; for None, the only relation there is (else None)."""
        if qualifier is None:
            return self.relations[0] if len(self.relations) == 1 else None
        return next((r for r in self.relations if r.alias == qualifier), None)

    def slot(self, number: int) -> Slot | None:
        return next((s for s in self.slots if s.number == number), None)


_WORD = re.compile(r"^(?:\s+|--[^\n]*\n|/\*.*?\*/)*([A-Za-z]+)", re.S)
# Transaction control and session settings: real time spent, nothing an index or ANALYZE changes.
CONTROL = {"begin", "commit", "rollback", "end", "start", "savepoint", "release", "set", "reset", "show",
           "discard", "deallocate", "listen", "unlisten", "notify", "abort"}
WRITES = {"insert", "update", "delete", "merge"}


def kind_of(query: str) -> str:
    """The statement's first keyword, lower case (``with`` for a CTE, ``other`` when unreadable)."""
    match = _WORD.match(query or "")
    return match.group(1).lower() if match else "other"


_KINDS = {ast.SelectStmt: "select", ast.InsertStmt: "insert", ast.UpdateStmt: "update", ast.DeleteStmt: "delete"}


def references(query: str) -> References | None:
    """Parse one statement; None when it is not exactly one statement PostgreSQL can parse."""
    try:
        stmts = parse_sql(query)
    except (ParseError, ValueError):
        return None
    if len(stmts) != 1:
        return None
    walk = _Walk()
    stmt = stmts[0].stmt
    walk.statement(stmt)
    return References(kind=_KINDS.get(type(stmt), "other"), relations=tuple(walk.relations),
                      target=walk.target, columns=tuple(walk.columns), slots=tuple(walk.slots),
                      nparams=walk.max_param)


def _column(node) -> tuple[str | None, str] | None:
    """(qualifier, column) of a column reference, looking through casts."""
    while isinstance(node, ast.TypeCast):
        node = node.arg
    if not isinstance(node, ast.ColumnRef):
        return None
    names = [f.sval for f in node.fields if isinstance(f, ast.String)]
    if not names or len(names) != len(node.fields):  # a star
        return None
    return (names[-2] if len(names) > 1 else None, names[-1])


def _param(node) -> int | None:
    while isinstance(node, ast.TypeCast):
        node = node.arg
    return node.number if isinstance(node, ast.ParamRef) else None


def _op_name(node: ast.A_Expr) -> str:
    names = node.name or ()
    return getattr(names[-1], "sval", "") if names else ""


class _Walk:
    def __init__(self) -> None:
        self.relations: list[Relation] = []
        self.target: Relation | None = None
        self.columns: list[ColumnUse] = []
        self.slots: list[Slot] = []
        self.max_param = 0

    # -- statements
    def statement(self, stmt) -> None:
        self._count_params(stmt)
        if isinstance(stmt, ast.SelectStmt):
            self._select(stmt)
        elif isinstance(stmt, ast.UpdateStmt):
            self.target = self._range(stmt.relation)
            for item in stmt.fromClause or ():
                self._from(item)
            for res in stmt.targetList or ():
                if (n := _param(res.val)) is not None and res.name:
                    self.slots.append(Slot(n, self.target.alias, res.name, "set"))
            self._where(stmt.whereClause, "where")
        elif isinstance(stmt, ast.DeleteStmt):
            self.target = self._range(stmt.relation)
            for item in stmt.usingClause or ():
                self._from(item)
            self._where(stmt.whereClause, "where")
        elif isinstance(stmt, ast.InsertStmt):
            self.target = self._range(stmt.relation)
            cols = [c.name for c in stmt.cols or ()]
            select = stmt.selectStmt
            if isinstance(select, ast.SelectStmt) and select.valuesLists:
                for row in select.valuesLists:
                    for i, value in enumerate(row):
                        if (n := _param(value)) is not None and i < len(cols):
                            self.slots.append(Slot(n, self.target.alias, cols[i], "values"))
            elif isinstance(select, ast.SelectStmt):
                self._select(select)

    def _select(self, stmt: ast.SelectStmt) -> None:
        if stmt.op and stmt.larg is not None:  # UNION / INTERSECT / EXCEPT
            self._select(stmt.larg)
            self._select(stmt.rarg)
            return
        for item in stmt.fromClause or ():
            self._from(item)
        self._where(stmt.whereClause, "where")
        for sort in stmt.sortClause or ():
            if (col := _column(sort.node)) is not None:
                self.columns.append(ColumnUse(*col, "order", "order"))
        for part, op in ((stmt.limitCount, "limit"), (stmt.limitOffset, "offset")):
            if (n := _param(part)) is not None:
                self.slots.append(Slot(n, None, None, op))

    def _range(self, rv: ast.RangeVar) -> Relation:
        rel = Relation(rv.schemaname, rv.relname, rv.alias.aliasname if rv.alias else rv.relname)
        self.relations.append(rel)
        return rel

    def _from(self, item) -> None:
        if isinstance(item, ast.RangeVar):
            self._range(item)
        elif isinstance(item, ast.JoinExpr):
            self._from(item.larg)
            self._from(item.rarg)
            self._where(item.quals, "join")

    # -- expressions
    def _where(self, node, role: str) -> None:
        if node is None:
            return
        if isinstance(node, ast.BoolExpr):
            for arg in node.args:
                self._where(arg, role)
        elif isinstance(node, ast.A_Expr):
            self._compare(node, role)
        elif isinstance(node, ast.NullTest) and (col := _column(node.arg)) is not None:
            self.columns.append(ColumnUse(*col, role, "null"))

    def _compare(self, node: ast.A_Expr, role: str) -> None:
        kind, op = node.kind, _op_name(node)
        if kind == A_Expr_Kind.AEXPR_IN:
            if (col := _column(node.lexpr)) is None:
                return
            self.columns.append(ColumnUse(*col, role, "in"))
            for value in node.rexpr or ():
                if (n := _param(value)) is not None:
                    self.slots.append(Slot(n, *col, "in"))
        elif kind in _BETWEEN:
            if (col := _column(node.lexpr)) is None:
                return
            self.columns.append(ColumnUse(*col, role, "between"))
            for value, side in zip(node.rexpr or (), ("between_lo", "between_hi")):
                if (n := _param(value)) is not None:
                    self.slots.append(Slot(n, *col, side))
        elif kind in (A_Expr_Kind.AEXPR_OP_ANY, A_Expr_Kind.AEXPR_OP, A_Expr_Kind.AEXPR_LIKE,
                      A_Expr_Kind.AEXPR_ILIKE, A_Expr_Kind.AEXPR_DISTINCT, A_Expr_Kind.AEXPR_NOT_DISTINCT):
            self._binary(node, role, kind, op)

    def _binary(self, node: ast.A_Expr, role: str, kind, op: str) -> None:
        left, right = _column(node.lexpr), _column(node.rexpr)
        if left and right:  # a join condition, wherever it is written
            self.columns.append(ColumnUse(*left, "join", "join"))
            self.columns.append(ColumnUse(*right, "join", "join"))
            return
        if kind == A_Expr_Kind.AEXPR_OP and op not in _RANGE_OPS:
            return
        for col, other in ((left, node.rexpr), (right, node.lexpr)):
            if col is None:
                continue
            label = "any" if kind == A_Expr_Kind.AEXPR_OP_ANY else "like" if kind in (
                A_Expr_Kind.AEXPR_LIKE, A_Expr_Kind.AEXPR_ILIKE) or op in ("~~", "~~*") else op
            self.columns.append(ColumnUse(*col, role, label))
            if (n := _param(other)) is not None:
                self.slots.append(Slot(n, *col, label, array=kind == A_Expr_Kind.AEXPR_OP_ANY))

    def _count_params(self, node) -> None:
        """The highest $n anywhere in the statement (also where no column says what it is)."""
        if isinstance(node, tuple):
            for item in node:
                self._count_params(item)
            return
        if not isinstance(node, ast.Node):
            return
        if isinstance(node, ast.ParamRef):
            self.max_param = max(self.max_param, node.number)
            return
        for name in _slots_of(type(node)):
            self._count_params(getattr(node, name, None))


def _slots_of(cls: type) -> tuple[str, ...]:
    out: list[str] = []
    for klass in cls.__mro__:
        out.extend(s for s in getattr(klass, "__slots__", ()) if s != "location")
    return tuple(out)
