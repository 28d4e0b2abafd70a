from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from sqlalchemy import text

from kit.errors import ConfigError, NotebookFailed, ParameterError
from kit.runs import parameters, runner

KIT = str(Path(sys.executable).parent / "kit")


def _notebook(path, params: str, *cells: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    first = nbformat.v4.new_code_cell(params)
    first.metadata["tags"] = ["parameters"]
    nb.cells = [first, *(nbformat.v4.new_code_cell(c) for c in cells)]
    nbformat.write(nb, str(path))


def test_declared_parameters_of_the_shipped_notebooks():
    for name in runner.NOTEBOOKS:
        declared = parameters.declared_parameters(runner.NOTEBOOKS_DIR / name)
        assert declared["database_env"] == {"type": "str", "default": '"KIT_DATABASE_URL"'}
        assert declared["scale"] == {"type": "str", "default": '"tiny"'}
        assert declared["apply"] == {"type": "bool", "default": "False"}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"scael": "demo"}, "unknown parameter 'scael'"),
        ({"apply": "maybe"}, "parameter apply expects bool, got 'maybe'"),
        ({"apply": 3}, "parameter apply expects bool, got int 3"),
        ({"scale": 5}, "parameter scale expects str, got int 5"),
        ({"database_env": "postgresql://u:pw@h/d"}, r"holds a password; secrets never travel as parameters"),
        ({"database_env": "postgresql://u@h/d"}, r"looks like a URL \(postgresql://u@h/d\)"),
        ({"scale": "huge"}, "parameter scale must be one of tiny, demo, large, got 'huge'"),
        ({"load_users": "-5"}, "parameter load_users must be between 1 and 10000, got -5"),
        ({"load_users": 0}, "parameter load_users must be between 1 and 10000, got 0"),
        ({"load_seconds": "1e9"}, "parameter load_seconds must be between 0.1 and 3600, got 1000000000.0"),
        ({"database_env": "not a name"}, "parameter database_env names an environment variable"),
        ({"migrations": "/nope/db/migrations"}, "parameter migrations names /nope/db/migrations, which does not exist"),
        ({"repeats": 0}, "parameter repeats must be between 1 and 1000, got 0"),
        ({"top_statements": "-1"}, "parameter top_statements must be between 1 and 500, got -1"),
    ],
)
def test_bad_parameters_are_refused_before_anything_runs(tmp_path, params, message):
    with pytest.raises(ParameterError, match=message):
        runner.run(parameters=params, runs_dir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()  # nothing half-written


@pytest.mark.parametrize("value", ["host=db password=Hunter-2", "auditor:Hunter-2@db:5432/app",
                                   "postgresql://u:Hunter-2@db/app"])
def test_a_password_looking_value_is_refused_and_never_written(tmp_path, value):
    with pytest.raises(ParameterError, match="holds a password") as info:
        runner.run(parameters={"scale": value}, runs_dir=tmp_path / "runs",
                   notebooks=("01_audit.ipynb",))
    assert "Hunter-2" not in str(info.value)
    assert not (tmp_path / "runs").exists()


def test_the_ranges_name_only_declared_parameters_and_scales_match_the_data_generator():
    from kit.demo import datagen

    declared = {name for nb in runner.NOTEBOOKS + ("04_trends.ipynb",)
                for name in parameters.declared_parameters(runner.NOTEBOOKS_DIR / nb)}
    assert set(parameters.RANGES) | set(parameters.CHOICES) <= declared
    assert parameters.CHOICES["scale"] == tuple(datagen.SCALES)


@pytest.mark.parametrize("name", ["../README.md", "../pyproject.toml"])
def test_a_file_that_is_not_a_notebook_is_one_clear_error(tmp_path, name):
    with pytest.raises(ConfigError, match=re.escape(f"not a notebook: {runner.NOTEBOOKS_DIR / name} (not an .ipynb")):
        runner.run(notebooks=(name,), runs_dir=tmp_path / "runs")
    (tmp_path / "broken.ipynb").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot be read as one"):
        runner.run(notebooks=("broken.ipynb",), notebooks_dir=tmp_path, runs_dir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_cli_strings_are_typed():
    paths = [runner.NOTEBOOKS_DIR / n for n in runner.NOTEBOOKS]
    typed = parameters.validate_parameters({"apply": "true", "scale": "demo"}, paths)
    assert typed[paths[1]] == {"apply": True, "scale": "demo"}


def test_migrations_are_given_to_the_kernels_as_an_absolute_path(tmp_path, monkeypatch):
    (tmp_path / "db").mkdir()
    monkeypatch.chdir(tmp_path)
    paths = [runner.NOTEBOOKS_DIR / n for n in runner.NOTEBOOKS]
    typed = parameters.validate_parameters({"migrations": "db"}, paths)
    assert typed[paths[1]] == {"migrations": str(tmp_path / "db")}  # the kernels run in notebooks/


def test_missing_notebook(tmp_path):
    with pytest.raises(ConfigError, match="notebook not found: .*nope.ipynb"):
        runner.run(notebooks=("nope.ipynb",), runs_dir=tmp_path / "runs")


def test_run_executes_in_order_records_figures_and_exports_html(tmp_path, monkeypatch):
    _notebook(tmp_path / "a.ipynb", "x = 1", "import kit\nkit.record('double', x * 2)")
    _notebook(tmp_path / "b.ipynb", "label = 'b'", "import kit\nkit.record('label', label)\nprint('hello')")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")  # a relative runs dir, as `make demo` uses, while kernels run elsewhere
    result = runner.run(parameters={"x": "21"}, notebooks_dir=tmp_path, notebooks=("a.ipynb", "b.ipynb"),
                        runs_dir=Path("runs"), progress=False)
    assert result.folder.parent == tmp_path / "work" / "runs"
    assert [nb.name for nb in result.notebooks] == ["a.ipynb", "b.ipynb"]
    assert result.figures == {"double": 42, "label": "b"}
    summary = json.loads(result.summary_path.read_text())
    assert summary["figures"] == {"double": 42, "label": "b"}
    assert summary["parameters"] == {"x": "21"}
    assert [n["status"] for n in summary["notebooks"]] == ["ok", "ok"]
    html = (result.folder / "b.html").read_text()
    assert "hello" in html and "<html" in html


def test_the_kernels_talk_over_unix_sockets_never_a_tcp_port_another_run_may_take(tmp_path):
    _notebook(tmp_path / "k.ipynb", "x = 1",
              "import json, kit\nfrom ipykernel import get_connection_file\n"
              "info = json.load(open(get_connection_file()))\n"
              "kit.record('kernel', {'transport': info['transport'], 'folder': get_connection_file()})")
    result = runner.run(notebooks_dir=tmp_path, notebooks=("k.ipynb",), runs_dir=tmp_path / "runs", progress=False)
    kernel = result.figures["kernel"]
    assert kernel["transport"] == "ipc"
    assert not Path(kernel["folder"]).parent.exists()  # its sockets' folder is gone with the kernel


def test_a_failing_cell_names_notebook_and_cell_and_keeps_the_output(tmp_path):
    _notebook(tmp_path / "ok.ipynb", "x = 1", "y = x")
    _notebook(tmp_path / "bad.ipynb", "x = 1", "y = x", "raise RuntimeError('boom at postgresql://u:pw@h/d')")
    with pytest.raises(NotebookFailed) as info:
        runner.run(notebooks_dir=tmp_path, notebooks=("ok.ipynb", "bad.ipynb", "ok.ipynb"),
                   runs_dir=tmp_path / "runs", progress=False)
    exc = info.value
    assert exc.notebook == "bad.ipynb" and exc.cell == 3 and exc.exit_code == 1
    assert "RuntimeError" in str(exc) and "pw" not in str(exc)
    kept = nbformat.read(exc.output, as_version=4)
    assert "boom" in json.dumps(kept.cells[-1].outputs)
    summary = json.loads((tmp_path / "runs").glob("*/summary.json").__next__().read_text())
    assert [n["status"] for n in summary["notebooks"]] == ["ok", "failed"]


def test_kit_run_finds_the_servers_of_services_up_without_any_environment(tmp_path, monkeypatch):
    """`kit services up` then `kit run` in a project folder: the kernels (which run in notebooks/)
    must find the servers recorded in the project's .kit, with no URL in the environment."""
    from kit.db.engine import make_engine
    from kit.demo import datagen
    from kit.servers import local

    for name in ("KIT_HOME", "KIT_DATABASE_URL", "DATABASE_URL", "KIT_REDIS_URL", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    servers = local.up(home=tmp_path / ".kit")
    try:
        engine = make_engine(servers["postgres"].url)
        datagen.seed(engine, scale="tiny", progress=False)
        with engine.connect() as conn:  # the seeder's own bookkeeping rows count too (live rows: never analyzed)
            meta = conn.execute(text("SELECT count(*) FROM kit_meta")).scalar_one()
        engine.dispose()
        result = runner.run(notebooks=("01_audit.ipynb",), runs_dir=Path("runs"), progress=False,
                            parameters={"load_users": 2, "load_seconds": 0.5})
        assert [nb.status for nb in result.notebooks] == ["ok"]
        assert result.figures["rows_total"] == datagen.SCALES["tiny"].rows_total + meta
    finally:
        local.down(home=tmp_path / ".kit", purge=True)


SLOW_CELL = ("import pathlib, time\nhere = pathlib.Path({folder!r})\n(here / 'started').write_text('1')\n"
             "try:\n    time.sleep(120)\nexcept KeyboardInterrupt:\n    time.sleep(1)  # a cleanup that takes a while\n"
             "    (here / 'cleaned').write_text('1')\n    raise\n")


def _signalled_run(argv: list[str], folder: Path, signum: int, env: dict | None = None):
    """``argv`` in a session of its own (as a shell starts a foreground job), ``signum`` to its process
    group once the slow cell has started; (exit code, stderr)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, **(env or {})})
    try:
        deadline = time.monotonic() + 120
        while not (folder / "started").exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        os.killpg(proc.pid, signum)
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, err


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_interrupts_the_kernel_marks_the_run_and_exits_in_one_line(tmp_path, signum, code):
    _notebook(tmp_path / "slow.ipynb", "x = 1", SLOW_CELL.format(folder=str(tmp_path)),
              f"import pathlib\npathlib.Path({str(tmp_path)!r}, 'after').write_text('1')")
    runs = tmp_path / "runs"
    exit_code, err = _signalled_run([KIT, "run", "--notebooks-dir", str(tmp_path), "--notebook", "slow.ipynb",
                                     "--runs-dir", str(runs)], tmp_path, signum)
    (folder,) = runs.iterdir()
    name = signal.Signals(signum).name
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("Executing")]  # not the progress bar
    assert exit_code == code and lines == [
        f"kit: error: interrupted by {name} during slow.ipynb: its kernel was interrupted so that the cell could "
        "clean up (an apply cancels its builds and drops what they left INVALID); the run is kept at "
        f"{folder}, marked interrupted (never a baseline) — run it again"], err
    assert (tmp_path / "cleaned").exists() and not (tmp_path / "after").exists()  # its cleanup ran, then nothing
    assert json.loads((folder / "bundle.json").read_text())["status"] == "interrupted"
    assert [n["status"] for n in json.loads((folder / "summary.json").read_text())["notebooks"]] == ["interrupted"]
    kept = nbformat.read(folder / "slow.ipynb", as_version=4)
    assert "KeyboardInterrupt" in json.dumps([c.get("outputs", []) for c in kept.cells])
    listed = subprocess.run([KIT, "history", "--runs-dir", str(runs)], capture_output=True, text=True, timeout=60)
    assert re.search(rf"{folder.name} +interrupted ", listed.stdout), listed.stdout


def test_a_cell_that_ignores_the_interrupt_is_stopped_after_the_grace_time(tmp_path):
    stubborn = ("import pathlib, time\n(pathlib.Path({folder!r}) / 'started').write_text('1')\n"
                "for _ in range(600):\n    try:\n        time.sleep(1)\n    except KeyboardInterrupt:\n        pass\n")
    _notebook(tmp_path / "stubborn.ipynb", "x = 1", stubborn.format(folder=str(tmp_path)))
    code = ("import sys\nfrom pathlib import Path\nfrom kit.errors import Interrupted\nfrom kit.runs import runner\n"
            f"try:\n    runner.run(notebooks_dir=Path({str(tmp_path)!r}), notebooks=('stubborn.ipynb',), "
            f"runs_dir=Path({str(tmp_path / 'runs')!r}), progress=False, interrupt_grace_s=2)\n"
            "except Interrupted as exc:\n    print(exc, flush=True)\n    sys.exit(exc.exit_code)\n")
    exit_code, _err = _signalled_run([sys.executable, "-c", code], tmp_path, signal.SIGINT)
    (folder,) = (tmp_path / "runs").iterdir()
    assert exit_code == 130
    assert json.loads((folder / "bundle.json").read_text())["status"] == "interrupted"


def test_the_status_of_a_run(tmp_path):
    ok, failed = {"status": "ok"}, {"status": "failed"}
    assert runner.run_status([ok, ok], expected=2) == "ok"
    assert runner.run_status([ok, failed], expected=3) == "failed"
    assert runner.run_status([], expected=3) == "failed"  # nothing ran is not ok (it said "ok" before)


def test_an_apply_run_is_refused_before_anything_runs_while_another_apply_holds_the_lock(shop_url, tmp_path,
                                                                                         monkeypatch):
    from kit.errors import ApplyInProgress
    from kit.safety import applylock

    monkeypatch.setenv("KIT_DATABASE_URL", shop_url)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with applylock.hold(shop_url) as other:
        with pytest.raises(ApplyInProgress, match=rf"^another session is applying indexes or fixes to this database: "
                                                  rf"session {other.pid} \(dbperf-kit-apply, since "):
            runner.run(parameters={"apply": "true"}, runs_dir=tmp_path / "runs", progress=False)
    assert not (tmp_path / "runs").exists()  # no run folder: nothing ran
