"""The general loop on a database that is not the platform: the plan, fixes.sql run by psql, the
dry run, apply with keep/revert, the user's own migrations."""

from __future__ import annotations

import json
import subprocess

from sqlalchemy import text

from kit.config import libpq_url
from kit.fixes import (
    ANALYZE,
    CREATE,
    DROP,
    KEPT,
    PLANNED,
    RECORD_KEYS,
    REVERTED,
    Fix,
    apply_fixes,
    declared_specs,
    plan_fixes,
    run_loop,
    sqlfile,
    undo,
)
from kit.fixes.verify import judge
from kit.workload import measure, read_workload, targets_for

ITEMS = "SELECT product_id, qty, price FROM order_items WHERE order_id = $1"
BY_CUSTOMER = "SELECT id, total FROM orders WHERE customer_id = $1 ORDER BY created_at DESC LIMIT $2"


def _indexes(engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'")).all())


def _summary(fixes) -> set[tuple[str, str, str]]:
    return {(f.kind, f.target_table, f.index or "") for f in fixes}


def test_the_plan_finds_each_planted_problem_and_nothing_else(shop_engine, tmp_path):
    work = read_workload(shop_engine)
    plan = plan_fixes(shop_engine, work)
    items = check_planted_problems(plan, work, advisor=True)
    assert items.expect.startswith("planner cost of ") and items.est_bytes > 0
    body = check_fixes_sql_runs_in_psql(shop_engine, tmp_path, plan, work, advisor=True)
    assert f"--    helps {items.statements[0]}: {ITEMS}" in body


ADVISED = (CREATE, "public.orders", "public.kit_orders_tracking_code_idx")  # hypopg's find: the lookup by tracking code


def check_planted_problems(plan, work, *, advisor: bool) -> Fix:
    """Each planted problem found, nothing else; the advisor's index only with hypopg. Returns the
    foreign key's index (the advisor's too, where it runs: one index for both findings)."""
    assert _summary(plan.fixes) == {
        (ANALYZE, "public.payments", ""),
        (CREATE, "public.order_items", "public.kit_order_items_order_id_idx"),
        *([ADVISED] if advisor else []),
        (DROP, "public.products", "public.products_sku_idx")}  # not customers_email_c_idx: another collation
    fixes = {f.kind + f.target_table: f for f in plan.fixes}
    items = fixes[CREATE + "public.order_items"]
    assert items.source == ("advisor + foreign key" if advisor else "foreign key")
    assert items.statements == (work.statements[[s.text for s in work.statements].index(ITEMS)].key,
                                "probe:fk:order_items_order_fk")
    assert "order_items_order_fk (order_id) -> orders has no index on 20,000 rows" in items.why
    drop = fixes[DROP + "public.products"]
    assert drop.why == ("public.products_sku_idx is covered by public.products_sku_key: "
                        "CREATE UNIQUE INDEX products_sku_key ON public.products USING btree (sku)")
    assert fixes[ANALYZE + "public.payments"].why.startswith("statistics stale: ")
    assert [p.key for p in plan.probes] == ["probe:fk:order_items_order_fk", "probe:products_sku_idx"]
    assert drop.statements[-1] == "probe:products_sku_idx"  # a lookup the covering index must serve
    return items


def check_fixes_sql_runs_in_psql(engine, tmp_path, plan, work, *, advisor: bool) -> str:
    """fixes.sql of the dry run, reviewable and run by psql as it is: its indexes built, the duplicate gone."""
    path = sqlfile.write(tmp_path, plan.fixes, target="postgresql://postgres@h:1/shop", mode=sqlfile.DRY,
                         statements={s.key: s.text for s in work.statements})
    body = path.read_text()
    creates = 2 if advisor else 1
    assert body.count("CREATE INDEX CONCURRENTLY IF NOT EXISTS") == creates and "-- Dry run" in body
    assert body.count("\\gexec") == creates  # a leftover INVALID index of the name is dropped first (psql)
    url = libpq_url(engine.url.render_as_string(hide_password=False))
    psql = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-q", "-f", str(path)], capture_output=True,
                          text=True, timeout=120)
    assert psql.returncode == 0, psql.stderr  # reviewable, and runnable as it is
    after = _indexes(engine)
    assert ("kit_orders_tracking_code_idx" in after) is advisor and "kit_order_items_order_id_idx" in after
    assert "products_sku_idx" not in after and "customers_email_c_idx" in after
    return body


def test_a_dry_run_plans_writes_the_files_and_changes_nothing(shop_engine, tmp_path):
    check_dry_run_changes_nothing(shop_engine, tmp_path, planned=4)


def check_dry_run_changes_nothing(engine, tmp_path, *, planned: int):
    """The dry run plans ``planned`` fixes, writes the files, executes no write and changes nothing."""
    before = _indexes(engine)
    result = run_loop(engine, read_workload(engine), apply=False, repeats=2, out=None)
    assert {f.verdict for f in result.fixes} == {PLANNED} and len(result.fixes) == planned
    assert result.figures == {"fixes.planned": planned, "fixes.applied": 0, "fixes.kept": 0, "fixes.reverted": 0,
                              "fixes.failed": 0}
    assert _indexes(engine) == before
    paths = result.save(tmp_path)
    records = json.loads(paths["json"].read_text())
    assert [tuple(r) for r in records] == [RECORD_KEYS] * planned
    frame = result.statements_frame().set_index("key")
    assert frame.loc[frame["query"] == ITEMS, "mode"].iloc[0] == "measured"
    writes = frame[frame["kind"].isin(["update", "insert"])]
    assert set(writes["mode"]) == {"estimated only"}  # a dry run executes no write, even rolled back
    return result


