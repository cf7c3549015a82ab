"""Pareto front of predicted losses (mixopt.mixing.pareto): the non-dominated filter on a
hand-made case, and candidates that respect the constraints."""

from __future__ import annotations

import numpy as np
import pytest

from mixopt.mixing import pareto
from mixopt.mixing.constraints import Constraints, InfeasibleConstraintsError


def test_non_dominated_on_a_hand_made_case():
    # (web loss, code loss): a and b and d trade off; c is beaten by b on both; e ties a on web
    # and is worse on code; f equals b (a duplicate stays on the front); g has a NaN
    P = [
        [1.0, 5.0],  # a: front
        [2.0, 3.0],  # b: front
        [2.5, 3.5],  # c: dominated by b
        [4.0, 1.0],  # d: front
        [1.0, 6.0],  # e: dominated by a (equal web, worse code)
        [2.0, 3.0],  # f: duplicate of b, front
        [np.nan, 0.0],  # g: not finite, never on the front
        [5.0, 5.0],
    ]  # h: dominated by b and d
    mask = pareto.non_dominated(P)
    assert mask.tolist() == [True, True, False, True, False, True, False, False]
    assert pareto.front_order(P, mask).tolist() == [0, 1, 5, 3]
    assert pareto.dominates([2.0, 3.0], [2.5, 3.5]) and not pareto.dominates([2.0, 3.0], [2.0, 3.0])


def test_non_dominated_in_three_metrics_and_chunks():
    # a point better on the third metric alone survives although it loses on the first two
    P = np.array([[1.0, 1.0, 9.0], [2.0, 2.0, 1.0], [2.0, 2.0, 9.0]])
    assert pareto.non_dominated(P).tolist() == [True, True, False]
    rng = np.random.default_rng(0)
    Q = rng.random((700, 2))
    small = pareto.non_dominated(Q, chunk=7)
    brute = [not any(pareto.dominates(Q[j], Q[i]) for j in range(len(Q))) for i in range(len(Q))]
    assert small.tolist() == brute and 1 <= small.sum() < 40
    assert pareto.non_dominated(np.zeros((0, 2))).size == 0


def test_candidates_respect_constraints_and_cover_the_simplex():
    domains = ["web", "code", "math"]
    c = Constraints(
        upper={"web": 0.6},
        lower={"math": 0.05},
        token_counts=[1e9, 1e9, 1e7],
        target_tokens=1e9,
        max_epochs=4,
    )  # math's cap: 1e7 x 4 / 1e9 = 0.04 < its 0.05 lower bound
    with pytest.raises(InfeasibleConstraintsError):
        pareto.sample_candidates(100, domains, c)
    c = Constraints(
        upper={"web": 0.6},
        lower={"math": 0.01},
        token_counts=[1e9, 1e9, 1e7],
        target_tokens=1e9,
        max_epochs=4,
    )
    W = pareto.sample_candidates(2000, domains, c, prior=[0.5, 0.3, 0.2], random_state=1)
    assert W.shape == (2000, 3)
    assert np.allclose(W.sum(axis=1), 1.0, atol=1e-6)
    assert (
        W[:, 0].max() <= 0.6 + 1e-6
        and W[:, 2].min() >= 0.01 - 1e-6
        and W[:, 2].max() <= 0.04 + 1e-6
    )
    # small Dirichlet strengths reach the corners the constraints allow, large ones the middle
    assert W[:, 0].max() > 0.59 and W[:, 1].max() > 0.95 and W[:, 1].min() < 0.4
    again = pareto.sample_candidates(2000, domains, c, prior=[0.5, 0.3, 0.2], random_state=1)
    assert np.array_equal(again, W)  # seeded
    with pytest.raises(ValueError):
        pareto.sample_candidates(0, domains)
    with pytest.raises(ValueError):
        pareto.sample_candidates(10, domains, prior=[1.0, -1.0, 1.0])


def test_group_constraints_hold_for_candidates():
    domains = ["web:news", "web:blog", "code"]
    c = Constraints(groups={"web": {"max": 0.5}})
    W = pareto.sample_candidates(500, domains, c, random_state=0)
    assert (W[:, 0] + W[:, 1]).max() <= 0.5 + 1e-6
