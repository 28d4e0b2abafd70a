"""Install the optional system package hypopg when we can (root, apt, PostgreSQL present) (talks to apt).

Run by ``make install``. Never fails the build: without hypopg the advisor reports "unavailable".
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from kit.local import find_pg_bindir


def hypopg_installed(bindir: str) -> bool:
    share = subprocess.run([f"{bindir}/pg_config", "--sharedir"], capture_output=True, text=True).stdout.strip()
    return bool(share) and (Path(share) / "extension" / "hypopg.control").exists()


def main() -> int:
    bindir = find_pg_bindir()
    if bindir is None or not (Path(bindir) / "pg_config").exists() or hypopg_installed(bindir):
        return 0
    major = subprocess.run([f"{bindir}/pg_config", "--version"], capture_output=True, text=True).stdout.split()[1]
    package = f"postgresql-{major.split('.')[0]}-hypopg"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(f"note: hypopg is not installed; the index advisor needs it ({package})", file=sys.stderr)
        return 0
    print(f"installing {package} (for the what-if index advisor) ...", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
            print(f"note: could not install {package}; the index advisor will say unavailable", file=sys.stderr)
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
