"""RunResults: the typed hand-over from 01/02 to 03 (files in a folder; no server needed)."""

import pandas as pd
import pytest

from kit.errors import ConfigError
from kit.indexes.verify import VerifyResult
from kit.runs.results import RunResults


def test_fields_round_trip_with_their_types(tmp_path):
    frame = pd.DataFrame({"endpoint": ["list_users", "get_project"], "latency_ms": [12.5, 0.75],
                          "when": pd.to_datetime(["2026-11-30T12:00:00Z", "2026-11-30T12:00:01Z"]).as_unit("ns")})
    verify = VerifyResult(rows=({"name": "idx_a", "used": True, "speedup": 12.0},))
    RunResults(tmp_path).save(load_fixed=frame, pool_pick={"p95_target_ms": 100.0, "recommended_size": 5},
                              indexes_verify=verify)

    later = RunResults(tmp_path)  # a later notebook: read from the folder
    pd.testing.assert_frame_equal(later.load_fixed, frame)
    assert later.pool_pick == {"p95_target_ms": 100.0, "recommended_size": 5}
    assert later.indexes_verify.used == ["idx_a"]
    assert "load_fixed" in later and "load_baseline" not in later


def test_unknown_field_and_wrong_type_are_refused_before_anything_is_written(tmp_path):
    results = RunResults(tmp_path)
    with pytest.raises(TypeError, match="RunResults has no field 'load_fixd'"):
        results.save(load_fixd=pd.DataFrame())
    with pytest.raises(TypeError, match="RunResults.pool_sweep takes a DataFrame, not dict"):
        results.save(load_fixed=pd.DataFrame({"a": [1]}), pool_sweep={"size": 5})
    assert list(tmp_path.iterdir()) == []  # the valid load_fixed of the same call was not written either


def test_reading_a_result_no_notebook_saved_names_the_notebooks_to_run(tmp_path):
    with pytest.raises(ConfigError, match="no result nplus1_naive in .*run 01_audit and 02_apply_fixes first"):
        RunResults(tmp_path).nplus1_naive
    with pytest.raises(AttributeError, match="no field 'nplus_naive'"):
        RunResults(tmp_path).nplus_naive
