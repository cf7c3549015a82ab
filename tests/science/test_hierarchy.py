"""Hierarchical domains: group paths from names or declarations, the exact projection onto
group totals (checked against a QP), infeasible groups named, every recommender (smooth
optimiser and tree simulation, through each registered estimator that fits on mixtures, and
the projected baselines) honours group bounds and fixed group totals, and hierarchical draws."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from mixopt.mixing import design, hierarchy
from mixopt.mixing.base import get_estimator
from mixopt.mixing.constraints import Constraints, InfeasibleConstraintsError
from mixopt.mixing.optimize import recommend

pytestmark = pytest.mark.science

D = ["web:news:high", "web:news:low", "web:blog", "code:py", "code:js", "math", "books"]


def test_paths_parsed_or_declared():
    assert hierarchy.leaf_path("web:news:high") == ["web", "news"]
    assert hierarchy.leaf_path("flat") == []
    assert hierarchy.leaf_path("cc", "web/news/") == ["web", "news"]
    g = hierarchy.groups_of(D + ["cc"], {"cc": "web/news"})
    assert g["web/news"] == ["web:news:high", "web:news:low", "cc"]
    assert g["web"] == ["web:news:high", "web:news:low", "web:blog", "cc"]
    assert "math" not in sum(g.values(), [])
    t = hierarchy.group_totals({"web:news:high": 0.1, "web:blog": 0.3, "math": 0.6})
    assert t == pytest.approx({"web": 0.4, "web/news": 0.1})


def _qp(w, lo, hi, system):
    K = w.size
    cons = [{"type": "eq", "fun": lambda x: x.sum() - 1}] + hierarchy.scipy_constraints(
        system, np.ones(K, bool), np.zeros(K)
    )
    r = minimize(
        lambda x: ((x - w) ** 2).sum(),
        np.full(K, 1 / K),
        jac=lambda x: 2 * (x - w),
        method="SLSQP",
        bounds=list(zip(lo, hi, strict=True)),
        constraints=cons,
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    return r.x


def test_projection_is_the_euclidean_projection():
    c = Constraints(
        groups={"web": {"min": 0.2, "max": 0.5}, "web/news": {"max": 0.1}, "code": {"fixed": 0.3}},
        upper={"math": 0.3},
        fixed={"books": 0.05},
    )
    lo, hi = c.feasible_bounds(D)
    system = c.group_system(D)
    W = np.random.default_rng(0).dirichlet(np.full(len(D), 0.4), size=30) * 1.3 - 0.05
    P = c.project(W, D)
    for w, p in zip(W, P, strict=True):
        np.testing.assert_allclose(p, _qp(w, lo, hi, system), atol=1e-6)
        assert c.satisfied(p, D)
    assert system.violation(P).max() < 1e-9


@pytest.mark.parametrize(
    "groups,msg",
    [
        ({"web": {"min": 0.9}, "code": {"min": 0.2}}, "no mixture satisfies"),
        ({"webb": {"max": 0.5}}, "groups.webb: unknown group"),
        ({"code": {"min": 0.6, "max": 0.5}}, "groups.code"),
    ],
)
def test_infeasible_or_unknown_group_named(groups, msg):
    with pytest.raises(ValueError, match=msg):
        Constraints(groups=groups).group_system(D)


def test_group_min_against_caps_is_infeasible_with_reason():
    c = Constraints(groups={"code": {"min": 0.5}}, upper={"code:py": 0.2, "code:js": 0.2})
    with pytest.raises(
        InfeasibleConstraintsError, match="groups.code: .* 0.4 < the group's min 0.5"
    ):
        c.group_system(D)


def _runs(n=60, seed=0):
    """Two evaluation targets from a mixing law whose optimum puts ~0.6 on web."""
    rng = np.random.default_rng(seed)
    X = rng.dirichlet(np.ones(len(D)), size=n)
    t = np.array(
        [[-3.0, -2.5, -2.0, -0.5, -0.3, -0.2, -0.4], [-2.5, -2.0, -1.5, -1.0, -0.6, -0.5, -0.5]]
    )
    Y = 2.0 + np.exp(X @ t.T) + rng.normal(0, 0.002, (n, 2))
    return X, Y


GROUPS = {"web": {"min": 0.2, "max": 0.35}, "web/news": {"max": 0.1}, "code": {"fixed": 0.3}}


#: fast settings (the recommenders are under test here, not the fits)
FAST = {
    "mixing_law": {"n_restarts": 24, "n_refine": 2},
    "law_gp": {"law_n_restarts": 24, "law_n_refine": 2},
    "gp": {"n_restarts": 1},
    "regmix_linear": {},
    "regmix_lgbm": {"n_estimators": 200},
}


@pytest.mark.parametrize("name", ["mixing_law", "gp", "law_gp", "regmix_linear", "regmix_lgbm"])
def test_group_constraints_honoured_by_every_recommender(name):
    X, Y = _runs(40)
    est = get_estimator(name, **FAST[name]).fit(X, Y, domains=D, targets=["a", "b"])
    free = recommend(est, Constraints(), domains=D, n_boot=0, n_samples=5000)
    assert free["group_totals"]["web"] > 0.35 or free["group_totals"]["code"] != pytest.approx(
        0.3, abs=1e-3
    )
    rec = recommend(est, Constraints(groups=GROUPS), domains=D, n_boot=0, n_samples=5000)
    gt = rec["group_totals"]
    assert 0.2 - 1e-6 <= gt["web"] <= 0.35 + 1e-6
    assert gt["web/news"] <= 0.1 + 1e-6
    assert gt["code"] == pytest.approx(0.3, abs=1e-6)
    assert sum(rec["mixture"]) == pytest.approx(1.0, abs=1e-6) and min(rec["mixture"]) >= -1e-9
    assert any(b.startswith("group") for b in rec["binding"])


def test_baselines_projected_onto_group_totals():
    from mixopt.mixing.baselines import natural_mixture

    counts = np.array([50, 40, 30, 5, 5, 10, 10], dtype=float)
    c = Constraints(groups=GROUPS)
    w = c.project(natural_mixture(counts), D)
    assert c.satisfied(w, D)
    assert not c.satisfied(natural_mixture(counts), D)


def test_hierarchical_draws_group_first():
    rng = np.random.default_rng(1)
    prior = np.array([0.3, 0.1, 0.1, 0.2, 0.1, 0.1, 0.1])
    H = hierarchy.hierarchical_dirichlet(4000, prior, D, strengths=[1.0, 5.0], rng=rng)
    np.testing.assert_allclose(H.sum(axis=1), 1.0)
    web = H[:, :3].sum(axis=1)
    news = H[:, :2].sum(axis=1)
    # the group's share follows the prior's group mass (0.5), its inside shares the within-group
    # prior
    assert web.mean() == pytest.approx(0.5, abs=0.03)
    assert (news / web).mean() == pytest.approx(0.8, abs=0.03)


def test_hierarchical_swarm_honours_groups_and_is_distinct():
    c = Constraints(groups=GROUPS)
    prior = np.array([0.3, 0.1, 0.1, 0.2, 0.1, 0.1, 0.1])
    W = design.hierarchical_swarm(prior, 64, domains=D, constraints=c, random_state=3)
    assert W.shape == (64, len(D))
    assert all(c.satisfied(w, D) for w in W)
    assert np.unique(W.round(4), axis=0).shape[0] == 64
    assert np.ptp(W[:, :3].sum(axis=1)) > 0.05  # the web total varies inside its bounds
