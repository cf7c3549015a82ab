"""The CLI's one error path: every failure of every command is one line on stderr and an
:class:`ExitStatus` (the README's CLI section has the table)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from enum import IntEnum
from typing import Any, TypeVar

import typer
from rich.markup import escape

from mixopt.cli.output import err_console
from mixopt.client import ConnectionFailed, JobFailed, JobTimeout, MixoptError
from mixopt.extras import MissingExtra, require

F = TypeVar("F", bound=Callable[..., Any])


class ExitStatus(IntEnum):
    """Exit codes of the ``mixopt`` command (as httpie's ``ExitStatus``)."""

    #: done
    SUCCESS = 0
    #: the API refused the request: 400/422 (the message names the field), 401/403 (token),
    #: 404 (unknown id), 409 (conflict)
    API_REFUSED = 1
    #: bad command line or local input: an unknown option, a file not found, bad JSON/YAML
    USAGE = 2
    #: the command needs an optional extra that is not installed (the message says which)
    MISSING_EXTRA = 3
    #: the server cannot be reached, or failed (5xx)
    SERVER = 4
    #: a job failed or was cancelled (with its reason)
    JOB_FAILED = 5
    #: gave up waiting for a job (``--timeout``)
    JOB_TIMEOUT = 6


class CliError(Exception):
    """A failure the command itself detects: ``message`` and its exit ``status``."""

    def __init__(self, message: str, status: ExitStatus = ExitStatus.USAGE):
        super().__init__(message)
        self.status = status


def classify(exc: BaseException) -> tuple[ExitStatus, str]:
    """The exit status and the one-line message of a command's failure."""
    if isinstance(exc, CliError):
        return exc.status, str(exc)
    if isinstance(exc, ConnectionFailed):
        return ExitStatus.SERVER, (
            f"{exc.detail} (start it with `mixopt serve`, or set --url / MIXOPT_URL)"
        )
    if isinstance(exc, JobFailed):
        return ExitStatus.JOB_FAILED, str(exc)
    if isinstance(exc, JobTimeout):
        return ExitStatus.JOB_TIMEOUT, f"{exc}; follow it with `mixopt jobs watch {exc.job.id}`"
    if isinstance(exc, MixoptError):
        server = (exc.status or 0) >= 500
        return (ExitStatus.SERVER if server else ExitStatus.API_REFUSED), str(exc)
    if isinstance(exc, MissingExtra):
        return ExitStatus.MISSING_EXTRA, str(exc)
    return ExitStatus.USAGE, str(exc)  # ValueError, OSError: bad local input


#: what :func:`handles_errors` turns into an exit status; anything else is a bug (traceback)
HANDLED = (CliError, MixoptError, JobTimeout, MissingExtra, ValueError, OSError)


def fail(exc: BaseException) -> typer.Exit:
    """Print ``exc`` as one line on stderr; the ``typer.Exit`` to raise with its status."""
    status, message = classify(exc)
    one_line = " ".join(message.split())
    err_console.print(f"[red]error:[/red] {escape(one_line)}", highlight=False)
    return typer.Exit(int(status))


def handles_errors(fn: F) -> F:
    """Every command goes through here: one clear line on stderr and its :class:`ExitStatus`
    instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except HANDLED as exc:
            raise fail(exc) from None

    wrapper.handles_errors = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def need(extra: str) -> None:
    """Raise :class:`MissingExtra` (exit 3) unless ``extra`` is installed."""
    require(extra)
