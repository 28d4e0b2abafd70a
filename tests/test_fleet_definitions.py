"""The Dagster definitions of a fleet: partitions, jobs, schedule, report sensor, instance config,
and that Dagster's own loader accepts the module (no database needed)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import pytest

from kit.fleet import load
from kit.fleet.definitions import (
    AUDIT_JOB,
    FLEET_TAG,
    REPORT_JOB,
    ROUND_TAG,
    SCHEDULE,
    SENSOR,
    build,
    instance_yaml,
    report_due,
    round_requests,
)

FLEET = """
[fleet]
name = "prod"
concurrency = 2
schedule = "15 3 * * *"

[[targets]]
name = "orders"
url_env = "ORDERS_URL"

[[targets]]
name = "billing"
url_env = "BILLING_URL"

[[targets]]
name = "search"
url_env = "SEARCH_URL"
"""


def _fleet(tmp_path: Path):
    path = tmp_path / "fleet.toml"
    path.write_text(FLEET, encoding="utf-8")
    return load(path)


def test_one_partition_per_target_and_the_jobs(tmp_path):
    defs = build(_fleet(tmp_path))
    audit = defs.resolve_job_def(AUDIT_JOB)
    assert audit.partitions_def.get_partition_keys() == ["orders", "billing", "search"]
    assert audit.tags[FLEET_TAG] == "prod"
    assert defs.resolve_job_def(REPORT_JOB).partitions_def is None
    assert {str(k.to_user_string()) for k in defs.resolve_asset_graph().get_all_asset_keys()} == {
        "target_audit", "fleet_report"}


def test_the_schedule_asks_for_one_run_per_target_tagged_with_the_round(tmp_path):
    defs = build(_fleet(tmp_path))
    schedule = defs.resolve_schedule_def(SCHEDULE)
    assert schedule.cron_schedule == "15 3 * * *"
    tick = datetime(2026, 11, 30, 3, 15, tzinfo=timezone.utc)
    with dg.build_schedule_context(scheduled_execution_time=tick, repository_def=defs.get_repository_def()) as context:
        requests = schedule.evaluate_tick(context).run_requests
    assert [r.partition_key for r in requests] == ["orders", "billing", "search"]
    assert {r.tags[ROUND_TAG] for r in requests} == {tick.isoformat()}
    assert len({r.run_key for r in requests}) == 3  # one run per target per tick, never twice


def test_round_requests_for_some_targets(tmp_path):
    requests = round_requests(_fleet(tmp_path), "r1", ("search",))
    assert [(r.partition_key, r.run_key, r.tags) for r in requests] == [
        ("search", "r1/search", {FLEET_TAG: "prod", ROUND_TAG: "r1"})]


def test_the_report_is_due_once_a_round_has_finished():
    started, success, failure = dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE
    assert report_due([], 0.0) is None  # nothing ran yet
    assert report_due([(success, 10.0), (started, None)], 0.0) is None  # a target still running
    assert report_due([(success, 10.0), (failure, 12.0)], 0.0) == 12.0  # failures count as finished
    assert report_due([(success, 10.0), (failure, 12.0)], 12.0) is None  # already reported


def test_the_report_sensor_on_an_instance_with_a_finished_round(tmp_path):
    fleet = _fleet(tmp_path)
    defs = build(fleet)
    sensor = defs.resolve_sensor_def(SENSOR)
    with dg.instance_for_test() as instance:
        with dg.build_sensor_context(instance=instance, cursor=None) as context:
            assert sensor.evaluate_tick(context).run_requests == []  # no audit ran yet
        # a finished audit run of this fleet (a failing one: the report follows failures too)
        defs.resolve_job_def(AUDIT_JOB).execute_in_process(
            partition_key="orders", instance=instance, raise_on_error=False,
            tags={FLEET_TAG: "prod", ROUND_TAG: "r1"},
            run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}})
        with dg.build_sensor_context(instance=instance, cursor=None) as context:
            result = sensor.evaluate_tick(context)
        assert len(result.run_requests) == 1 and result.cursor is not None
        with dg.build_sensor_context(instance=instance, cursor=result.cursor) as context:
            assert sensor.evaluate_tick(context).run_requests == []  # once per round


def test_the_instance_config_limits_the_fleets_runs(tmp_path):
    (tmp_path / "dagster.yaml").write_text(instance_yaml(_fleet(tmp_path)), encoding="utf-8")
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
    finally:
        instance.dispose()
    assert limits == [{"key": FLEET_TAG, "value": "prod", "limit": 2}]


def test_dagster_loads_the_module_given_the_fleet_file(tmp_path):
    _fleet(tmp_path)
    env = {**os.environ, "KIT_FLEET_FILE": str(tmp_path / "fleet.toml"), "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text("", encoding="utf-8")
    dagster = str(Path(sys.executable).parent / "dagster")
    ok = subprocess.run([dagster, "definitions", "validate", "-m", "kit.fleet.definitions"], env=env,
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "Validation successful for code location kit.fleet.definitions" in ok.stdout + ok.stderr


def test_without_the_fleet_file_variable_the_module_says_what_to_set(monkeypatch):
    from kit.errors import ConfigError
    from kit.fleet import definitions

    monkeypatch.delenv("KIT_FLEET_FILE", raising=False)
    with pytest.raises(ConfigError, match=r"^KIT_FLEET_FILE is not set; export KIT_FLEET_FILE=path/to/fleet.toml"):
        definitions.defs.load_fn()  # what Dagster's loader calls
