"""INVALID indexes left by interrupted concurrent builds: the kit's are dropped before the next apply
plans (which then uses the name again), listed by a dry run and dropped by fixes.sql only while still
INVALID; anyone else's are reported, never dropped; an index being built is no leftover (real servers,
real failed builds)."""

from __future__ import annotations

import subprocess

import psycopg
import pytest
from sqlalchemy import text

from kit.config import libpq_url
from kit.fixes import CREATE, KEPT, PLANNED, run_loop
from kit.fixes.leftovers import judge, kit_named
from kit.fixes.plan import index_name
from kit.indexes.apply import MARKER
from kit.workload import read_workload

ITEMS_IDX = "kit_order_items_order_id_idx"  # the name the loop gives its index on order_items (order_id)


def _dsn(engine) -> str:
    return libpq_url(engine.url.render_as_string(hide_password=False))


def _left_invalid(waiting_build, dsn: str, stmt: str, comment: str | None = None) -> None:
    """A real leftover: a concurrent build terminated while it waits for an old snapshot leaves its index
    INVALID; ``comment`` put on it after."""
    waiting_build(dsn, stmt).fail()
    if comment is not None:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f"COMMENT ON INDEX {stmt.split(' CONCURRENTLY ')[1].split()[0]} IS '{comment}'")


