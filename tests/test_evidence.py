"""The bundle's typed shape: written and read back as the same JSON, keys kept from schema 1, and a
bundle of another schema refused in one line wherever it is read (pure: files written here, no database)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from kit.cli import main
from kit.errors import ConfigError
from kit.store import history
from kit.store.evidence import (
    BUNDLE_FILE,
    SCHEMA_VERSION,
    Artifact,
    Bundle,
    Finding,
    IndexesSection,
    NotebookEntry,
    PreflightSection,
    StatementsSection,
    Versions,
)

A = "postgresql://u@h:5432/a"
AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SCHEMA_1_KEYS = ["schema", "run", "created_at", "status", "target", "previous_run", "parameters", "versions", "notebooks",
                 "preflight", "statements", "indexes", "findings", "figures", "artifacts", "errors", "derived"]


def _full(run: str = "20260102T030405Z") -> Bundle:
    return Bundle(
        run=run, created_at=AT, status="ok", target=A, previous_run="20260101T000000Z",
        parameters={"scale": "tiny", "database_env": "KIT_DATABASE_URL"},
        versions=Versions(kit="0.9.0", python="3.11.9", packages={"pandas": "2.3.0", "redis": None}, server="15.8"),
        notebooks=(NotebookEntry(name="01_audit.ipynb", status="ok", seconds=4.2, output="01_audit.ipynb",
                                 html="01_audit.html"),),
        preflight=PreflightSection(server_version="15.8", safe_to_apply=False, reasons=("replica",), warnings=(),
                                   statements_reset=None, checks=({"check": "server", "value": "15.8",
                                                                   "verdict": "ok"},)),
        statements=StatementsSection(reset="2026-01-01T00:00:00+00:00", basis="since run 20260101T000000Z",
                                     snapshot=({"queryid": 7, "query": "SELECT 1", "calls": 3, "total_ms": 1.5,
                                                "rows": 3},),
                                     diff=({"queryid": 7, "query": "SELECT 1", "calls": 1, "total_ms": 0.5,
                                            "mean_ms": 0.5, "rows": 1},), calls=1.0, total_ms=0.5),
        indexes=IndexesSection(counts={"applied": 1, "missing": 1}, rows=({"name": "ix_a", "state": "missing"},),
                               declared_by="your migrations db/"),
        findings=(Finding(kind="missing_indexes", subject="ix_a", severity="high"),
                  Finding(kind="n_plus_one", subject="fp-a")),
        figures={"p95_ms": 12.5, "label": "x", "n_plus_one": ["fp-a"]},
        artifacts=(Artifact(name="01_audit.html", kind="html", size=1234),),
        errors={"audit_findings": "permission denied for table t"},
        derived={"findings_total": 2.0, "new_n_plus_one": 0.0},
    )


def _write(folder, content) -> None:
    folder.mkdir(parents=True)
    (folder / BUNDLE_FILE).write_text(json.dumps(content), encoding="utf-8")


def _schema_1(run: str) -> dict:
    """A bundle as the kit wrote it before the bundle was typed (schema 1): the same keys."""
    return {"schema": 1, "run": run, "created_at": "2026-01-01T00:00:00+00:00", "status": "ok", "target": A,
            "previous_run": None, "parameters": {}, "versions": {"kit": "0.8.0", "python": "3.11.9", "packages": {}},
            "notebooks": [{"name": "01_audit.ipynb", "seconds": 1.0, "status": "ok", "output": "01_audit.ipynb",
                           "html": "01_audit.html"}], "preflight": None, "statements": None, "indexes": None,
            "findings": [{"kind": "n_plus_one", "subject": "fp-a", "severity": None, "detail": None}],
            "figures": {"p95_ms": 10.0}, "artifacts": [], "errors": {}, "derived": {"findings_total": 1.0}}


def test_a_bundle_is_written_as_schema_1_keys_and_read_back_equal(tmp_path):
    bundle = _full()
    path = bundle.write(tmp_path)
    content = json.loads(path.read_text())
    assert list(content) == SCHEMA_1_KEYS and content["schema"] == SCHEMA_VERSION == 2
    assert content["created_at"] == "2026-01-02T03:04:05+00:00"
    assert content["artifacts"] == [{"name": "01_audit.html", "kind": "html", "bytes": 1234}]
    assert content["findings"][1] == {"kind": "n_plus_one", "subject": "fp-a", "severity": None, "detail": None}
    assert content["notebooks"] == [{"name": "01_audit.ipynb", "seconds": 4.2, "status": "ok",
                                     "output": "01_audit.ipynb", "html": "01_audit.html"}]
    assert Bundle.load(path) == bundle
    assert Bundle.load(tmp_path) == bundle  # the run folder works as well as its file


def test_a_bundle_without_a_database_has_empty_sections(tmp_path):
    bundle = Bundle(run="r", created_at=AT, status="failed")
    content = json.loads(bundle.write(tmp_path).read_text())
    assert (content["versions"], content["preflight"], content["statements"], content["indexes"]) == (None,) * 4
    assert (content["findings"], content["figures"], content["errors"]) == ([], {}, {})
    assert Bundle.load(tmp_path) == bundle


def test_a_bundle_of_schema_1_is_refused_in_one_line_that_says_what_to_do(tmp_path):
    folder = tmp_path / "runs" / "20260101T000000Z"
    _write(folder, _schema_1(folder.name))
    with pytest.raises(ConfigError) as info:
        history.read_bundle(folder)
    assert str(info.value) == (f"{folder / BUNDLE_FILE} is a bundle of schema 1; this kit reads schema 2 only: "
                               "re-run `kit run` to get a new bundle")
    no_schema = {k: v for k, v in _schema_1(folder.name).items() if k != "schema"}
    (folder / BUNDLE_FILE).write_text(json.dumps(no_schema))
    with pytest.raises(ConfigError, match="is a bundle of no schema number; this kit reads schema 2 only: re-run"):
        Bundle.load(folder)


def test_a_bundle_of_a_newer_kit_says_to_upgrade(tmp_path):
    _write(tmp_path / "r", {**_full().to_json(), "schema": SCHEMA_VERSION + 1})
    with pytest.raises(ConfigError, match=r"is a bundle of schema 3; this kit reads schema 2 only: upgrade dbperf-kit"):
        Bundle.load(tmp_path / "r")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"status": "finished"}, "status is str 'finished', expected ok or failed or interrupted"),
        ({"created_at": "yesterday"}, "created_at is str 'yesterday', expected an ISO 8601 time"),
        ({"findings": [{"kind": "x"}]}, r"findings\[0\].subject is missing"),
        ({"statements": {"basis": "b", "calls": "many"}}, "statements.calls is str 'many', expected a number"),
        ({"derived": {"findings_total": "2"}}, "derived.findings_total is str '2', expected a number"),
        ({"notebooks": ["01_audit.ipynb"]}, r"notebooks\[0\] is str '01_audit.ipynb', expected an object"),
    ],
)
def test_a_malformed_bundle_names_the_key(tmp_path, change, message):
    content = {**_full().to_json(), **change}
    _write(tmp_path / "r", content)
    with pytest.raises(ConfigError, match=f"is not a valid bundle of schema 2 \\({message}\\); re-run `kit run`"):
        Bundle.load(tmp_path / "r")


def test_a_file_that_is_not_json_or_not_there(tmp_path):
    (tmp_path / "r").mkdir()
    with pytest.raises(ConfigError, match=r"no bundle.json in .*r: not a finished kit run"):
        Bundle.load(tmp_path / "r" / BUNDLE_FILE)
    (tmp_path / "r" / BUNDLE_FILE).write_text('{"schema": 2, "run": "r", "created')  # cut short by a crash
    with pytest.raises(ConfigError, match="cannot be read as JSON"):
        Bundle.load(tmp_path / "r")
    (tmp_path / "r" / BUNDLE_FILE).write_text("[1, 2]")
    with pytest.raises(ConfigError, match=r"is not a kit bundle \(a JSON list\)"):
        Bundle.load(tmp_path / "r")


def test_old_runs_are_listed_never_compared_and_compare_refuses_them(tmp_path, capsys):
    runs = tmp_path / "runs"
    _write(runs / "20260101T000000Z-1", _schema_1("20260101T000000Z-1"))
    (runs / "20260101T000000Z-2").mkdir()
    _full("20260101T000000Z-2").write(runs / "20260101T000000Z-2")
    (runs / "20260101T000000Z-3").mkdir()
    (runs / "20260101T000000Z-3" / BUNDLE_FILE).write_text('{"schema": 2, "ru')  # killed while writing

    listed = history.list_runs(runs)
    assert listed["status"].tolist() == [history.OLD_BUNDLE, "ok", history.NO_BUNDLE]
    assert history.bundled(listed)["run"].tolist() == ["20260101T000000Z-2"]
    assert history.previous_bundle(runs, target=A, before="20260101T000000Z-2") is None  # never a baseline
    assert history.trend_frame(runs, target=A)["run"].unique().tolist() == ["20260101T000000Z-2"]

    assert main(["history", "--runs-dir", str(runs)]) == 0
    assert "20260101T000000Z-1 old bundle" in capsys.readouterr().out

    assert main(["compare", "20260101T000000Z-1", "20260101T000000Z-2", "--runs-dir", str(runs)]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [
        f"kit: error: {runs / '20260101T000000Z-1' / BUNDLE_FILE} is a bundle of schema 1; this kit reads schema 2 "
        "only: re-run `kit run` to get a new bundle"
    ]
    assert "Traceback" not in captured.err and "KeyError" not in captured.err


def test_findings_are_the_same_by_kind_and_subject():
    a = Finding(kind="missing_indexes", subject="ix_a", severity="high")
    assert a.key == replace(a, severity=None, detail="elsewhere").key == ("missing_indexes", "ix_a")
    assert Finding.from_json(a.to_json()) == a
    with pytest.raises(ValueError, match="kind is missing"):
        Finding.from_json({"subject": "ix_a"})
