"""`kit metrics serve` stops cleanly on SIGINT and SIGTERM, even when started with SIGINT ignored
(a background job, a test runner's worker): Python installs no KeyboardInterrupt handler then."""

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from kit.servers.local import free_port

KIT = str(Path(sys.executable).parent / "kit")


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_stops_on_a_signal_even_when_started_with_sigint_ignored(sig, tiny_db_url, tmp_path):
    port = free_port()
    server = subprocess.Popen([KIT, "metrics", "serve", "--port", str(port), "--database-url", tiny_db_url], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "KIT_HOME": str(tmp_path)},
                              preexec_fn=_ignore_sigint)
    try:
        deadline = time.monotonic() + 30
        while True:  # up and answering before the signal
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, server.stderr.read()
                time.sleep(0.2)
        assert "kit_publishing_processes 0.0" in body
        server.send_signal(sig)
        out, err = server.communicate(timeout=10)
    finally:
        server.kill()
    assert server.returncode == 0, err
    assert f"serving http://127.0.0.1:{port}/metrics" in out
