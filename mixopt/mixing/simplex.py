"""Geometry of the simplex shared by every layer: projection onto a box-simplex, the KL
divergence between mixtures, and the error raised when no mixture satisfies the constraints.

The lowest module of :mod:`mixopt.mixing` (it imports nothing of the package), so that
:mod:`~mixopt.mixing.hierarchy`, :mod:`~mixopt.mixing.constraints`, the solver and the
reference constraint all build on it without importing each other in a circle.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class InfeasibleConstraintsError(ValueError):
    """No mixture on the simplex satisfies the constraints (the message says why)."""


def kl_divergence(w: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """``KL(w || prior) = sum_i w_i log(w_i / prior_i)`` (rows of ``w``), ``0 log 0 = 0``."""
    W = np.atleast_2d(w)
    p = np.clip(prior, 1e-12, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(W > 0, W * (np.log(np.clip(W, 1e-300, None)) - np.log(p)), 0.0)
    return t.sum(axis=1)


def project_box_simplex(w: Any, lo: np.ndarray, hi: np.ndarray, iters: int = 100) -> np.ndarray:
    """Project onto ``{x : lo <= x <= hi, sum x = 1}``: ``x = clip(w - tau, lo, hi)`` with ``tau``
    found by bisection (vectorised over rows)."""
    W = np.atleast_2d(np.asarray(w, dtype=float))
    lo = np.asarray(lo, dtype=float)
    hi = np.asarray(hi, dtype=float)
    a = (W - hi[None, :]).min(axis=1) - 1.0  # sum(clip) >= 1 at tau = a
    b = (W - lo[None, :]).max(axis=1) + 1.0  # sum(clip) <= 1 at tau = b
    for _ in range(iters):
        m = 0.5 * (a + b)
        s = np.clip(W - m[:, None], lo, hi).sum(axis=1)
        big = s > 1.0
        a = np.where(big, m, a)
        b = np.where(big, b, m)
    X = np.clip(W - 0.5 * (a + b)[:, None], lo, hi)
    # remove the tiny residual on the coordinates that are strictly inside their box
    resid = 1.0 - X.sum(axis=1)
    free = (X > lo + 1e-12) & (X < hi - 1e-12)
    nfree = free.sum(axis=1)
    adj = np.where(nfree > 0, resid / np.maximum(nfree, 1), 0.0)
    X = np.clip(X + free * adj[:, None], lo, hi)
    return X[0] if np.asarray(w).ndim == 1 else X
