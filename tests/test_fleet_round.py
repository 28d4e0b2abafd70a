"""A fleet round through the Dagster job, in process, against the kit's real PostgreSQL: a target
that regressed fails alone, a target whose URL variable is unset fails alone with one line, the
others run and report, and the fleet report renders from the run folders.

Cost: three ``01_audit`` runs (one baseline, two in the round) on small databases that are not the
demo platform (so its platform cells are left out, as for any user database), and one ``05_fleet``.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import nbformat
import pytest
from sqlalchemy import text

from kit import cli
from kit.charts import browser
from kit.db.engine import make_engine
from kit.fleet import load
from kit.fleet.definitions import SENSOR, build
from kit.fleet.orchestrate import run_round
from kit.fleet.target import ATTEMPTS_FILE, OUTCOME_FILE
from kit.servers import local

CANARY = "Fl33tRoundCanary"  # the kit's server trusts local logins: a password in the URL is accepted and ignored
SCHEMA = """
CREATE TABLE items (id bigint PRIMARY KEY, owner_id int NOT NULL, label text);
INSERT INTO items SELECT g, g % 50, 'item ' || g FROM generate_series(1, 2000) AS g;
CREATE INDEX items_owner_id_idx ON items (owner_id);
ANALYZE items;
"""


def _database(server: local.Server) -> tuple[str, str]:
    name = f"fleet_{uuid.uuid4().hex[:10]}"
    url = local.create_database(server, name)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(SCHEMA))
    finally:
        engine.dispose()
    return name, url


@pytest.fixture(scope="module")
def fleet_round(pg_server, tmp_path_factory):
    """Round 1: beta alone (its baseline). Then a duplicate index is planted in beta. Round 2:
    alpha, beta and ghost (whose variable is never set), two at a time, then the report."""
    work = tmp_path_factory.mktemp("fleet")
    (work / "fleet.toml").write_text(
        '[fleet]\nname = "test"\nconcurrency = 2\nfail_on = ["new_duplicate_indexes>0", "new_invalid_indexes>0"]\n'
        '[[targets]]\nname = "alpha"\nurl_env = "KIT_TEST_FLEET_ALPHA"\n'
        '[[targets]]\nname = "beta"\nurl_env = "KIT_TEST_FLEET_BETA"\n'
        '[[targets]]\nname = "ghost"\nurl_env = "KIT_TEST_FLEET_GHOST_NEVER_SET"\n', encoding="utf-8")
    (alpha_db, alpha), (beta_db, beta) = _database(pg_server), _database(pg_server)
    mp = pytest.MonkeyPatch()
    mp.setenv("KIT_TEST_FLEET_ALPHA", alpha.replace("postgres@", f"postgres:{CANARY}@"))
    mp.setenv("KIT_TEST_FLEET_BETA", beta)
    mp.delenv("KIT_TEST_FLEET_GHOST_NEVER_SET", raising=False)
    fleet = load(work / "fleet.toml")
    try:
        first = run_round(fleet, targets=["beta"], report=False)
        engine = make_engine(beta)
        try:
            with engine.begin() as conn:
                conn.execute(text("CREATE INDEX items_owner_id_copy ON items (owner_id)"))
        finally:
            engine.dispose()
        second = run_round(fleet, dagster_home=work / "dagster")
        yield fleet, first, second, work, (alpha_db, pg_server.port)
    finally:
        mp.undo()
        local.drop_database(pg_server, alpha_db)
        local.drop_database(pg_server, beta_db)


def test_the_baseline_round_ran_beta_alone(fleet_round):
    fleet, first, _, _, _ = fleet_round
    assert [(o.target, o.status) for o in first.outcomes] == [("beta", "ok")]
    assert first.exit_code == 0 and first.report_html is None
    assert (fleet.runs_dir / "beta" / first.outcomes[0].run / "bundle.json").exists()


def test_a_failing_target_does_not_stop_the_others(fleet_round):
    fleet, first, second, _, (alpha_db, port) = fleet_round
    status = {o.target: o.status for o in second.outcomes}
    assert status == {"alpha": "ok", "beta": "regression", "ghost": "failed"}
    alpha = second.outcomes[0]
    bundle = json.loads((fleet.runs_dir / "alpha" / alpha.run / "bundle.json").read_text())
    assert bundle["status"] == "ok" and bundle["target"] == f"postgresql://postgres@127.0.0.1:{port}/{alpha_db}"
    assert [n["name"] for n in bundle["notebooks"]] == ["01_audit.ipynb"]
    assert alpha.verdicts and {v["status"] for v in alpha.verdicts} == {"no baseline"}  # alpha's first run
    # beta regressed against its own previous run, named by the gate
    beta = second.outcomes[1]
    assert beta.message.startswith(f"beta: regression against run {first.outcomes[0].run}: ")
    assert "rule 'new_duplicate_indexes>0' fired" in beta.message and "\n" not in beta.message
    assert (fleet.runs_dir / "beta" / beta.run / OUTCOME_FILE).exists()  # its run folder is complete
    assert second.exit_code == 1  # a target could not be audited (ghost); 3 would mean regressions only
    assert 1 <= second.max_overlap() <= fleet.concurrency
    assert len(set(second.dagster_runs.values())) == 3  # one Dagster run per target


def test_an_unset_url_variable_fails_alone_with_one_line_and_writes_no_run(fleet_round):
    fleet, _, second, _, _ = fleet_round
    ghost = second.outcomes[2]
    assert ghost.message == ("ghost: environment variable KIT_TEST_FLEET_GHOST_NEVER_SET is not set; "
                             "export it with the target's database URL")
    assert ghost.run is None and ghost.folder is None
    assert [p.name for p in (fleet.runs_dir / "ghost").iterdir()] == [ATTEMPTS_FILE]  # the attempt, no run


def test_the_fleet_report_shows_every_target(fleet_round):
    fleet, _, second, _, _ = fleet_round
    assert second.report_error is None
    html = Path(second.report_html)
    assert html.parent.parent == fleet.report_dir and html.name == "05_fleet.html"
    nb = nbformat.read(str(html.with_suffix(".ipynb")), as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors == []
    page = html.read_text(encoding="utf-8")
    assert "3 target(s) in " in page and "1 ok, 1 regression, 1 failed" in page
    assert page.count("Plotly.newPlot(") == 5 and "plotly.js v" in page  # five charts, plotly.js inside
    with browser.launch() as chromium:  # offline: every request off the machine is refused
        check = browser.check_report(html, chromium)
    assert len(check.charts) == 5 and check.problems() == []


def test_the_runs_are_in_the_dagster_instance_and_the_sensor_asks_for_one_report(fleet_round):
    import dagster as dg

    fleet, _, second, work, _ = fleet_round
    instance = dg.DagsterInstance.from_config(str(work / "dagster"))
    try:
        runs = {r.run_id: r for r in instance.get_runs()}
        assert {runs[i].status for i in second.dagster_runs.values()} == {dg.DagsterRunStatus.SUCCESS,
                                                                          dg.DagsterRunStatus.FAILURE}
        assert {runs[i].tags["dagster/partition"] for i in second.dagster_runs.values()} == {"alpha", "beta", "ghost"}
        sensor = build(fleet).resolve_sensor_def(SENSOR)
        with dg.build_sensor_context(instance=instance) as context:
            assert len(sensor.evaluate_tick(context).run_requests) == 1
    finally:
        instance.dispose()


def test_status_reads_the_round_back(fleet_round, capsys):
    fleet, _, _, _, _ = fleet_round
    assert cli.main(["fleet", "status", str(fleet.path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"fleet test: 3 target(s) in {fleet.runs_dir}: 1 ok, 1 regression, 1 failed"
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[2:]}
    assert rows == {"alpha": "ok", "beta": "regression", "ghost": "failed"}


def test_no_file_of_the_fleet_holds_the_password(fleet_round):
    _, _, _, work, _ = fleet_round
    leaked = [p for p in work.rglob("*") if p.is_file() and CANARY.encode() in p.read_bytes()]
    assert leaked == []
