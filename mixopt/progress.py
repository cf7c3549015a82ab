"""Progress and cooperative cancellation for long computations, without a server.

Long science loops (cross-validation folds, ``auto``'s candidates, multi-start restarts,
bootstrap refits, recommendation simulations, training steps) take an optional
``progress`` callback and call it between units of work::

    def fit(..., progress: ProgressFn | None = None):
        for i, fold in enumerate(folds):
            report(progress, i / len(folds), f"fold {i + 1}/{len(folds)}")
            ...

The caller decides what a call does: a Celery task records the fraction and message on its
job and raises :class:`Cancelled` when the job's cancel was requested, which unwinds the
computation at the next checkpoint. A notebook passes nothing.
"""

from __future__ import annotations

from collections.abc import Callable

#: ``progress(fraction in [0, 1], message)``; may raise :class:`Cancelled`
ProgressFn = Callable[[float, str], None]


class Cancelled(Exception):
    """Raised from a progress callback to stop the computation at its next checkpoint."""


def report(progress: ProgressFn | None, fraction: float, message: str = "") -> None:
    """Call ``progress`` if there is one, with ``fraction`` clipped to [0, 1]."""
    if progress is not None:
        progress(min(1.0, max(0.0, float(fraction))), message)


def scaled(progress: ProgressFn | None, start: float, stop: float) -> ProgressFn | None:
    """A callback for a sub-task that maps its [0, 1] onto [start, stop] of ``progress``."""
    if progress is None:
        return None
    outer = progress

    def inner(f: float, msg: str = "") -> None:
        outer(start + (stop - start) * min(1.0, max(0.0, f)), msg)

    return inner
