"""Install the system packages the kit uses when we can (root, apt): hypopg and chromium (talks to apt).

Run by ``make install``. Never fails the build: without hypopg the advisor reports "unavailable";
without chromium the browser tests fail and say why (:mod:`kit.charts.browser`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from kit.servers.local import find_pg_bindir

# Other engineers' or CI's apt may hold the dpkg lock for a while: wait for it rather than fail.
_APT_LOCK_WAIT = ["-o", "DPkg::Lock::Timeout=300"]


CHROMIUM_PACKAGE = "chromium"
CHROMIUM_EXECUTABLES = ("chromium", "chromium-browser")


def find_chromium() -> str | None:
    """The system chromium's path, or None."""
    for name in CHROMIUM_EXECUTABLES:
        if path := shutil.which(name):
            return path
    return None


def hypopg_installed(bindir: str) -> bool:
    share = subprocess.run([f"{bindir}/pg_config", "--sharedir"], capture_output=True, text=True).stdout.strip()
    return bool(share) and (Path(share) / "extension" / "hypopg.control").exists()


def _missing_hypopg() -> str | None:
    """The hypopg package for the PostgreSQL in use, when it is missing (None: present or no PostgreSQL)."""
    bindir = find_pg_bindir()
    if bindir is None or not (Path(bindir) / "pg_config").exists() or hypopg_installed(bindir):
        return None
    major = subprocess.run([f"{bindir}/pg_config", "--version"], capture_output=True, text=True).stdout.split()[1]
    return f"postgresql-{major.split('.')[0]}-hypopg"


def apt_install(packages: dict[str, str]) -> dict[str, str]:
    """Install ``packages`` (name -> what it is for) with apt; return the ones that failed, with the reason."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return {name: "not root or no apt-get" for name in packages}
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    update = subprocess.run(["apt-get", *_APT_LOCK_WAIT, "update", "-qq"], env=env, capture_output=True, text=True)
    if update.returncode != 0:
        return {name: f"apt-get update failed: {_last_line(update.stderr)}" for name in packages}
    failed = {}
    for name, purpose in packages.items():
        print(f"installing {name} ({purpose}) ...", file=sys.stderr)
        done = subprocess.run(
            ["apt-get", *_APT_LOCK_WAIT, "install", "-y", "-qq", "--no-install-recommends", name],
            env=env,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            failed[name] = _last_line(done.stderr)
    return failed


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def main() -> int:
    wanted: dict[str, str] = {}
    consequence: dict[str, str] = {}
    if hypopg := _missing_hypopg():
        wanted[hypopg] = "for the what-if index advisor"
        consequence[hypopg] = "the index advisor will say unavailable"
    if find_chromium() is None:
        wanted[CHROMIUM_PACKAGE] = "for the JupyterLab and HTML report browser tests"
        consequence[CHROMIUM_PACKAGE] = "the browser tests will fail until it is installed"
    if not wanted:
        return 0
    for name, why in apt_install(wanted).items():
        print(f"note: could not install {name} ({why}); {consequence[name]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
