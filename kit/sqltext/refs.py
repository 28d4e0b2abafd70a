"""What a statement refers to: its tables, the columns it filters, joins and sorts on, and what
each ``$n`` parameter stands for — compared with a column, a LIMIT, a value written into a
column (pure; pglast, the parser of PostgreSQL itself).

Every query level is read: subqueries in WHERE, HAVING and the select list (EXISTS, IN, scalar,
correlated), derived tables (``FROM (SELECT ...) x``), CTEs (``WITH``) and each branch of a UNION.
Each level has its own scope: an alias or an unqualified column resolves to that level's FROM
first, then to the levels around it (a correlated reference), as PostgreSQL resolves it. A CTE, a
derived table or a set-returning function is not a table: it is in the scope (so a column of it is
never taken for a table's) but never in :attr:`References.relations`.

The what-if advisor tries indexes on the columns; parameter sampling draws values for each
``$n`` from the column it is compared with (also through arithmetic: in ``d < $2 + $3`` the
leading ``$2`` stands for a value of ``d``). A statement the parser rejects, or several
statements in one text, give ``None``: the caller says it cannot read it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pglast import ast, parse_sql
from pglast.enums import A_Expr_Kind, SubLinkType
from pglast.parser import ParseError

# The operators that make a column a candidate for a btree index, and a parameter a value of it.
_RANGE_OPS = {"=", "<", ">", "<=", ">=", "~~", "~~*", "<>", "!="}
_BETWEEN = {
    A_Expr_Kind.AEXPR_BETWEEN,
    A_Expr_Kind.AEXPR_NOT_BETWEEN,
    A_Expr_Kind.AEXPR_BETWEEN_SYM,
    A_Expr_Kind.AEXPR_NOT_BETWEEN_SYM,
}
TABLE, CTE, SUBQUERY, FUNCTION = "table", "cte", "subquery", "function"


@dataclass(frozen=True)
class Relation:
    """A table named in the statement, under its alias (or its own name); in a scope, also a CTE, a
    derived table or a function in FROM (``kind``), with the columns it gives when they are known."""

    schema: str | None
    name: str
    alias: str
    kind: str = TABLE
    columns: tuple[str, ...] | None = None  # of a CTE / derived table (None: not known, e.g. SELECT *)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


# The relations a column reference can see, innermost query level first (each level: its FROM).
Scope = tuple[tuple[Relation, ...], ...]


@dataclass(frozen=True)
class ColumnUse:
    qualifier: str | None  # alias or table name as written, None when unqualified
    column: str
    role: str  # "where" | "join" | "order"
    op: str  # "=", "<", "any", "in", "like", "between", "null", "join", "order"
    scope: Scope = field(default=(), compare=False, repr=False)  # where it can resolve (see References.levels)


@dataclass(frozen=True)
class Slot:
    """What one ``$n`` stands for."""

    number: int
    qualifier: str | None
    column: str | None  # None: not tied to a column (a LIMIT, an expression)
    op: str  # as in ColumnUse, or "limit" | "offset" | "set" | "values" | "between_lo" | "between_hi"
    array: bool = False  # ``col = ANY($n)``: the parameter is an array of values
    scope: Scope = field(default=(), compare=False, repr=False)


@dataclass(frozen=True)
class References:
    kind: str  # "select" | "insert" | "update" | "delete" | "other"
    relations: tuple[Relation, ...]  # the tables of every query level, each (schema, name, alias) once
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

    def levels(self, use: ColumnUse | Slot) -> tuple[tuple[Relation, ...], ...]:
        """The tables a column use (or a slot's column) may belong to, level by level, innermost
        first: the caller takes the first level where exactly one table has the column. A qualified
        use gives the one table its alias names at the nearest level (none when that is a CTE or a
        derived table); an unqualified one stops at a level where a CTE or derived table has it."""
        if not use.scope:  # built by hand: the statement's relations as one level
            if use.qualifier is None:
                return (self.relations,)
            rel = self.relation(use.qualifier)
            return ((rel,),) if rel else ()
        if use.qualifier is not None:
            for level in use.scope:
                named = next((r for r in level if r.alias == use.qualifier), None)
                if named is not None:
                    return ((named,),) if named.kind == TABLE else ()
            return ()
        out = []
        for level in use.scope:
            if any(r.kind != TABLE and r.columns is not None and use.column in r.columns for r in level):
                break
            out.append(tuple(r for r in level if r.kind == TABLE))
        return tuple(out)


_WORD = re.compile(r"^(?:\s+|--[^\n]*\n|/\*.*?\*/)*([A-Za-z]+)", re.S)
# Transaction control and session settings: real time spent, nothing an index or ANALYZE changes.
CONTROL = {
    "begin",
    "commit",
    "rollback",
    "end",
    "start",
    "savepoint",
    "release",
    "set",
    "reset",
    "show",
    "discard",
    "deallocate",
    "listen",
    "unlisten",
    "notify",
    "abort",
}
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
    return References(
        kind=_KINDS.get(type(stmt), "other"),
        relations=tuple(dict.fromkeys(walk.relations)),
        target=walk.target,
        columns=tuple(walk.columns),
        slots=tuple(walk.slots),
        nparams=walk.max_param,
    )


def _column(node) -> tuple[str | None, str] | None:
    """(qualifier, column) of a column reference, looking through casts."""
    while isinstance(node, ast.TypeCast):
        node = node.arg
    if not isinstance(node, ast.ColumnRef):
        return None
    fields = node.fields or ()
    names = [f.sval for f in fields if isinstance(f, ast.String) and f.sval is not None]
    if not names or len(names) != len(fields):  # a star
        return None
    return (names[-2] if len(names) > 1 else None, names[-1])


def _name(value: str | None) -> str:
    """A name the grammar always gives (a table's, an alias's), which pglast's stubs type optional."""
    if value is None:
        raise ValueError("pglast gave a table or alias without its name")
    return value


def _param(node) -> int | None:
    while isinstance(node, ast.TypeCast):
        node = node.arg
    return node.number if isinstance(node, ast.ParamRef) else None


def _lead(node) -> int | None:
    """The parameter that stands for a value of what an expression is compared with: the parameter
    itself, or the leading one of a sum or difference of parameters (``$2 + $3``: ``$2``; the ``$3``
    it is moved by says nothing about the column)."""
    while isinstance(node, ast.TypeCast):
        node = node.arg
    if isinstance(node, ast.ParamRef):
        return node.number
    if (
        isinstance(node, ast.A_Expr)
        and node.kind == A_Expr_Kind.AEXPR_OP
        and _op_name(node) in ("+", "-")
        and node.lexpr is not None
        and not _has_column(node)
    ):
        return _lead(node.lexpr)
    return None


def _has_column(node) -> bool:
    if isinstance(node, ast.ColumnRef):
        return True
    if isinstance(node, tuple):
        return any(_has_column(n) for n in node)
    if not isinstance(node, ast.Node) or isinstance(node, (ast.SubLink, ast.SelectStmt)):
        return False
    return any(_has_column(getattr(node, name, None)) for name in _slots_of(type(node)))


def _op_name(node: ast.A_Expr) -> str:
    names = node.name or ()
    return getattr(names[-1], "sval", "") if names else ""


def _output_columns(stmt) -> tuple[str, ...] | None:
    """The column names a SELECT gives (None when a star hides them)."""
    while isinstance(stmt, ast.SelectStmt) and stmt.op and stmt.larg is not None:
        stmt = stmt.larg
    if not isinstance(stmt, ast.SelectStmt):
        return None
    if values := stmt.valuesLists:
        return tuple(f"column{i + 1}" for i in range(len(values[0])))
    names = []
    for res in stmt.targetList or ():
        if res.name:
            names.append(res.name)
        elif isinstance(res.val, ast.ColumnRef):
            last = res.val.fields[-1] if res.val.fields else None
            if not isinstance(last, ast.String):
                return None  # t.* or *
            names.append(last.sval)
        else:
            names.append("?column?")
    return tuple(names)


class _Level:
    """One query level: its FROM (tables, CTEs, derived tables), the CTE names it can see, its parent."""

    def __init__(self, parent: _Level | None, ctes: dict[str, tuple[str, ...] | None] | None = None) -> None:
        self.parent = parent
        self.entries: list[Relation] = []
        self.ctes: dict[str, tuple[str, ...] | None] = dict(parent.ctes) if parent else {}
        self.ctes.update(ctes or {})

    def scope(self) -> Scope:
        out: list[tuple[Relation, ...]] = []
        level: _Level | None = self
        while level is not None:
            out.append(tuple(level.entries))
            level = level.parent
        return tuple(out)


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
            self._select(stmt, None)
        elif isinstance(stmt, (ast.UpdateStmt, ast.DeleteStmt, ast.InsertStmt)):
            self._write(stmt, _Level(None), top=True)

    def _with(self, clause, level: _Level) -> None:
        """Each CTE is walked as a level of its own; its name becomes visible to what follows."""
        for cte in (clause.ctes if clause else ()) or ():
            query = cte.ctequery
            cols = tuple(c.sval for c in cte.aliascolnames) if cte.aliascolnames else _output_columns(query)
            if clause.recursive:
                level.ctes[cte.ctename] = cols
            if isinstance(query, ast.SelectStmt):
                self._select(query, level)
            elif isinstance(query, (ast.UpdateStmt, ast.DeleteStmt, ast.InsertStmt)):
                self._write(query, _Level(level), top=False)
            level.ctes[cte.ctename] = cols

    def _write(self, stmt, level: _Level, *, top: bool) -> None:
        self._with(stmt.withClause, level)
        target = self._range(stmt.relation, level)
        if top:
            self.target = target
        if isinstance(stmt, ast.UpdateStmt):
            for item in stmt.fromClause or ():
                self._from(item, level)
            for res in stmt.targetList or ():
                if (n := _param(res.val)) is not None and res.name:
                    self.slots.append(Slot(n, target.alias, res.name, "set", scope=level.scope()))
                self._sublinks(res.val, level)
            self._where(stmt.whereClause, "where", level)
        elif isinstance(stmt, ast.DeleteStmt):
            for item in stmt.usingClause or ():
                self._from(item, level)
            self._where(stmt.whereClause, "where", level)
        else:
            cols = [c.name for c in stmt.cols or ()]
            select = stmt.selectStmt
            if isinstance(select, ast.SelectStmt) and select.valuesLists:
                for row in select.valuesLists:
                    for i, value in enumerate(row):
                        if (n := _param(value)) is not None and i < len(cols):
                            self.slots.append(Slot(n, target.alias, cols[i], "values", scope=level.scope()))
                        self._sublinks(value, _Level(None, level.ctes))
            elif isinstance(select, ast.SelectStmt):
                self._select(select, _Level(None, level.ctes))  # the SELECT does not see the target

    def _select(
        self, stmt: ast.SelectStmt, parent: _Level | None, ctes: dict[str, tuple[str, ...] | None] | None = None
    ) -> None:
        """One query level (``parent``: the level around it, for correlated references)."""
        level = _Level(parent, ctes)
        self._with(stmt.withClause, level)
        if stmt.op and stmt.larg is not None:  # UNION / INTERSECT / EXCEPT: each branch a level
            self._select(stmt.larg, level)
            if stmt.rarg is not None:
                self._select(stmt.rarg, level)
            self._limits(stmt, level)
            return
        for item in stmt.fromClause or ():
            self._from(item, level)
        self._where(stmt.whereClause, "where", level)
        for part in (stmt.targetList, stmt.havingClause, stmt.groupClause):
            self._sublinks(part, level)
        for sort in stmt.sortClause or ():
            if (col := _column(sort.node)) is not None:
                self._use(level, *col, "order", "order")
        self._limits(stmt, level)

    def _limits(self, stmt: ast.SelectStmt, level: _Level) -> None:
        for part, op in ((stmt.limitCount, "limit"), (stmt.limitOffset, "offset")):
            if (n := _param(part)) is not None:
                self.slots.append(Slot(n, None, None, op, scope=level.scope()))

    def _range(self, rv: ast.RangeVar, level: _Level) -> Relation:
        name = _name(rv.relname)
        alias = _name(rv.alias.aliasname) if rv.alias else name
        if rv.schemaname is None and name in level.ctes:  # a CTE, not a table
            cols = level.ctes[name]
            if rv.alias and rv.alias.colnames:
                cols = tuple(c.sval for c in rv.alias.colnames)
            rel = Relation(None, name, alias, CTE, cols)
        else:
            rel = Relation(rv.schemaname, name, alias)
            self.relations.append(rel)
        level.entries.append(rel)
        return rel

    def _from(self, item, level: _Level) -> None:
        if isinstance(item, ast.RangeVar):
            self._range(item, level)
        elif isinstance(item, ast.JoinExpr):
            self._from(item.larg, level)
            self._from(item.rarg, level)
            self._where(item.quals, "join", level)
        elif isinstance(item, ast.RangeSubselect) and isinstance(item.subquery, ast.SelectStmt):
            # a derived table sees the levels around this one (and, LATERAL, this one's FROM so far)
            self._select(item.subquery, level if item.lateral else level.parent, level.ctes)
            if item.alias is not None:
                cols = tuple(c.sval for c in item.alias.colnames) if item.alias.colnames else None
                name = _name(item.alias.aliasname)
                level.entries.append(Relation(None, name, name, SUBQUERY, cols or _output_columns(item.subquery)))
        elif isinstance(item, ast.RangeFunction) and item.alias is not None:
            cols = tuple(c.sval for c in item.alias.colnames) if item.alias.colnames else None
            name = _name(item.alias.aliasname)
            level.entries.append(Relation(None, name, name, FUNCTION, cols or (name,)))

    # -- expressions
    def _use(self, level: _Level, qualifier: str | None, column: str, role: str, op: str) -> None:
        self.columns.append(ColumnUse(qualifier, column, role, op, scope=level.scope()))

    def _slot(self, level: _Level, number: int, col: tuple[str | None, str], op: str, *, array=False) -> None:
        self.slots.append(Slot(number, *col, op, array=array, scope=level.scope()))

    def _where(self, node, role: str, level: _Level) -> None:
        self._conditions(node, role, level)
        self._sublinks(node, level)

    def _conditions(self, node, role: str, level: _Level) -> None:
        if node is None:
            return
        if isinstance(node, ast.BoolExpr):
            for arg in node.args or ():
                self._conditions(arg, role, level)
        elif isinstance(node, ast.A_Expr):
            self._compare(node, role, level)
        elif isinstance(node, ast.NullTest) and (col := _column(node.arg)) is not None:
            self._use(level, *col, role, "null")
        elif (
            isinstance(node, ast.SubLink)
            and node.subLinkType == SubLinkType.ANY_SUBLINK
            and (col := _column(node.testexpr)) is not None
        ):
            self._use(level, *col, role, "in")  # col IN (SELECT ...): a semi-join on col

    def _sublinks(self, node, level: _Level) -> None:
        """Walk every subquery inside an expression as a level of its own (correlated: it sees ``level``)."""
        if isinstance(node, tuple):
            for item in node:
                self._sublinks(item, level)
            return
        if not isinstance(node, ast.Node):
            return
        if isinstance(node, ast.SubLink):
            self._sublinks(node.testexpr, level)
            if isinstance(node.subselect, ast.SelectStmt):
                self._select(node.subselect, level)
            return
        for name in _slots_of(type(node)):
            self._sublinks(getattr(node, name, None), level)

    def _compare(self, node: ast.A_Expr, role: str, level: _Level) -> None:
        kind, op = node.kind, _op_name(node)
        if kind == A_Expr_Kind.AEXPR_IN:
            if (col := _column(node.lexpr)) is None:
                return
            self._use(level, *col, role, "in")
            for value in node.rexpr or ():
                if (n := _param(value)) is not None:
                    self._slot(level, n, col, "in")
        elif kind in _BETWEEN:
            if (col := _column(node.lexpr)) is None:
                return
            self._use(level, *col, role, "between")
            for value, side in zip(node.rexpr or (), ("between_lo", "between_hi"), strict=False):
                if (n := _lead(value)) is not None:
                    self._slot(level, n, col, side)
        elif kind in (
            A_Expr_Kind.AEXPR_OP_ANY,
            A_Expr_Kind.AEXPR_OP,
            A_Expr_Kind.AEXPR_LIKE,
            A_Expr_Kind.AEXPR_ILIKE,
            A_Expr_Kind.AEXPR_DISTINCT,
            A_Expr_Kind.AEXPR_NOT_DISTINCT,
        ):
            self._binary(node, role, kind, op, level)

    def _binary(self, node: ast.A_Expr, role: str, kind, op: str, level: _Level) -> None:
        left, right = _column(node.lexpr), _column(node.rexpr)
        if left and right:  # a join condition, wherever it is written
            self._use(level, *left, "join", "join")
            self._use(level, *right, "join", "join")
            return
        if kind == A_Expr_Kind.AEXPR_OP and op not in _RANGE_OPS:
            return
        for col, other in ((left, node.rexpr), (right, node.lexpr)):
            if col is None:
                continue
            label = (
                "any"
                if kind == A_Expr_Kind.AEXPR_OP_ANY
                else "like"
                if kind in (A_Expr_Kind.AEXPR_LIKE, A_Expr_Kind.AEXPR_ILIKE) or op in ("~~", "~~*")
                else op
            )
            if col is right and label in _FLIPPED:  # $1 < col: the parameter is col's lower bound
                label = _FLIPPED[label]
            self._use(level, *col, role, label)
            n = _param(other) if kind == A_Expr_Kind.AEXPR_OP_ANY else _lead(other)
            if n is not None:
                self._slot(level, n, col, label, array=kind == A_Expr_Kind.AEXPR_OP_ANY)

    def _count_params(self, node) -> None:
        """The highest $n anywhere in the statement (also where no column says what it is)."""
        if isinstance(node, tuple):
            for item in node:
                self._count_params(item)
            return
        if not isinstance(node, ast.Node):
            return
        if isinstance(node, ast.ParamRef):
            self.max_param = max(self.max_param, node.number or 0)
            return
        for name in _slots_of(type(node)):
            self._count_params(getattr(node, name, None))


_FLIPPED = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}


def _slots_of(cls: type) -> tuple[str, ...]:
    out: list[str] = []
    for klass in cls.__mro__:
        out.extend(s for s in getattr(klass, "__slots__", ()) if s != "location")
    return tuple(out)
