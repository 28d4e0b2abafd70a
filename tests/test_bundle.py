"""Two consecutive runs of small notebooks against a real tiny database: the bundle, the history,
the comparison, the trend notebook, and the gate catching an index dropped between the runs."""

from __future__ import annotations

import json

import nbformat
import pytest

from kit import indexes
from kit.cli import main
from kit.demo.schema import MIGRATION_PATH
from kit.indexes.spec import parse_migration
from kit.runs import bundle, runner
from kit.store import history
from kit.store.evidence import SCHEMA_VERSION, Finding

SPEC = next(s for s in parse_migration(MIGRATION_PATH) if s.table == "users")
SCHEMA_1_KEYS = ["schema", "run", "created_at", "status", "target", "previous_run", "parameters", "versions", "notebooks",
                 "preflight", "statements", "indexes", "findings", "figures", "artifacts", "errors", "derived"]


def _notebook(path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    first = nbformat.v4.new_code_cell('database_env = "KIT_DATABASE_URL"\np95 = 10.0\nfps = ["fp-a"]')
    first.metadata["tags"] = ["parameters"]
    body = nbformat.v4.new_code_cell(
        "import kit\nfrom sqlalchemy import text\n\nsession = kit.open_session(database_env)\n"
        "with session.engine.connect() as conn:\n    conn.execute(text('SELECT count(*) FROM users')).scalar_one()\n"
        "kit.record('p95_ms', p95)\nkit.record('p95_ms_lo', p95 - 1)\nkit.record('p95_ms_hi', p95 + 1)\n"
        "kit.record('n_plus_one', fps)\nkit.record('label', 'x')")
    nb.cells = [first, body]
    nbformat.write(nb, str(path))


@pytest.fixture
def setup(tmp_path, tiny_engine, tiny_db_url, monkeypatch):
    _notebook(tmp_path / "probe.ipynb")
    monkeypatch.setenv("KIT_DATABASE_URL", tiny_db_url)
    result = indexes.apply_indexes(tiny_engine, [SPEC], apply=True, progress=None, out=None)
    assert indexes.index_status(tiny_engine, [SPEC]).state_of(SPEC.name) == "applied", result
    return tmp_path, tiny_engine, tiny_db_url


def test_two_runs_bundle_history_compare_trends_and_gate(setup, capsys):
    tmp_path, engine, url = setup
    runs = tmp_path / "runs"
    first = runner.run(notebooks_dir=tmp_path, notebooks=("probe.ipynb",), runs_dir=runs, progress=False,
                       fail_on=("p95_ms>+20%",))
    one = json.loads(first.bundle_path.read_text())  # the JSON keeps schema 1's keys; the schema says 2
    assert (one["schema"], list(one)) == (SCHEMA_VERSION, SCHEMA_1_KEYS)
    assert one["target"] == bundle.target_key(url) and ":" not in one["target"].split("@")[0][len("postgresql://"):]
    assert (one["status"], one["previous_run"], one["errors"]) == ("ok", None, {})
    assert one["figures"]["p95_ms"] == 10.0 and one["findings"][0] == {"kind": "n_plus_one", "subject": "fp-a",
                                                                       "severity": None, "detail": None}
    assert one["indexes"]["counts"]["applied"] == 1 and one["derived"]["indexes_missing"] == 22.0
    assert one["preflight"]["safe_to_apply"] is True and one["versions"]["server"].startswith("15.")
    assert one["statements"]["basis"] == "since the statistics were reset"
    assert any("count(*) FROM users" in s["query"] for s in one["statements"]["snapshot"])
    assert [a["name"] for a in one["artifacts"]] == ["probe.html", "probe.ipynb"]
    assert [v.status for v in first.gate.verdicts] == ["no baseline"]

    # the seeded regression: an index disappears, p95 grows, a new N+1 fingerprint appears
    assert indexes.drop_indexes(engine, [SPEC]) == [SPEC.name]
    code = main(["run", "--notebooks-dir", str(tmp_path), "--notebook", "probe.ipynb", "--runs-dir", str(runs),
                 "-p", "p95", "13", "-p", "fps", '["fp-a", "fp-b"]', "--fail-on", "p95_ms>+20%",
                 "--fail-on", "new_missing_indexes>0", "--fail-on", "new_n_plus_one>0", "--fail-on", "label>0"])
    out, err = capsys.readouterr()
    assert code == 3
    line = err.strip().splitlines()[-1].split("\r")[-1]
    assert line.startswith("kit: error: regression in run ") and f"(against run {first.folder.name})" in line
    assert "p95_ms changed by +30.0% (10 -> 13), rule 'p95_ms>+20%' fired" in line
    assert f"new_missing_indexes = 1, rule 'new_missing_indexes>0' fired: {SPEC.name}" in line
    assert "new_n_plus_one = 1, rule 'new_n_plus_one>0' fired: fp-b" in line
    assert "label was not recorded by this run" in line  # a str figure cannot be gated
    assert "regression gate" in out

    two = history.read_bundle(history.resolve_run("latest", runs_dir=runs))
    assert two.previous_run == first.folder.name and two.parameters == {"p95": "13", "fps": '["fp-a", "fp-b"]'}
    assert two.derived["new_missing_indexes"] == 1.0 and two.derived["gone_n_plus_one"] == 0.0
    assert two.statements is not None and two.statements.basis == f"since run {first.folder.name}"
    assert Finding(kind="missing_indexes", subject=SPEC.name, severity="high") in two.findings
    users = [s for s in two.statements.diff if "count(*) FROM users" in s["query"]]
    assert [s["calls"] for s in users] == [1]  # one call since the previous run, not the cumulative count

    assert main(["history", "--runs-dir", str(runs)]) == 0
    out, _ = capsys.readouterr()
    assert out.splitlines()[0] == f"{one['target']}  (2 run(s))"
    assert main(["compare", "previous", "latest", "--runs-dir", str(runs)]) == 0
    out, _ = capsys.readouterr()
    assert "findings: 2 new, 0 gone" in out and "fp-b" in out and SPEC.name in out
    assert any(line.split()[:3] == ["p95_ms", "10.000", "13.000"] for line in out.splitlines())

    trends = history.trends(runs, last=10)
    assert trends.runs["run"].tolist() == [first.folder.name, two.run]
    assert trends.changes().set_index("figure").loc["p95_ms", "change_pct"] == pytest.approx(30.0)
    assert sorted(trends.findings()["subject"]) == sorted([SPEC.name, "fp-b"])


def test_trend_notebook_charts_two_runs(setup):
    import papermill

    tmp_path, _, url = setup
    runs = tmp_path / "runs"
    for p95 in (10, 12):
        runner.run(parameters={"p95": p95}, notebooks_dir=tmp_path, notebooks=("probe.ipynb",), runs_dir=runs,
                   progress=False)
    out = tmp_path / "04.ipynb"
    papermill.execute_notebook(str(runner.NOTEBOOKS_DIR / "04_trends.ipynb"), str(out), kernel_name="python3",
                               parameters={"runs_dir": str(runs), "last_runs": 5}, progress_bar=False,
                               cwd=str(runner.NOTEBOOKS_DIR))
    text = out.read_text()
    assert f"2 run(s) of {bundle.target_key(url)}" in text
    assert "Headline figures over the last 2 run(s)" in text
    assert "Top statements' mean time across runs" in text

    trend = history.statement_trend(runs, target=bundle.target_key(url), top=20)
    users = trend[trend["statement"].str.contains("count(*) FROM users", regex=False)]
    assert len(users) == 2 and users["calls"].tolist() == [1, 1] and users["mean_ms"].gt(0).all()
    latest = sorted(runs.iterdir())[-1]
    key = users["queryid"].iloc[-1]  # the loop's measurements of that statement join by its queryid
    (latest / "loop.json").write_text(json.dumps({"statements": [{"key": key, "before_ms": 2.0, "after_ms": 0.5}]}))
    again = history.statement_trend(runs, target=bundle.target_key(url), top=20)
    assert again[again["queryid"] == key][["before_ms", "after_ms"]].values.tolist()[-1] == [2.0, 0.5]


def test_a_run_without_a_database_still_writes_its_bundle(tmp_path, monkeypatch):
    monkeypatch.delenv("KIT_DATABASE_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("KIT_HOME", str(tmp_path / "home"))
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell("x = 1")
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell("import kit\nkit.record('x', x)")]
    nbformat.write(nb, str(tmp_path / "a.ipynb"))
    result = runner.run(notebooks_dir=tmp_path, notebooks=("a.ipynb",), runs_dir=tmp_path / "runs", progress=False)
    content = json.loads(result.bundle_path.read_text())
    assert (content["target"], content["figures"], content["statements"]) == (None, {"x": 1}, None)
    assert content["errors"] == {"database": "no database configured: export KIT_DATABASE_URL, or run "
                                             "`kit services up` first"}
    assert history.list_runs(tmp_path / "runs")["status"].tolist() == ["ok"]
