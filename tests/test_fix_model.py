"""A fix carries its index as an object from the plan to the apply; one read back from a reviewed plan
(fixes.json / loop.json keep only the text) parses its definition into the same object (pure)."""

from __future__ import annotations

import pytest

from kit.fixes.model import ANALYZE, CREATE, DROP, Fix
from kit.indexes.spec import parse_index_sql, parse_indexdef

CREATE_SQL = 'CREATE INDEX CONCURRENTLY IF NOT EXISTS kit_order_x_idx ON "Sales Ops"."Order" ("customer id", placed_at)'
DROP_DEF = 'CREATE INDEX "Order_sku_idx" ON "Sales Ops"."Order" USING btree (sku)'


def _fix(kind, definition, **more) -> Fix:
    return Fix(
        kind=kind,
        sql="",
        target_table="Sales Ops.Order",
        statements=("1",),
        why="",
        expect="",
        source="advisor",
        index_def=definition,
        **more,
    )


def test_a_fix_read_back_parses_its_definition_into_the_planned_object():
    planned = parse_index_sql(CREATE_SQL, source="kit")[0]
    assert _fix(CREATE, CREATE_SQL).index_spec() == planned
    assert _fix(CREATE, CREATE_SQL, spec=planned).index_spec() is planned
    assert (planned.schema, planned.table, planned.columns) == ("Sales Ops", "Order", ("customer id", "placed_at"))


def test_a_drop_is_about_the_index_as_it_exists():
    existing = parse_indexdef(DROP_DEF)
    assert _fix(DROP, DROP_DEF).index_spec() == existing
    assert (existing.name, existing.columns) == ("Order_sku_idx", ("sku",))


def test_the_object_is_not_part_of_a_fix_equality_or_its_record():
    planned = parse_index_sql(CREATE_SQL, source="kit")[0]
    assert _fix(CREATE, CREATE_SQL, spec=planned) == _fix(CREATE, CREATE_SQL)
    assert "spec" not in _fix(CREATE, CREATE_SQL, spec=planned).to_record()


def test_an_analyze_has_no_index():
    with pytest.raises(ValueError, match="analyze fix on Sales Ops.Order has no index definition"):
        _fix(ANALYZE, None).index_spec()
