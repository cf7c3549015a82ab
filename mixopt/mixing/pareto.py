"""Pareto fronts of a fitted model's per-metric predictions.

With several objective metrics (say the validation loss on web text and on code) a mixture
that lowers one loss often raises another; no single objective weighting is "the" answer. The
fitted model predicts every metric for any mixture, so the trade-off can be read off directly:
sample candidate mixtures under the project's constraints, predict each metric, and keep the
non-dominated ones (Pareto optimal for minimisation: no other candidate is at least as good on
every metric and strictly better on one). This is the "Pareto front of the fitted model's
predictions" against a reference that regmixer and olmix's reference constraints reason about
(a recommendation constrained to be no worse than the reference on every metric must lie in the
part of the front that dominates the reference).

Candidates are drawn the way RegMix draws its swarm (Liu et al. 2024, section 3.2; sail-sg/regmix):
Dirichlet samples whose concentration is the prior mixture times a strength picked among 15
log-spaced values in ``[0.1, 5]`` (small strengths reach the simplex's corners, large ones stay
near the prior), then projected onto the feasible set (bounds, availability caps, fixed weights,
group totals: :meth:`mixopt.mixing.constraints.Constraints.project`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mixopt.mixing.constraints import Constraints
from mixopt.mixing.design import PAPER_STRENGTHS as STRENGTHS  # RegMix's 15 strengths in [0.1, 5]

#: the most candidates one call draws (the dashboard asks for 2,000)
MAX_CANDIDATES = 20_000


def non_dominated(P: Any, chunk: int = 512) -> np.ndarray:
    """Boolean mask of the rows of ``P`` (``n x m``, lower is better in every column) that no
    other row dominates. Row ``j`` dominates row ``i`` when ``P[j] <= P[i]`` everywhere and
    ``P[j] < P[i]`` somewhere; duplicates of a non-dominated row are all kept.

    Rows with a non-finite value are never on the front (and dominate nothing).
    """
    P = np.atleast_2d(np.asarray(P, dtype=float))
    n = P.shape[0]
    if n == 0:
        return np.zeros(0, dtype=bool)
    finite = np.isfinite(P).all(axis=1)
    Q = np.where(finite[:, None], P, np.inf)
    keep = finite.copy()
    for start in range(0, n, chunk):
        block = Q[start : start + chunk]  # (b, m): the rows being tested
        le = (Q[None, :, :] <= block[:, None, :]).all(
            axis=2
        )  # (b, n): row j is <= row i everywhere
        lt = (Q[None, :, :] < block[:, None, :]).any(axis=2)
        dominated = (le & lt & finite[None, :]).any(axis=1)
        keep[start : start + chunk] &= ~dominated
    return keep


def front_order(P: Any, mask: np.ndarray | None = None, column: int = 0) -> np.ndarray:
    """Indices of the front's rows sorted by one metric (for drawing the front as a line)."""
    P = np.atleast_2d(np.asarray(P, dtype=float))
    mask = non_dominated(P) if mask is None else np.asarray(mask, dtype=bool)
    idx = np.flatnonzero(mask)
    return idx[np.argsort(P[idx, column], kind="stable")]


def dominates(a: Any, b: Any) -> bool:
    """``a`` dominates ``b`` (minimisation): no worse on every metric, better on one."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return bool(np.all(a <= b) and np.any(a < b))


def count_dominating(P: Any, row: Any) -> int:
    """How many rows of ``P`` dominate ``row`` (at least as good on every metric, strictly
    better on one; minimisation)."""
    P = np.atleast_2d(np.asarray(P, dtype=float))
    r = np.asarray(row, dtype=float).ravel()
    return int(((P <= r).all(axis=1) & (P < r).any(axis=1)).sum())


def fronts(P: Any, ix: int, iy: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The front on the two plotted metrics ``ix``, ``iy`` (mask), the front on all metrics
    (mask) and the plotted front's rows ordered along metric ``ix``."""
    P = np.atleast_2d(np.asarray(P, dtype=float))
    front2 = non_dominated(P[:, [ix, iy]])
    return front2, non_dominated(P), front_order(P[:, [ix, iy]], front2)


def sample_candidates(
    count: int,
    domains: Sequence[str],
    constraints: Constraints | Mapping[str, Any] | None = None,
    prior: Any = None,
    random_state: int = 0,
) -> np.ndarray:
    """``count`` candidate mixtures (``count x K``) on the simplex under ``constraints``.

    Parameters
    ----------
    count : how many (at most :data:`MAX_CANDIDATES`).
    domains : the domain order of the columns.
    constraints : a :class:`Constraints` or its dict (``None``: the whole simplex).
    prior : the mixture the draws centre on (natural, say); uniform when ``None``.
    random_state : seed of the generator.

    Raises
    ------
    InfeasibleConstraintsError
        When no mixture satisfies the constraints.
    """
    count = int(count)
    if not 1 <= count <= MAX_CANDIDATES:
        raise ValueError(f"count must be in [1, {MAX_CANDIDATES}], not {count}")
    names = [str(d) for d in domains]
    K = len(names)
    if K == 0:
        raise ValueError("no domains")
    c = constraints if isinstance(constraints, Constraints) else Constraints.from_dict(constraints)
    p = np.full(K, 1.0 / K) if prior is None else np.asarray(prior, dtype=float).ravel()
    if p.size != K or not np.isfinite(p).all() or np.any(p < 0) or p.sum() <= 0:
        raise ValueError(f"prior must be {K} non-negative weights")
    p = np.maximum(p / p.sum(), 1e-6)
    rng = np.random.default_rng(random_state)
    strength = rng.choice(STRENGTHS, size=count)
    alpha = strength[:, None] * p[None, :]  # RegMix: Dirichlet(strength x prior), mean the prior
    W = rng.gamma(alpha)
    W = W / np.maximum(W.sum(axis=1, keepdims=True), 1e-300)
    bad = ~np.isfinite(W).all(axis=1) | (W.sum(axis=1) <= 0)
    W[bad] = p  # a draw that underflowed everywhere becomes the prior
    return np.clip(c.project(W, names), 0.0, 1.0)
