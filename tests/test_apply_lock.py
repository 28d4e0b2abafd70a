"""The database's apply lock: a second apply is refused at once naming the holder; the lock goes with
its session (an error in the loop, a killed process); a kit run's kernels work under their run's
lock; a dry run is not refused and says an apply runs meanwhile (real servers)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import psycopg
import pytest

from kit.config import RUN_DIR_ENV, libpq_url
from kit.errors import ApplyInProgress, IndexBuildError
from kit.fixes import loop as fix_loop
from kit.fixes import run_loop
from kit.indexes import apply_indexes
from kit.safety import applylock
from kit.workload import read_workload

FAST = dict(sample_s=0, poll_s=0.05, progress=None, out=None)


def _url(engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _holder(engine) -> applylock.Holder | None:
    with psycopg.connect(libpq_url(_url(engine)), autocommit=True) as conn:
        return applylock.holder(conn)


def test_a_second_apply_is_refused_before_it_plans_naming_the_holder(shop_engine, monkeypatch):
    work = read_workload(shop_engine)
    planned: list[int] = []
    real_plan = fix_loop.plan_fixes
    monkeypatch.setattr(fix_loop, "plan_fixes", lambda *a, **k: planned.append(1) or real_plan(*a, **k))
    with applylock.hold(_url(shop_engine)) as first:
        with pytest.raises(ApplyInProgress) as refused:
            run_loop(shop_engine, work, apply=True, repeats=2, out=None)
        message = str(refused.value)
        assert message.startswith(f"another session is applying indexes or fixes to this database: session "
                                  f"{first.pid} (dbperf-kit-apply, since ")
        assert "nothing was planned or changed — wait for it to finish, then apply again" in message
        assert f"SELECT pg_terminate_backend({first.pid})" in message and "\n" not in message
        assert (refused.value.exit_code, planned) == (2, [])
        with pytest.raises(ApplyInProgress, match=f"session {first.pid} "):
            apply_indexes(shop_engine, apply=True, **FAST)  # the same lock for the migration's path
        lines: list[str] = []
        dry = run_loop(shop_engine, work, apply=False, repeats=2, out=lines.append)  # a dry run is not refused
        assert len(dry.fixes) == 4 and planned == [1]
        note = f"an apply was running while this plan was made (session {first.pid} (dbperf-kit-apply, since "
        assert any(n.startswith(note) for n in dry.plan.notes)
        assert any(line.startswith("note: " + note) for line in lines)
    assert _holder(shop_engine) is None


def test_the_lock_is_released_when_the_loop_fails(shop_engine, monkeypatch):
    def broken(*args, **kwargs):
        assert _holder(shop_engine) is not None  # held from before the plan
        raise RuntimeError("measuring failed")

    monkeypatch.setattr(fix_loop, "measure", broken)
    with pytest.raises(RuntimeError, match="measuring failed"):
        run_loop(shop_engine, read_workload(shop_engine), apply=True, repeats=2, out=None)
    assert _holder(shop_engine) is None
    with applylock.hold(_url(shop_engine)) as again:  # the next apply gets it
        assert again.inherited is False


def test_the_lock_goes_with_a_killed_process(fresh_engine):
    code = ("import sys, time\nfrom kit.safety import applylock\n"
            f"with applylock.hold({_url(fresh_engine)!r}) as lock:\n"
            "    print(lock.pid, flush=True)\n    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(proc.stdout.readline())
        assert _holder(fresh_engine).pid == pid
        proc.send_signal(signal.SIGKILL)  # nothing of it runs: PostgreSQL ends the session, and the lock
        proc.wait(10)
        deadline = time.monotonic() + 10
        while _holder(fresh_engine) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.kill()
    assert _holder(fresh_engine) is None


def test_a_kit_runs_kernels_work_under_its_lock_and_notice_when_it_is_lost(fresh_engine, tmp_path, monkeypatch):
    folder = tmp_path / "20261206T000000.000000Z"
    url = _url(fresh_engine)
    with applylock.hold(url, app=applylock.run_application(folder.name), inherit=False) as run_lock:
        with pytest.raises(ApplyInProgress, match=f"session {run_lock.pid} \\(dbperf-kit-run {folder.name}, since"):
            with applylock.hold(url):
                pass
        monkeypatch.setenv(RUN_DIR_ENV, str(folder))  # a kernel of that run
        with applylock.hold(url) as kernel_lock:
            assert (kernel_lock.pid, kernel_lock.inherited) == (run_lock.pid, True)
            with psycopg.connect(libpq_url(url), autocommit=True) as conn:
                kernel_lock.require(conn)
                conn.execute("SELECT pg_terminate_backend(%s)", [run_lock.pid])  # the run's session ends
                deadline = time.monotonic() + 10
                while applylock.holder(conn) is not None and time.monotonic() < deadline:
                    time.sleep(0.05)
                with pytest.raises(IndexBuildError, match=f"the apply lock of session {run_lock.pid} was lost"):
                    kernel_lock.require(conn)