def test_apply_keeps_what_helps_and_the_files_say_so(shop_engine, tmp_path):
    check_apply_keeps_what_helps(shop_engine, tmp_path, created=("public.order_items", "public.orders"))


def check_apply_keeps_what_helps(engine, tmp_path, *, created: tuple[str, ...]):
    """Apply keeps each new index on ``created`` (a speed-up of 2x at least), the drop and ANALYZE."""
    result = run_loop(engine, read_workload(engine), apply=True, repeats=3, out=None)
    by = {(f.kind, f.target_table): f for f in result.fixes}
    assert sorted(table for kind, table in by if kind == CREATE) == sorted(created)
    for table in created:
        fix = by[(CREATE, table)]
        assert fix.verdict == KEPT and fix.speedup >= 2 and fix.reason.startswith("plan uses it; ")
        assert fix.bytes_after > 0
    assert by[(DROP, "public.products")].verdict == KEPT
    assert by[(ANALYZE, "public.payments")].verdict == KEPT
    assert result.figures["fixes.kept"] == len(created) + 2 and result.figures["fixes.applied"] == len(created) + 2
    live = _indexes(engine)
    assert "kit_order_items_order_id_idx" in live and "products_sku_idx" not in live
    body = result.save(tmp_path)["sql"].read_text()
    assert "--    verdict: kept (plan uses it;" in body and "Applied by the kit" in body
    return result


def test_an_index_nobody_uses_and_a_harmful_drop_are_reverted(shop_engine):
    work = read_workload(shop_engine)
    lookup = next(s for s in work.statements if s.text == BY_CUSTOMER)
    url = shop_engine.url.render_as_string(hide_password=False)
    targets = targets_for(url, [lookup])
    useless = Fix(CREATE, "CREATE INDEX CONCURRENTLY IF NOT EXISTS kit_orders_total_idx ON public.orders (total)",
                  "public.orders", (lookup.key,), "test", "test", "test", index="public.kit_orders_total_idx",
                  index_def="CREATE INDEX CONCURRENTLY IF NOT EXISTS kit_orders_total_idx ON public.orders (total)",
                  schema="public", table="orders", index_name="kit_orders_total_idx")
    harmful = Fix(DROP, "DROP INDEX CONCURRENTLY IF EXISTS public.orders_customer_idx", "public.orders",
                  (lookup.key,), "test", "test", "test", index="public.orders_customer_idx",
                  index_def=_indexes(shop_engine)["orders_customer_idx"], schema="public", table="orders",
                  index_name="orders_customer_idx")
    before = measure(url, targets, repeats=5)
    applied = apply_fixes(shop_engine, [useless, harmful], out=None)
    assert "kit_orders_total_idx" in _indexes(shop_engine) and "orders_customer_idx" not in _indexes(shop_engine)
    after = measure(url, targets, repeats=5)
    judged = [judge(f, before, after) for f in applied]
    assert [(f.verdict, f.reason) for f in judged][0] == (REVERTED, f"the planner does not use it on {lookup.key}")
    assert judged[1].verdict == REVERTED and judged[1].reason.startswith(f"{lookup.key} got slower: ")
    assert judged[1].speedup < 1
    assert [undo(shop_engine, f, out=None) for f in judged] == [None, None]
    live = _indexes(shop_engine)
    assert "kit_orders_total_idx" not in live and live["orders_customer_idx"].endswith("(customer_id)")


def test_the_users_own_migrations_are_candidates_and_are_never_dropped(shop_engine, tmp_path):
    (tmp_path / "001_tables.sql").write_text("CREATE TABLE later (id int);\nINSERT INTO later VALUES (1);\n")
    (tmp_path / "002_indexes.sql").write_text(
        "CREATE INDEX order_items_by_order ON order_items (order_id, product_id);\n"
        "CREATE INDEX products_sku_idx ON products (sku);\n")
    declared = declared_specs(shop_engine, tmp_path)
    assert (declared.names, declared.skipped) == ({"order_items_by_order", "products_sku_idx"}, 2)
    plan = plan_fixes(shop_engine, read_workload(shop_engine), declared=declared)
    items = next(f for f in plan.fixes if f.target_table == "public.order_items")
    assert (items.index, items.declared) == ("public.order_items_by_order", True)
    assert items.source == "advisor + foreign key + migration 002_indexes.sql:1"  # the kit's own idea folded in
    assert "probe:order_items_by_order" in items.statements
    assert not any(f.kind == DROP for f in plan.fixes)
    assert any("declared in your migrations" in n for n in plan.notes)
    assert declared_specs(shop_engine, None).specs == ()  # not the platform: no migration unless given
