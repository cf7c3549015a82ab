"""Staged mixtures: each phase's mixture covers its own token budget under its own objective
weights, and the epoch caps hold across phases (a domain the first phase used up is capped
in the second); Levanter's staged list form starts each phase at the right step."""

from __future__ import annotations

import numpy as np
import pytest

from mixopt.mixing.base import get_estimator
from mixopt.mixing.constraints import InfeasibleConstraintsError
from mixopt.mixing.staged import levanter_weights, recommend_staged

pytestmark = pytest.mark.science

D = ["web", "code", "math"]


def _est():
    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(3), size=30)
    # metric "web_loss" wants web, "math_loss" wants math
    Y = np.stack(
        [2 + np.exp(-2 * X[:, 0] - 0.2 * X[:, 1]), 2 + np.exp(-0.2 * X[:, 0] - 2.5 * X[:, 2])],
        axis=1,
    )
    return get_estimator("regmix_linear").fit(X, Y, domains=D, targets=["web_loss", "math_loss"])


def test_phases_budgets_and_cross_phase_caps():
    counts = {"web": 1000.0, "code": 1000.0, "math": 150.0}
    phases = [
        {"name": "main", "tokens": 900, "objective_weights": [1.0, 0.0]},
        {"name": "anneal", "tokens": 200, "objective_weights": [0.0, 1.0]},
    ]
    out = recommend_staged(
        _est(), phases, {"token_counts": counts, "max_epochs": 1.0}, domains=D, n_boot=0
    )
    main, anneal = out["phases"]
    assert (
        main["start_tokens"] == 0 and anneal["start_tokens"] == 900 and out["total_tokens"] == 1100
    )
    for p in out["phases"]:
        assert sum(p["mixture"]) == pytest.approx(1.0, abs=1e-6) and min(p["mixture"]) >= -1e-9
    # each phase follows its own objective: the main phase favours web, the annealing phase math
    assert main["mixture_by_domain"]["web"] > 0.5
    assert anneal["mixture_by_domain"]["math"] > anneal["mixture_by_domain"]["web"]
    # epoch caps counted across phases: math's 150 tokens shared by both phases
    used = {d: main["mixture_by_domain"][d] * 900 + anneal["mixture_by_domain"][d] * 200 for d in D}
    assert used == pytest.approx(out["tokens_used"])
    assert all(used[d] <= counts[d] + 1e-6 for d in D)
    assert out["epochs_used"]["math"] <= 1.0 + 1e-9
    assert (
        anneal["mixture_by_domain"]["math"] * 200
        <= 150 - main["mixture_by_domain"]["math"] * 900 + 1e-6
    )
    assert "cap:math" in anneal["binding"]


def test_an_earlier_phase_can_use_up_a_domain():
    counts = {"web": 1000.0, "code": 1000.0, "math": 150.0}
    both_math = [
        {"name": "main", "tokens": 900, "objective_weights": [0.0, 1.0]},
        {"name": "anneal", "tokens": 200, "objective_weights": [0.0, 1.0]},
    ]
    out = recommend_staged(
        _est(), both_math, {"token_counts": counts, "max_epochs": 1.0}, domains=D, n_boot=0
    )
    main, anneal = out["phases"]
    assert main["mixture_by_domain"]["math"] == pytest.approx(150 / 900, abs=1e-6)
    assert anneal["mixture_by_domain"]["math"] == pytest.approx(0.0, abs=1e-6)
    assert out["epochs_used"]["math"] == pytest.approx(1.0, abs=1e-6)
    # two epochs allowed: the second phase gets the other 150 tokens
    out2 = recommend_staged(
        _est(), both_math, {"token_counts": counts, "max_epochs": 2.0}, domains=D, n_boot=0
    )
    assert out2["tokens_used"]["math"] == pytest.approx(300, abs=1e-3)
    assert out2["epochs_allowed"]["math"] == 2.0


def test_infeasible_later_phase_names_it():
    counts = {"web": 100.0, "code": 100.0, "math": 100.0}
    phases = [{"name": "main", "tokens": 250}, {"name": "anneal", "tokens": 100}]
    with pytest.raises(InfeasibleConstraintsError, match=r"phases\[1\] \(anneal\)"):
        recommend_staged(
            _est(), phases, {"token_counts": counts, "max_epochs": 1.0}, domains=D, n_boot=0
        )


def test_levanter_staged_form():
    staged = {
        "phases": [
            {"start_tokens": 0, "mixture_by_domain": {"web": 1.0}},
            {"start_tokens": 4096 * 300, "mixture_by_domain": {"math": 1.0}},
        ]
    }
    assert levanter_weights(staged, 4096) == [[0, {"web": 1.0}], [300, {"math": 1.0}]]
    with pytest.raises(ValueError, match="global_batch_tokens"):
        levanter_weights(staged, 0)


def test_joint_budget_beats_greedy_when_a_later_phase_needs_the_scarce_domain():
    """Linear losses (so the optimum is known): main = 3 - 0.5 web - 0.2 code, anneal =
    3 - 2 web, main 900 tokens, anneal 100, and only 100 tokens of web (one epoch). Greedy lets
    main take all of web (w = 1/9); the joint optimum gives it to the annealing phase, where a
    token of web is worth more: main = code only (2.8), anneal = web only (1.0), staged
    objective 0.9 x 2.8 + 0.1 x 1.0 = 2.62 against greedy's
    0.9 x (3 - 0.5/9 - 0.2 x 8/9) + 0.1 x 3."""
    rng = np.random.default_rng(1)
    X = rng.dirichlet(np.ones(3), size=40)
    Y = np.stack([3 - 0.5 * X[:, 0] - 0.2 * X[:, 1], 3 - 2 * X[:, 0]], axis=1)
    est = get_estimator("regmix_linear").fit(X, Y, domains=D, targets=["main_loss", "anneal_loss"])
    phases = [
        {"name": "main", "tokens": 900, "objective_weights": [1.0, 0.0]},
        {"name": "anneal", "tokens": 100, "objective_weights": [0.0, 1.0]},
    ]
    cons = {"token_counts": {"web": 100.0, "code": 1e6, "math": 1e6}, "max_epochs": 1.0}
    greedy = recommend_staged(est, phases, cons, domains=D, n_boot=0, joint=False)
    joint = recommend_staged(est, phases, cons, domains=D, n_boot=0)
    g_expected = 0.9 * (3 - 0.5 / 9 - 0.2 * 8 / 9) + 0.1 * 3
    assert greedy["budget_solver"]["method"] == "greedy"
    assert greedy["objective"] == pytest.approx(g_expected, abs=1e-3)
    assert joint["budget_solver"]["method"] == "joint", joint["budget_solver"]
    assert joint["budget_solver"]["greedy_objective"] == pytest.approx(g_expected, abs=1e-3)
    assert joint["objective"] == pytest.approx(2.62, abs=1e-3)
    main, anneal = joint["phases"]
    assert main["mixture_by_domain"]["code"] == pytest.approx(1.0, abs=1e-3)
    assert anneal["mixture_by_domain"]["web"] == pytest.approx(1.0, abs=1e-3)
    assert joint["tokens_used"]["web"] <= 100 + 1e-6  # the shared cap holds
    assert "cap:web" in anneal["binding"]
