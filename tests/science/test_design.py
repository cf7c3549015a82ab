"""Swarm design (RegMix) and GP-guided suggestions: draws sum to 1, respect caps and
constraints, are unique and non-trivially spread; EI formula; suggestions avoid existing
runs and move toward the optimum of a known law."""

from __future__ import annotations

import numpy as np
import pytest

from mixopt.mixing.constraints import Constraints
from mixopt.mixing.design import expected_improvement, regmix_swarm, suggest_next

PRIOR = np.array([0.40, 0.25, 0.15, 0.1, 0.06, 0.03, 0.01])


def test_swarm_respects_caps_sums_and_is_unique():
    S = regmix_swarm(PRIOR, 128, random_state=0)
    assert S.shape == (128, 7)
    np.testing.assert_allclose(S.sum(axis=1), 1.0, atol=1e-9)
    assert np.all(S >= 0) and np.all(S <= np.minimum(15 * PRIOR, 1.0) + 1e-9)
    assert len(np.unique(np.round(S, 9), axis=0)) == 128
    assert np.all((S == 0) | (S >= 0.99 * 2e-4))  # tiny weights zeroed (then renormalised)
    np.testing.assert_array_equal(S, regmix_swarm(PRIOR, 128, random_state=0))  # seeded


def test_swarm_with_constraints_caps_and_lower():
    c = Constraints(
        token_counts=(PRIOR * 1000).tolist(),
        target_tokens=1000,
        max_epochs=2,
        lower=[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.005],
    )
    S = regmix_swarm(PRIOR, 64, constraints=c, random_state=1)
    lo, hi = c.feasible_bounds([f"d{i}" for i in range(7)])
    assert np.all(S <= hi + 1e-9) and np.all(S >= lo - 1e-9)
    np.testing.assert_allclose(S.sum(axis=1), 1.0, atol=1e-9)


def test_space_filling_spreads_more_than_random():
    def min_dist(S):
        d = np.linalg.norm(S[:, None] - S[None], axis=2)
        return d[np.triu_indices(len(S), 1)].min()

    a = regmix_swarm(PRIOR, 32, random_state=2)
    b = regmix_swarm(PRIOR, 32, random_state=2, space_filling=True)
    assert min_dist(b) > min_dist(a)


def test_swarm_impossible_raises():
    with pytest.raises(ValueError, match="sum to"):
        regmix_swarm([0.5, 0.5], 4, max_usage=0.5)


def test_expected_improvement_formula():
    assert expected_improvement(np.array([1.0]), np.array([1e-15]), best=2.0)[0] == pytest.approx(
        1.0
    )
    assert expected_improvement(np.array([0.0]), np.array([1.0]), best=0.0)[0] == pytest.approx(
        1 / np.sqrt(2 * np.pi)
    )


def test_suggest_next_uses_gp_and_is_feasible():
    rng = np.random.default_rng(0)
    opt = np.array([0.5, 0.3, 0.2])
    X = rng.dirichlet(np.ones(3), 25)
    y = ((X - opt) ** 2).sum(axis=1)
    c = Constraints(upper=[0.8, 0.8, 0.8])
    S = suggest_next(
        6, X, y, constraints=c, prior=[1, 1, 1], random_state=0, domains=["a", "b", "c"]
    )
    assert S.shape == (6, 3)
    np.testing.assert_allclose(S.sum(axis=1), 1.0, atol=1e-9)
    assert np.all(S <= 0.8 + 1e-9)
    assert np.min(np.linalg.norm(S[:, None] - X[None], axis=2)) >= 0.02 - 1e-12
    # the EI picks are closer to the optimum than the average existing run
    best_new = np.min(((S - opt) ** 2).sum(axis=1))
    assert best_new < np.median(y)
    # no runs yet -> a swarm
    assert suggest_next(5, None, None, prior=[0.2, 0.3, 0.5]).shape == (5, 3)
