"""Ctrl-C and SIGTERM during ``kit run``: passed on to the kernel as an interrupt, so that the running
cell's own cleanup runs before the run stops and says so in one line. It talks to no server; it
signals its own kernel only.

Without it (papermill 2.7, nbclient 0.11, jupyter_client 8.10, ipykernel 7.4; checked on this
machine):

- jupyter_client starts each kernel in a new session (``start_new_session=True`` in its
  ``launcher.py``). A terminal's Ctrl-C goes to the foreground process group: it reaches
  ``kit run`` and never the kernel, and so does a SIGTERM sent to ``kit run``.
- papermill drives nbclient's synchronous ``setup_kernel``, which installs no signal handler. Only
  the async ``async_setup_kernel`` does, and its handler only shuts the kernel down. So the
  KeyboardInterrupt is raised wherever ``kit run``'s main thread is: inside nbclient's asyncio
  loop, waiting for the cell's reply. nbclient's cleanup then calls ``shutdown_kernel``. That
  interrupts the kernel (SIGINT to its process group: ipykernel's ``interrupt_mode`` is
  "signal"), sends a shutdown request at once and kills the kernel after its grace time. The
  cell's handler starts but is cut short: an apply's build went on in the server for seconds.
  The kernel then answers on sockets the parent has closed, which prints the ``ZMQError: Socket
  operation on non-socket`` traceback on the terminal (the kernel shares ``kit run``'s stderr).
  click makes the KeyboardInterrupt "Aborted" (exit 130). The bundle said ``ok`` with no
  notebook in it, because ``all()`` of nothing is true.
- SIGTERM: Python's default ends ``kit run`` at once, so no ``finally`` runs and no bundle is
  written. The kernel, in its own session, lives on until ipykernel's parent poller sees its
  parent gone (within a second) and calls ``os._exit``. Its build goes on in the server.

With :func:`forwarding` in place for the run, the first SIGINT or SIGTERM goes to the kernel as
jupyter_client's ``interrupt_kernel`` would send it: SIGINT to the kernel's process group. The
cell gets a KeyboardInterrupt and its cleanup runs to the end: the kit's apply cancels its builds,
drops what they left INVALID and releases its lock. The notebook ends with that error and papermill
writes it. The run then stops: no further notebook, the bundle says ``interrupted``, one line,
exit 130 / 143. A second signal, or a cell still running ``grace_s`` after the first, raises
KeyboardInterrupt here, and nbclient's own cleanup takes over as described above.
"""

from __future__ import annotations

import _thread
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import psutil

GRACE_S = 60.0  # how long an interrupted cell may take to clean up before the kernel is shut down


@dataclass
class Caught:
    """The first signal ``kit run`` got (None: none), and where it goes."""

    grace_s: float = GRACE_S
    signum: int | None = None
    kernel_file: Path | None = None  # the connection file of the kernel running a notebook now
    closing: bool = False  # writing the summary and the bundle: a signal is only recorded
    _timer: threading.Timer | None = None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else "SIGINT"

    def handle(self, signum: int, frame: FrameType | None) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
        if self.closing:
            return
        if first and self.kernel_file is not None and interrupt_kernel(self.kernel_file):
            # the cell cleans up and ends; if it does not within grace_s, stop waiting for it
            self._timer = threading.Timer(self.grace_s, _thread.interrupt_main)
            self._timer.daemon = True
            self._timer.start()
            return
        raise KeyboardInterrupt  # no kernel to clean up, or asked twice: stop here

    @contextmanager
    def kernel(self, connection_file: Path) -> Iterator[None]:
        """While a notebook runs on the kernel started with ``connection_file``."""
        self.kernel_file = connection_file
        try:
            yield
        finally:
            self.kernel_file = None
            if self._timer is not None:
                self._timer.cancel()


def interrupt_kernel(connection_file: Path) -> bool:
    """SIGINT to the process group of this process's kernel started with ``connection_file`` (what
    jupyter_client's ``interrupt_kernel`` sends); False when there is no such kernel (yet)."""
    wanted = str(connection_file)
    for child in psutil.Process().children():
        try:
            if wanted not in child.cmdline():
                continue
            if os.getpgid(child.pid) == child.pid:  # its own session and group, as jupyter_client starts it
                os.killpg(child.pid, signal.SIGINT)
            else:
                child.send_signal(signal.SIGINT)
            return True
        except (psutil.Error, ProcessLookupError):
            continue
    return False


@contextmanager
def forwarding(grace_s: float = GRACE_S) -> Iterator[Caught]:
    """SIGINT and SIGTERM handled by a :class:`Caught` for the block (in the main thread only: Python
    delivers signals there; elsewhere the block runs with the process's handlers)."""
    caught = Caught(grace_s=grace_s)
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    before = {s: signal.signal(s, caught.handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield caught
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
        if caught._timer is not None:
            caught._timer.cancel()
