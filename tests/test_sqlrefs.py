"""What a statement refers to: tables, filtered/joined/sorted columns, and what each $n stands for (pure)."""

from __future__ import annotations

from kit.sqltext.refs import Relation, Slot, references


def test_select_with_join_and_every_kind_of_comparison():
    refs = references(
        "SELECT a.x FROM s.t a JOIN u ON u.id = a.uid WHERE a.k = $1 AND u.s IN ($2, $3) "
        "AND a.d BETWEEN $4 AND $5 AND a.n LIKE $6 AND a.z = ANY($7) AND a.q > $8::int "
        "ORDER BY a.c DESC LIMIT $9 OFFSET $10")
    assert refs.kind == "select" and refs.nparams == 10
    assert refs.relations == (Relation("s", "t", "a"), Relation(None, "u", "u"))
    assert refs.relation("a").qualified == "s.t" and refs.relation(None) is None
    assert refs.slots == (
        Slot(1, "a", "k", "="), Slot(2, "u", "s", "in"), Slot(3, "u", "s", "in"),
        Slot(4, "a", "d", "between_lo"), Slot(5, "a", "d", "between_hi"), Slot(6, "a", "n", "like"),
        Slot(7, "a", "z", "any", array=True), Slot(8, "a", "q", ">"), Slot(9, None, None, "limit"),
        Slot(10, None, None, "offset"))
    uses = {(c.qualifier, c.column, c.role) for c in refs.columns}
    assert {("u", "id", "join"), ("a", "uid", "join"), ("a", "k", "where"), ("a", "c", "order")} <= uses


def test_writes_name_their_target_and_the_columns_their_parameters_fill():
    ins = references("INSERT INTO s.t (a, b) VALUES ($1, $2)")
    assert (ins.kind, ins.target, ins.slots) == (
        "insert", Relation("s", "t", "t"), (Slot(1, "t", "a", "values"), Slot(2, "t", "b", "values")))
    upd = references("UPDATE t SET a = $1 WHERE id = $2")
    assert upd.slots == (Slot(1, "t", "a", "set"), Slot(2, None, "id", "="))
    assert upd.relation(None) == Relation(None, "t", "t")
    dele = references("DELETE FROM t USING u WHERE t.x = u.y AND u.z = $1")
    assert dele.target.name == "t" and [r.name for r in dele.relations] == ["t", "u"]
    assert dele.slots == (Slot(1, "u", "z", "="),)


def test_unreadable_or_several_statements_give_none_and_unmapped_parameters_still_count():
    assert references("SELEC 1") is None
    assert references("SELECT 1; SELECT 2") is None
    refs = references("SELECT $1::int + 1, coalesce($2, 0) FROM t WHERE x = lower($3)")
    assert refs.nparams == 3 and refs.slots == ()


def _tables(refs, use):
    """The first level's tables a use may belong to, as qualified names (what a caller with the catalog sees)."""
    levels = refs.levels(use)
    return [r.qualified for r in levels[0]] if levels else []


def test_exists_and_correlated_subqueries_are_read_with_their_own_scope():
    # TPC-H q4: the EXISTS subquery joins lineitem to the outer orders
    refs = references("SELECT o_orderpriority, count(*) FROM orders WHERE o_orderdate >= $1 AND EXISTS "
                      "(SELECT * FROM lineitem WHERE l_orderkey = o_orderkey AND l_commitdate < l_receiptdate) "
                      "GROUP BY o_orderpriority")
    assert [r.name for r in refs.relations] == ["orders", "lineitem"]
    joined = [c for c in refs.columns if c.role == "join"]
    assert [(c.qualifier, c.column) for c in joined] == [(None, "l_orderkey"), (None, "o_orderkey"),
                                                         (None, "l_commitdate"), (None, "l_receiptdate")]
    # unqualified in the subquery: its own FROM first, then the outer level (a correlated reference)
    assert [[r.name for r in level] for level in refs.levels(joined[1])] == [["lineitem"], ["orders"]]
    assert refs.slots == (Slot(1, None, "o_orderdate", ">="),)


def test_an_alias_resolves_to_its_own_level_before_the_outer_one():
    refs = references("SELECT 1 FROM orders x WHERE x.a = $1 AND x.b IN (SELECT x.c FROM lineitem x WHERE x.d = $2)")
    by_number = {s.number: s for s in refs.slots}
    assert _tables(refs, by_number[1]) == ["orders"] and _tables(refs, by_number[2]) == ["lineitem"]
    assert refs.relation("x").name == "orders"  # the flat lookup keeps its old answer
    inner = next(c for c in refs.columns if c.column == "b")
    assert (inner.op, _tables(refs, inner)) == ("in", ["orders"])  # x.b IN (SELECT ...): a semi-join on b