def _indexes(engine) -> dict[str, bool]:
    """{name: valid} of the shop's indexes."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT c.relname, x.indisvalid FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid "
                                 "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'"))
        return dict(rows.all())


def test_the_names_the_kit_gives_and_how_it_judges_an_invalid_index():
    assert kit_named(ITEMS_IDX, "order_items", ("order_id",))
    assert kit_named(ITEMS_IDX + "_2", "order_items", ("order_id",)) and kit_named(ITEMS_IDX + "_12", "order_items",
                                                                                   ("order_id",))
    assert not kit_named(ITEMS_IDX + "_1", "order_items", ("order_id",))  # the suffixes start at 2
    assert not kit_named(ITEMS_IDX, "order_items", ("order_id", "qty")) and not kit_named("kit_x", "x", ("a",))
    long_table = "t" * 70
    assert kit_named(index_name(long_table, ("a",), set()), long_table, ("a",))  # cut to 63 bytes with a hash
    assert judge("whatever", "t", (), plain=False, comment=f"{MARKER} 2026-12-06T00:00:00Z") == (
        True, "the kit's marker is on it")
    assert judge(ITEMS_IDX, "order_items", ("order_id",), plain=True, comment=None)[0] is True
    assert judge(ITEMS_IDX, "order_items", ("order_id",), plain=True, comment="the team's")[0] is False
    assert judge(ITEMS_IDX, "order_items", ("order_id",), plain=False, comment=None)[0] is False  # a partial one
    assert judge("order_items_x", "order_items", ("order_id",), plain=True, comment=None) == (
        False, "not the kit's (no marker)")


def test_the_next_apply_drops_the_kits_leftover_and_uses_its_name_again(shop_engine, tmp_path, waiting_build):
    _left_invalid(waiting_build, _dsn(shop_engine), f"CREATE INDEX CONCURRENTLY {ITEMS_IDX} ON public.order_items (order_id)")
    assert _indexes(shop_engine)[ITEMS_IDX] is False
    lines: list[str] = []
    result = run_loop(shop_engine, read_workload(shop_engine), apply=True, repeats=3, out=lines.append)
    (left,) = result.leftovers
    assert (left.qualified, left.kit, left.action) == (f"public.{ITEMS_IDX}", True, "dropped")
    assert left.why == "named as the kit names its index on order_items (order_id): a build that ended before its marker"
    assert lines[0] == f"dropped INVALID leftover public.{ITEMS_IDX} ({left.why})"
    items = next(f for f in result.fixes if f.kind == CREATE and f.target_table == "public.order_items")
    assert (items.index_name, items.verdict) == (ITEMS_IDX, KEPT)  # the name again, not ..._idx_2
    live = _indexes(shop_engine)
    assert live[ITEMS_IDX] is True and not [n for n in live if n.startswith(ITEMS_IDX + "_")]
    assert False not in live.values()
    body = result.save(tmp_path)["sql"].read_text()
    assert f"-- L1. public.{ITEMS_IDX} on public.order_items" in body and "--    state: dropped" in body
    leftovers = body[body.index("-- L1."):body.index("-- 1. ")]
    assert "\\gexec" not in leftovers  # dropped already: nothing for psql to do there


def test_an_invalid_index_the_kit_did_not_make_is_reported_and_never_dropped(shop_engine, waiting_build):
    dsn = _dsn(shop_engine)
    _left_invalid(waiting_build, dsn, "CREATE INDEX CONCURRENTLY order_items_manual ON public.order_items (order_id)")
    _left_invalid(waiting_build, dsn,
                  f"CREATE INDEX CONCURRENTLY {ITEMS_IDX} ON public.order_items (order_id, qty)")  # not its shape
    _left_invalid(waiting_build, dsn, "CREATE INDEX CONCURRENTLY order_items_by_product ON public.order_items (product_id, qty)",
                  comment=f"{MARKER} 2026-12-06T00:00:00Z")  # a migration's index the kit was building
    lines: list[str] = []
    result = run_loop(shop_engine, read_workload(shop_engine), apply=True, repeats=2, out=lines.append)
    actions = {f.name: (f.kit, f.action) for f in result.leftovers}
    assert actions == {"order_items_manual": (False, "left: not the kit's"),
                       ITEMS_IDX: (False, "left: not the kit's"), "order_items_by_product": (True, "dropped")}
    live = _indexes(shop_engine)
    assert (live["order_items_manual"], live[ITEMS_IDX], "order_items_by_product" in live) == (False, False, False)
    assert (f"INVALID index public.order_items_manual is not the kit's (no marker): not touched; it slows every "
            "write to order_items — drop it (DROP INDEX CONCURRENTLY) and build it again if it is wanted") in lines


def test_a_dry_run_lists_the_leftover_and_fixes_sql_drops_it_only_while_invalid(shop_engine, tmp_path,
                                                                                waiting_build):
    dsn = _dsn(shop_engine)
    _left_invalid(waiting_build, dsn, f"CREATE INDEX CONCURRENTLY {ITEMS_IDX} ON public.order_items (order_id)")
    lines: list[str] = []
    result = run_loop(shop_engine, read_workload(shop_engine), apply=False, repeats=2, out=lines.append)
    (left,) = result.leftovers
    assert left.action == "would drop" and lines[0].startswith(f"would drop INVALID leftover public.{ITEMS_IDX} (")
    items = next(f for f in result.fixes if f.kind == CREATE and f.target_table == "public.order_items")
    assert (items.index_name, items.verdict) == (ITEMS_IDX, PLANNED)  # to be built under its name once dropped
    assert _indexes(shop_engine)[ITEMS_IDX] is False  # a dry run changes nothing
    path = result.save(tmp_path)["sql"]
    body = path.read_text()
    assert body.index("\\gexec") < body.index(f"IF NOT EXISTS {ITEMS_IDX}")  # dropped before it is built again
    for _ in range(2):  # the second time the index is valid: the guard leaves it
        psql = subprocess.run(["psql", dsn, "-v", "ON_ERROR_STOP=1", "-q", "-f", str(path)], capture_output=True,
                              text=True, timeout=120)
        assert psql.returncode == 0, psql.stderr
        assert _indexes(shop_engine)[ITEMS_IDX] is True


def test_an_index_being_built_is_no_leftover_and_is_left_out_of_a_dry_runs_plan(shop_engine, waiting_build):
    build = waiting_build(_dsn(shop_engine), f"CREATE INDEX CONCURRENTLY {ITEMS_IDX} ON public.order_items (order_id)")
    try:
        result = run_loop(shop_engine, read_workload(shop_engine), apply=False, repeats=2, out=None)
    finally:
        build.release()
    (left,) = result.leftovers
    assert left.action == f"left: a build (session {build.pid}) is working on it now"
    assert not [f for f in result.fixes if f.kind == CREATE and f.target_table == "public.order_items"]
    assert (f"an index on public.order_items (order_id) is being built right now (session {build.pid}): left out of "
            "this plan; plan again once that build has ended") in result.plan.notes
    assert _indexes(shop_engine)[ITEMS_IDX] is True  # that build went on and finished


@pytest.fixture(autouse=True)
def _no_kit_build_left(shop_engine):
    yield
    with psycopg.connect(_dsn(shop_engine), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_stat_progress_create_index").fetchone()[0] == 0
