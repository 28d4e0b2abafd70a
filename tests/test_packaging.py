"""The files around the package agree with each other: environment.yml, pyproject, README, CI."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip().strip('"'), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_pip_dependencies_match_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = {_name(r): r for r in project["dependencies"] + extras["dev"] + extras["demo"] + extras["fleet"]}
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    pip = [line.strip()[2:].strip().strip('"') for line in lines[start + 1:] if line.strip().startswith("- ")]
    listed = {_name(r): r for r in pip if r != "-e ."}
    assert listed == wanted
    assert "-e ." in pip


def test_readme_quick_start_is_the_two_commands_and_ci_calls_make_test():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Quick start", 1)[1].split("```", 2)[1]
    assert block.strip().splitlines() == ["make demo", "make test"]
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] == "make test"


def test_the_wheel_carries_the_notebooks_and_the_data_kit_run_needs(tmp_path):
    """``pip install .`` (not editable) runs ``kit run``: the wheel ships the notebooks and data beside the package."""
    import subprocess
    import sys
    import zipfile

    uv = Path(sys.executable).with_name("uv")  # make install puts uv in the venv
    subprocess.run([str(uv), "build", "--wheel", "-q", "-o", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("dbperf_kit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shared = {n.split(".data/data/share/dbperf-kit/", 1)[1] for n in names if ".data/data/share/dbperf-kit/" in n}
    shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / "notebooks").glob("*.ipynb")}
    shipped |= {p.relative_to(ROOT).as_posix() for p in (ROOT / "data").rglob("*.sql")}
    assert shared == shipped
    assert "kit/cli.py" in names and not any(n.startswith(("notebooks/", "tests/")) for n in names)
