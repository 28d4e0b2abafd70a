"""The kit without its demo and fleet extras (``pip install dbperf-kit`` alone): the core audits and
fixes a database; the demo's commands say in one line which extra they need. The extras' packages are
made unimportable by tests/core_only/sitecustomize.py in every process started with it, kernels included."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CORE_ONLY = Path(__file__).resolve().parent / "core_only"


def core_only_env(**extra: str) -> dict[str, str]:
    """The environment of a process (and of the kernels it starts) without the demo and fleet extras."""
    path = os.pathsep.join(p for p in (str(CORE_ONLY), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def _kit(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kit.cli", *args], env=core_only_env(**env), capture_output=True, text=True, timeout=120
    )


def test_the_extras_are_really_missing_there():
    probe = "import importlib.util as u\ntry:\n    import locust\nexcept ModuleNotFoundError as e:\n    print(e.name)"
    done = subprocess.run([sys.executable, "-c", probe], env=core_only_env(), capture_output=True, text=True)
    assert done.stdout.strip() == "locust"


@pytest.mark.parametrize(
    "args, extra",
    [
        (("demo", "--scale", "tiny"), "demo"),
        (("bench", "cache"), "demo"),
        (("bench", "fleet"), "demo"),
        (("metrics", "serve"), "demo"),
    ],
)
def test_a_command_of_the_demo_wing_names_its_extra_in_one_line(args, extra, tmp_path):
    done = _kit(*args, KIT_HOME=str(tmp_path))
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert f"pip install 'dbperf-kit[{extra}]'" in done.stderr
    assert not (tmp_path / "postgres").exists()  # refused before any server was started


def test_the_core_commands_answer_without_the_extras():
    done = _kit("--help")
    assert done.returncode == 0 and "run" in done.stdout and "apply" in done.stdout
