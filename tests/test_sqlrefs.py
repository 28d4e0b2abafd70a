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