def test_derived_tables_ctes_and_scalar_subqueries_in_having_and_select_list():
    # TPC-H q13: a derived table with a column list, the join inside it
    q13 = references("SELECT c_count, count(*) FROM (SELECT c_custkey, count(o_orderkey) FROM customer "
                     "LEFT OUTER JOIN orders ON c_custkey = o_custkey AND o_comment NOT LIKE $1 GROUP BY c_custkey) "
                     "AS c_orders (c_custkey, c_count) GROUP BY c_count ORDER BY c_count")
    assert [r.name for r in q13.relations] == ["customer", "orders"]
    assert {(c.column, c.role) for c in q13.columns} >= {("c_custkey", "join"), ("o_custkey", "join"),
                                                         ("o_comment", "join")}
    assert q13.slots == (Slot(1, None, "o_comment", "like"),)
    order = next(c for c in q13.columns if c.role == "order")
    assert q13.levels(order) == ()  # c_count is the derived table's column, not a table's
    # TPC-H q15: a CTE is no table, even when it is joined; its own query is read
    q15 = references("WITH revenue0 (supplier_no, total) AS (SELECT l_suppkey, sum(l_extendedprice) FROM lineitem "
                     "WHERE l_shipdate >= $1 GROUP BY l_suppkey) SELECT s_suppkey FROM supplier, revenue0 r "
                     "WHERE s_suppkey = supplier_no AND total = (SELECT max(total) FROM revenue0) ORDER BY r.total")
    assert [r.name for r in q15.relations] == ["lineitem", "supplier"]
    assert q15.slot(1).column == "l_shipdate" and _tables(q15, q15.slot(1)) == ["lineitem"]
    supplier_no = next(c for c in q15.columns if c.column == "supplier_no")
    assert q15.levels(supplier_no) == ()
    assert q15.levels(next(c for c in q15.columns if c.qualifier == "r")) == ()
    # a scalar subquery in HAVING and in the select list
    q11 = references("SELECT k, sum(v) FROM t GROUP BY k HAVING sum(v) > (SELECT sum(v) * $2 FROM u WHERE u.n = $1)"
                     " ORDER BY 2")
    assert [r.name for r in q11.relations] == ["t", "u"] and q11.slots == (Slot(1, "u", "n", "="),)
    sel = references("SELECT (SELECT max(b) FROM u WHERE u.k = t.k AND u.z = $1) FROM t")
    assert {(c.qualifier, c.column, c.op) for c in sel.columns} == {("u", "k", "join"), ("t", "k", "join"),
                                                                   ("u", "z", "=")}


def test_union_branches_and_params_through_arithmetic_and_typed_literals():
    refs = references("SELECT a FROM t WHERE d >= date $1 AND d < date $2 + interval $3 month "
                      "UNION ALL SELECT b FROM u WHERE q BETWEEN $4 - $5 AND $6 + $7 AND $8 < r LIMIT $9")
    assert [r.name for r in refs.relations] == ["t", "u"]
    assert refs.slots == (Slot(1, None, "d", ">="), Slot(2, None, "d", "<"), Slot(4, None, "q", "between_lo"),
                          Slot(6, None, "q", "between_hi"), Slot(8, None, "r", ">"), Slot(9, None, None, "limit"))
    assert refs.nparams == 9  # $3, $5, $7 move the bound: no column says what they are


def test_tpch_q17_and_q21_find_the_columns_an_index_would_serve():
    q17 = references("SELECT sum(l_extendedprice) / $1 FROM lineitem, part WHERE p_partkey = l_partkey AND "
                     "p_brand = $2 AND l_quantity < (SELECT $4 * avg(l_quantity) FROM lineitem WHERE l_partkey = p_partkey)")
    assert [r.name for r in q17.relations] == ["lineitem", "part"]  # once, though read at two levels
    inner = [c for c in q17.columns if c.column == "l_partkey"]
    assert len(inner) == 2 and [r.name for r in q17.levels(inner[1])[0]] == ["lineitem"]
    q21 = references("SELECT s_name FROM supplier, lineitem l1 WHERE s_suppkey = l1.l_suppkey AND NOT EXISTS "
                     "(SELECT * FROM lineitem l3 WHERE l3.l_orderkey = l1.l_orderkey AND l3.l_suppkey <> l1.l_suppkey)")
    assert [r.alias for r in q21.relations] == ["supplier", "l1", "l3"]
    l3 = next(c for c in q21.columns if c.qualifier == "l3" and c.column == "l_orderkey")
    assert q21.levels(l3) == ((Relation(None, "lineitem", "l3"),),)
