"""The fleet file: what it accepts, and one line for each way it can be wrong (no servers needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kit import cli
from kit.errors import ConfigError
from kit.fleet import load
from kit.fleet.spec import DEFAULT_FAIL_ON, DEFAULT_NOTEBOOKS

CANARY = "Fl33tCanaryPw"

GOOD = """
[fleet]
name = "prod"
runs_dir = "audits"
concurrency = 3
schedule = "30 1 * * 1-5"
timezone = "Europe/Berlin"

[fleet.parameters]
load_users = 4

[[targets]]
name = "orders"
url_env = "ORDERS_DATABASE_URL"

[[targets]]
name = "billing-eu"
url_env = "BILLING_EU_URL"
notebooks = ["01_audit.ipynb", "02_apply_fixes.ipynb"]
fail_on = ["new_duplicate_indexes>0", "findings_total>+5"]
parameters = { load_seconds = 1.5 }
"""


def _write(tmp_path: Path, text: str, name: str = "fleet.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_fleet_file_with_defaults_and_per_target_overrides(tmp_path):
    fleet = load(_write(tmp_path, GOOD))
    assert fleet.name == "prod"
    assert fleet.runs_dir == (tmp_path / "audits").resolve()  # relative to the file, not the working directory
    assert (fleet.concurrency, fleet.schedule, fleet.timezone, fleet.timeout_s) == (3, "30 1 * * 1-5", "Europe/Berlin", 1800)
    assert fleet.names == ("orders", "billing-eu")
    orders, billing = fleet.targets
    assert orders.notebooks == DEFAULT_NOTEBOOKS and orders.fail_on == DEFAULT_FAIL_ON
    assert orders.run_parameters() == {"load_users": 4, "database_env": "ORDERS_DATABASE_URL"}
    assert billing.notebooks == ("01_audit.ipynb", "02_apply_fixes.ipynb")
    assert billing.fail_on == ("new_duplicate_indexes>0", "findings_total>+5")  # replaces the fleet's rules
    assert billing.run_parameters() == {"load_users": 4, "load_seconds": 1.5, "database_env": "BILLING_EU_URL"}
    assert fleet.select(["billing-eu"]) == (billing,)
    assert list(fleet.to_frame()["target"]) == ["orders", "billing-eu"]


def test_the_name_defaults_to_the_file_and_one_target_is_enough(tmp_path):
    fleet = load(_write(tmp_path, '[[targets]]\nname = "a"\nurl_env = "A_URL"\n', name="Staging DBs.toml"))
    assert fleet.name == "staging-dbs"
    assert (fleet.concurrency, fleet.schedule, fleet.runs_dir) == (1, "0 2 * * *", (tmp_path / "runs").resolve())


T = '[[targets]]\nname = "orders"\nurl_env = "ORDERS_URL"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[targets]]\nname = "orders"\nurl_env = "postgresql://app:' + CANARY + '@db:5432/orders"\n',
         r"targets\[0\]\.url_env holds a URL or password \('postgresql://app:\*\*\*@db:5432/orders'\).*names environment variables only"),
        ('[[targets]]\nname = "orders"\nurl_env = "X"\nurl = "db.internal"\n',
         r"targets\[0\] \(orders\): a URL never goes in the fleet file \(url = \.\.\.\)"),
        (T + 'parameters = { note = "host=db password=' + CANARY + '" }\n', r"holds a URL or password"),
        ('[fleet]\nconcurency = 2\n' + T, r"\[fleet\]: unknown key 'concurency'; expected one of name, runs_dir, concurrency"),
        (T + 'notebook = ["01_audit.ipynb"]\n', r"targets\[0\] \(orders\): unknown key 'notebook'"),
        (T + T, r"target name 'orders' is used twice"),
        ('[[targets]]\nname = "Orders DB"\nurl_env = "X"\n', r"name 'Orders DB' must be 1-63 lowercase letters"),
        ('[[targets]]\nname = "_fleet"\nurl_env = "X"\n', r"name '_fleet' must be"),
        ('[[targets]]\nname = "orders"\nurl_env = "ORDERS-URL"\n', r"url_env 'ORDERS-URL' is not an environment variable name"),
        ('[[targets]]\nname = "orders"\n', r"targets\[0\] \(orders\): url_env must be a non-empty string"),
        ('[fleet]\nconcurrency = 0\n' + T, r"\[fleet\] concurrency must be a whole number >= 1, not 0"),
        ('[fleet]\nconcurrency = true\n' + T, r"concurrency must be a whole number >= 1, not True"),
        ('[fleet]\nschedule = "every night"\n' + T, r"schedule 'every night' is not a cron expression of 5 fields"),
        ('[fleet]\ntimezone = "Mars/Olympus"\n' + T, r"timezone 'Mars/Olympus' is not a time zone name"),
        (T + 'fail_on = ["p95 up a lot"]\n', r"targets\[0\] \(orders\): fail_on: cannot parse --fail-on 'p95 up a lot'"),
        (T + 'notebooks = ["09_nope.ipynb"]\n', r"no notebook '09_nope.ipynb'; the kit ships 01_audit.ipynb"),
        (T + 'parameters = { database_env = "OTHER" }\n', r"database_env is set by the target's url_env"),
        (T + 'parameters = { scael = "demo" }\n', r"target orders: unknown parameter 'scael'"),
        (T + 'parameters = { apply = "maybe" }\n', r"target orders: parameter apply expects bool"),
        ('[fleet]\nname = "prod"\n', r"no targets; add one \[\[targets\]\] table per database"),
        ('[fleet\nname = "prod"\n', r"fleet\.toml: not valid TOML \("),
    ],
)
def test_each_mistake_is_one_line_naming_the_file(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as err:
        load(_write(tmp_path, text))
    line = str(err.value)
    assert "\n" not in line and line.startswith("fleet.toml")
    assert CANARY not in line


def test_a_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"fleet file not found: .*nope\.toml"):
        load(tmp_path / "nope.toml")


def test_cli_refuses_a_bad_fleet_file_with_one_line_and_exit_2_before_anything_runs(tmp_path, capsys):
    path = _write(tmp_path, '[[targets]]\nname = "orders"\nurl_env = "postgres://u:' + CANARY + '@h/d"\n')
    code = cli.main(["fleet", "run", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("kit: error: fleet.toml: targets[0].url_env holds a URL")
    assert CANARY not in err
    assert not (tmp_path / "runs").exists()  # nothing half-written


def test_cli_rejects_an_unknown_target_before_anything_runs(tmp_path, capsys):
    code = cli.main(["fleet", "run", str(_write(tmp_path, T)), "--target", "billing"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == "kit: error: no target 'billing' in fleet.toml; its targets are: orders"
    assert not (tmp_path / "runs").exists()


def test_status_before_any_run(tmp_path, capsys):
    code = cli.main(["fleet", "status", str(_write(tmp_path, GOOD))])
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[0] == f"fleet prod: 2 target(s) in {(tmp_path / 'audits').resolve()}: 2 not run"
    assert "orders: no attempt recorded yet" in out and "billing-eu: no attempt recorded yet" in out


def test_the_readme_example_loads(tmp_path):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    example = readme.split("### Fleets", 1)[1].split("```toml", 1)[1].split("```", 1)[0]
    fleet = load(_write(tmp_path, example))
    assert fleet.names == ("orders", "billing") and fleet.concurrency == 2
    assert fleet.target("billing").run_parameters() == {"load_seconds": 2.0, "load_users": 4,
                                                        "database_env": "BILLING_DATABASE_URL"}
