"""The kit's exceptions, one tree (pure).

    KitError                      anything the kit reports as one line
    ├── ConfigError               bad settings, URL or parameter (what to fix)
    │   └── ParameterError        a notebook parameter unknown or of the wrong type
    ├── ServiceUnavailable        a server cannot be reached or started
    │   ├── DatabaseUnavailable   PostgreSQL unreachable, auth failed, not PostgreSQL
    │   ├── LauncherError         the embedded servers cannot start (binaries, ports)
    │   └── BrowserUnavailable    chromium or Playwright missing or unable to start
    ├── DatabaseRefused           PostgreSQL refused a statement (privileges, read-only role)
    ├── QueryBudgetExceeded       more queries than a budget allows
    ├── IndexBuildError           an index could not be built or verified
    │   └── ApplyInProgress       another session holds the database's apply lock
    ├── UnsafeOperation           a change refused on a database the kit did not create
    ├── LoadFailed                a Locust load process failed or never reported (exit code 1)
    ├── NotebookFailed            a notebook cell raised during ``kit run`` (exit code 1)
    ├── RegressionFound           a ``kit run --fail-on`` rule fired (exit code 3)
    ├── Interrupted               ``kit run`` stopped by SIGINT / SIGTERM (exit code 130 / 143)
    └── FleetFailed               a target of ``kit fleet run`` could not be audited (exit code 1)

The CLI prints ``str(exc)`` of a KitError on one line and exits with ``exc.exit_code``.
Messages say what happened, what was expected, and what to do next; URLs in them are
masked with :func:`kit.config.mask_url`. A message that quotes another error quotes its
:func:`first_line` (masked by the caller where it may hold a URL).
"""

from __future__ import annotations


class KitError(Exception):
    """Base of every error the kit reports to a user."""

    exit_code = 2


class ConfigError(KitError):
    """A setting, URL or argument is wrong."""


class ParameterError(ConfigError):
    """A notebook parameter is unknown or has the wrong type."""


class ServiceUnavailable(KitError):
    """A server the kit needs cannot be reached or started."""


class DatabaseUnavailable(ServiceUnavailable):
    """PostgreSQL cannot be reached, refused the login, or is not PostgreSQL."""


class LauncherError(ServiceUnavailable):
    """The embedded PostgreSQL or Redis cannot be started."""


class BrowserUnavailable(ServiceUnavailable):
    """Chromium or Playwright, which check that charts are drawn, is missing or cannot start."""


class DatabaseRefused(KitError):
    """PostgreSQL refused a statement of a kit command: the role lacks a privilege, the
    transaction is read-only, or the statement failed for a reason the message names."""


class QueryBudgetExceeded(KitError, AssertionError):
    """More queries ran than a budget allows (an AssertionError so pytest shows it as a failure)."""


class IndexBuildError(KitError):
    """An index could not be built, repaired or verified."""


class ApplyInProgress(IndexBuildError):
    """Another session holds the database's apply lock (:mod:`kit.safety.applylock`): nothing was
    planned or changed; the message names the holder."""


class UnsafeOperation(KitError):
    """A change to a database was refused because it is not known to be safe."""


class LoadFailed(KitError):
    """The load's Locust processes exited with an error or without every user's samples."""

    exit_code = 1


class NotebookFailed(KitError):
    """A notebook failed during ``kit run``; the executed notebook is kept at ``output``."""

    exit_code = 1

    def __init__(self, message: str, *, notebook: str, output: str, cell: int | None = None):
        super().__init__(message)
        self.notebook = notebook
        self.output = output
        self.cell = cell


class RegressionFound(KitError):
    """A ``--fail-on`` rule fired: this run regressed against the previous run of its target."""

    exit_code = 3


class Interrupted(KitError):
    """``kit run`` was stopped by a signal: the kernel was interrupted so its cell cleaned up, the
    run's bundle says ``interrupted``. Exit code 128 + the signal's number (130 SIGINT, 143 SIGTERM),
    as a shell reports a process a signal ended."""

    def __init__(self, message: str, *, signum: int):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class FleetFailed(KitError):
    """One or more targets of a fleet round could not be audited (each target's line says why)."""

    exit_code = 1


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, or its class name when the message is empty. Masks
    nothing: a caller quoting an error that may hold a URL or the user's data masks the result."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
