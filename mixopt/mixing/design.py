"""Designing proxy runs: RegMix's swarm, a space-filling variant, and GP-guided suggestions.

RegMix swarm (Liu et al. 2024, Sec. 3; ``mixture_config/synthesize_mixture.py``):

1. prior = token share, tempered ``p^t`` renormalised (``t = 0.5``);
2. each draw ``w ~ Dirichlet(s * p)`` with the strength ``s`` picked at random among 15
   log-spaced values in ``[0.1, 5]``;
3. draws with a domain above its upper bound ``min(15 x raw token share, 1)`` are rejected
   (15 = allowed repetitions); here the bound is also min'ed with the constraints' caps;
4. weights below ``min_weight`` (2e-4) are zeroed, the rest renormalised and rounded to
   multiples of ``min_weight``;
5. ``count x 100`` draws are made, duplicates removed, and ``count`` picked at random (or by
   greedy max-min distance with ``space_filling=True``).

``suggest_next``: once runs exist, a GP (:mod:`mixopt.mixing.gp`) proposes the next runs by
expected improvement (Jones et al. 1998, Eq. 15, for minimisation) over a feasible candidate
pool (Dirichlet draws around the prior plus neighbourhoods of the best runs), mixed with the
candidates of largest posterior std (pure exploration).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import norm

from mixopt.mixing import hierarchy
from mixopt.mixing.constraints import Constraints, project_box_simplex
from mixopt.mixing.gp import GaussianProcessMixing

PAPER_TEMPERATURE = 0.5
PAPER_MIN_STRENGTH = 0.1
PAPER_MAX_STRENGTH = 5.0
PAPER_N_STRENGTHS = 15
PAPER_MAX_USAGE = 15.0
PAPER_MIN_WEIGHT = 2e-4
PAPER_OVERSAMPLE = 100
#: the Dirichlet strengths the draws pick from (RegMix: 15 log-spaced values in [0.1, 5])
PAPER_STRENGTHS = np.logspace(
    np.log10(PAPER_MIN_STRENGTH), np.log10(PAPER_MAX_STRENGTH), PAPER_N_STRENGTHS
)


def _prior(prior: Any, K: int | None = None) -> np.ndarray:
    p = np.clip(np.asarray(prior, dtype=float).ravel(), 0.0, None)
    if p.sum() <= 0 or (K is not None and p.size != K):
        raise ValueError("prior must be non-negative with a positive sum (one entry per domain)")
    return p / p.sum()


def _bounds(constraints: Constraints | dict | None, domains: list[str] | None, K: int):
    if constraints is None:
        return np.zeros(K), np.ones(K)
    c = constraints if isinstance(constraints, Constraints) else Constraints.from_dict(constraints)
    return c.feasible_bounds(domains or [f"d{i}" for i in range(K)])


def maxmin_select(
    pool: np.ndarray, count: int, rng: np.random.Generator, existing: np.ndarray | None = None
) -> np.ndarray:
    """Greedy max-min (farthest point) selection of ``count`` rows of ``pool``."""
    pool = np.asarray(pool, dtype=float)
    count = min(int(count), pool.shape[0])
    if existing is not None and len(existing):
        d = np.min(
            np.linalg.norm(pool[:, None, :] - np.asarray(existing)[None, :, :], axis=2), axis=1
        )
        chosen = []
    else:
        first = int(rng.integers(pool.shape[0]))
        chosen = [first]
        d = np.linalg.norm(pool - pool[first], axis=1)
    while len(chosen) < count:
        i = int(np.argmax(d))
        chosen.append(i)
        d = np.minimum(d, np.linalg.norm(pool - pool[i], axis=1))
    return pool[np.array(chosen, dtype=int)]


def regmix_swarm(
    prior: Any,
    count: int,
    *,
    constraints: Constraints | dict | None = None,
    domains: list[str] | None = None,
    temperature: float = PAPER_TEMPERATURE,
    min_strength: float = PAPER_MIN_STRENGTH,
    max_strength: float = PAPER_MAX_STRENGTH,
    n_strengths: int = PAPER_N_STRENGTHS,
    max_usage: float = PAPER_MAX_USAGE,
    min_weight: float = PAPER_MIN_WEIGHT,
    oversample: int = PAPER_OVERSAMPLE,
    space_filling: bool = False,
    random_state: int | None = 0,
) -> np.ndarray:
    """RegMix swarm of ``count`` unique mixtures ``(count, K)`` (see the module docstring).

    ``constraints`` (optional) add caps/upper bounds (rejection) and lower bounds / fixed
    weights (each accepted draw is projected onto the feasible set, then rounded again).
    Raises ``ValueError`` when fewer than ``count`` unique feasible mixtures can be drawn.
    """
    rng = np.random.default_rng(random_state)
    raw = _prior(prior)
    K = raw.size
    lo, hi = _bounds(constraints, domains, K)
    upper = np.minimum(np.minimum(raw * float(max_usage), 1.0), hi)
    if upper.sum() < 1 - 1e-9:
        raise ValueError(
            f"the per-domain upper bounds sum to {upper.sum():.4g} < 1: no mixture fits"
        )
    tempered = raw ** float(temperature) if temperature != 1.0 else raw
    tempered = tempered / tempered.sum()
    strengths = np.logspace(np.log10(min_strength), np.log10(max_strength), int(n_strengths))
    need_projection = bool(np.any(lo > 0))
    accepted: list[np.ndarray] = []
    n_unique = 0
    for _attempt in range(10):
        n_draw = int(count) * int(oversample)
        which = rng.integers(0, len(strengths), n_draw)  # strength picked at random per draw
        W = np.vstack(
            [
                rng.dirichlet(
                    np.maximum(tempered * strengths[j], 1e-12), size=int((which == j).sum())
                )
                for j in range(len(strengths))
            ]
        )
        W = W[rng.permutation(W.shape[0])]
        W = W[np.all(W <= upper + 1e-12, axis=1)]  # RegMix's rejection on the upper bound
        W = np.where(W < min_weight, 0.0, W)
        W = W[W.sum(axis=1) > 0]
        W = W / W.sum(axis=1, keepdims=True)
        if need_projection:
            W = project_box_simplex(W, lo, upper)
        W = np.round(W / min_weight) * min_weight
        W = W[W.sum(axis=1) > 0]
        W = W / W.sum(axis=1, keepdims=True)
        W = W[np.all(W <= upper + 1e-9, axis=1) & np.all(W >= lo - 1e-9, axis=1)]
        accepted.append(W)
        pool = np.unique(np.round(np.vstack(accepted), 9), axis=0)
        n_unique = pool.shape[0]
        if n_unique >= count:
            break
    else:
        raise ValueError(
            f"only {n_unique} unique feasible mixtures found for {count} requested; "
            "relax the constraints or lower min_weight"
        )
    if space_filling:
        return maxmin_select(pool, count, rng)
    return pool[rng.choice(pool.shape[0], int(count), replace=False)]


def expected_improvement(
    mu: np.ndarray, sd: np.ndarray, best: float, xi: float = 0.0
) -> np.ndarray:
    """EI for minimisation: ``(best - mu - xi) Phi(z) + sd phi(z)``,
    ``z = (best - mu - xi) / sd``."""
    sd = np.maximum(sd, 1e-12)
    imp = best - mu - xi
    z = imp / sd
    return imp * norm.cdf(z) + sd * norm.pdf(z)


def suggest_next(
    count: int,
    X: Any = None,
    y: Any = None,
    constraints: Constraints | dict | None = None,
    prior: Any = None,
    random_state: int | None = 0,
    *,
    domains: list[str] | None = None,
    explore_fraction: float = 0.25,
    n_candidates: int = 4000,
    min_distance: float = 0.02,
    gp_params: dict | None = None,
) -> np.ndarray:
    """Next ``count`` runs to train.

    Without runs (fewer than 3): a RegMix swarm (space-filling). With runs: a GP on ``(X, y)``
    scores a feasible candidate pool; ``round(count * explore_fraction)`` candidates of largest
    posterior std, the rest by expected improvement, greedily keeping candidates at least
    ``min_distance`` (L2) from the runs and from each other.
    """
    rng = np.random.default_rng(random_state)
    if X is None or y is None or len(X) < 3:
        if prior is None:
            if X is None:
                raise ValueError("suggest_next needs a prior or runs")
            prior = np.full(np.asarray(X).shape[1], 1.0)
        return regmix_swarm(
            prior,
            count,
            constraints=constraints,
            domains=domains,
            space_filling=True,
            random_state=random_state,
        )
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float).ravel()
    K = X.shape[1]
    p = _prior(prior if prior is not None else np.ones(K), K)
    lo, hi = _bounds(constraints, domains, K)
    gp = GaussianProcessMixing(
        **(gp_params or {"random_state": 0 if random_state is None else int(random_state)})
    )
    gp.fit(X, y)
    n_pool = int(n_candidates) // 2
    s = PAPER_STRENGTHS[rng.integers(0, len(PAPER_STRENGTHS), n_pool)]
    pool = rng.gamma(np.maximum(np.sqrt(p)[None, :] * s[:, None] / np.sqrt(p).sum(), 1e-9))
    pool = pool / np.maximum(pool.sum(axis=1, keepdims=True), 1e-300)
    best_runs = X[np.argsort(y)[: max(1, min(5, len(y)))]]
    near = np.vstack(
        [
            rng.dirichlet(50.0 * np.maximum(b, 1e-3), size=n_pool // len(best_runs))
            for b in best_runs
        ]
    )
    C = project_box_simplex(np.vstack([pool, near]), lo, hi)
    mu, sd = gp.predict(C, return_std=True)
    mu, sd = mu[:, 0], sd[:, 0]
    ei = expected_improvement(mu, sd, float(y.min()))
    n_explore = int(round(count * float(explore_fraction)))
    chosen: list[np.ndarray] = []

    def far(c):
        ref = np.vstack([X] + chosen) if chosen else X
        return np.min(np.linalg.norm(ref - c, axis=1)) >= min_distance

    for score, n_take in ((ei, count - n_explore), (sd, n_explore)):
        taken = 0
        for i in np.argsort(-score):
            if taken >= n_take:
                break
            if far(C[i]):
                chosen.append(C[i])
                taken += 1
    if len(chosen) < count:  # fill with space-filling picks from the pool
        rest = maxmin_select(
            C, count - len(chosen), rng, existing=np.vstack([X] + chosen) if chosen else X
        )
        chosen.extend(list(rest))
    return np.array(chosen[:count])


def hierarchical_swarm(
    prior: Any,
    count: int,
    *,
    domains: Sequence[str],
    constraints: Any = None,
    temperature: float = 0.5,
    min_weight: float = 2e-4,
    oversample: int = 20,
    random_state: int = 0,
) -> np.ndarray:
    """A swarm drawn group first, then within each group (olmix's nested mixes).

    RegMix's recipe (:func:`regmix_swarm`) with the flat Dirichlet replaced by
    :func:`~mixopt.mixing.hierarchy.hierarchical_dirichlet`: prior tempered ``p^t``, a strength
    per draw among 15 log-spaced values in ``[0.1, 5]``; every draw is projected onto the
    constraints (bounds, caps, fixed weights and group totals), weights below ``min_weight`` are
    zeroed where the constraints allow, duplicates (at ``min_weight`` resolution) removed, and
    ``count`` kept.
    """
    rng = np.random.default_rng(random_state)
    domains = [str(d) for d in domains]
    c = (
        constraints
        if isinstance(constraints, Constraints)
        else Constraints.from_dict(constraints or {})
    )
    p = np.clip(np.asarray(prior, dtype=float).ravel(), 0.0, None) ** float(temperature)
    strengths = np.logspace(np.log10(0.1), np.log10(5.0), 15)
    W = hierarchy.hierarchical_dirichlet(
        int(count) * int(oversample), p, domains, c.group_of, strengths, rng
    )
    W = np.where(W < float(min_weight), 0.0, W)
    W = c.project(W / W.sum(axis=1, keepdims=True), domains)
    key = np.round(W / max(float(min_weight), 1e-6)).astype(np.int64)
    _, first = np.unique(key, axis=0, return_index=True)
    W = W[np.sort(first)]
    if W.shape[0] < int(count):
        raise ValueError(
            f"only {W.shape[0]} distinct mixtures satisfy the constraints; ask for fewer runs"
        )
    return W[rng.choice(W.shape[0], int(count), replace=False)]
