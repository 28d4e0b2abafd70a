"""SIGTERM during an apply raised as an exception in the main thread, as Ctrl-C raises
KeyboardInterrupt, so the apply's cleanup runs — cancel its backends, drop what it left INVALID,
release its lock — before the process ends as the signal asked (pure: no database).

Python's default for SIGTERM ends the process at once: no ``finally`` runs, and a concurrent build
whose client vanished goes on in the server (only ``client_connection_check_interval`` stops it,
see :func:`kit.db.sessions.watch_client`).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """SIGTERM as an exception. A KeyboardInterrupt, so whatever cleans up after Ctrl-C cleans up after
    it too: psycopg cancels the statement it is waiting for on one, as the kit's apply does."""


def _raise(signum: int, frame) -> None:
    raise Terminated(f"signal {signal.Signals(signum).name}")


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread. When the block ends by
    it, the default handler is put back and SIGTERM delivered again: the process ends as its sender
    asked, after the cleanup. Nothing changes outside the main thread (Python delivers signals
    there only), inside another such block, or where SIGTERM already has a handler or is ignored
    (whoever set it decided)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    except Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)  # the process ends here
        raise  # only if SIGTERM is blocked in this thread
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
