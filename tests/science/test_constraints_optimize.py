"""Constraints and recommendation: feasibility errors, olmix caps, projection; every
recommendation satisfies bounds/caps/fixed weights/sum 1 for random constraint sets; the
known optimum of a synthetic convex law is found; binding constraints are named; the tree
strategy (RegMix simulation) and bootstrap intervals work."""

from __future__ import annotations

import numpy as np
import pytest

from mixopt.mixing.base import MixingEstimator
from mixopt.mixing.constraints import Constraints, InfeasibleConstraintsError, project_box_simplex
from mixopt.mixing.optimize import predict_with_interval, recommend
from mixopt.mixing.regmix import RegMixLGBM, RegMixLinear

D = ["web", "code", "math", "books", "wiki"]
OPT = np.array([0.4, 0.25, 0.15, 0.12, 0.08])


class Quadratic(MixingEstimator):
    """Known convex law ``L(w) = 1 + ||w - OPT||^2`` (a test double; not registered)."""

    name = "quadratic"

    def __init__(self, *, opt=None):
        self.opt = opt

    def fit(self, X, Y, **context):
        self.n_domains_ = len(self.opt)
        return self

    def predict(self, X):
        X = np.atleast_2d(X)
        return (1.0 + ((X - np.asarray(self.opt)) ** 2).sum(axis=1))[:, None]


def quad():
    return Quadratic(opt=OPT.tolist()).fit(None, None)


def test_caps_follow_olmix_formula():
    c = Constraints(
        token_counts={"web": 100, "code": 10, "math": 5, "books": 50, "wiki": 20},
        target_tokens=100,
        max_epochs=2,
    )
    np.testing.assert_allclose(c.caps(D), [2.0, 0.2, 0.1, 1.0, 0.4])
    lo, hi = c.feasible_bounds(D)
    np.testing.assert_allclose(hi, [1.0, 0.2, 0.1, 1.0, 0.4])
    c2 = Constraints(token_counts=[1, 1, 1, 1, 1], target_tokens=100, max_epochs={"web": 4})
    assert np.isinf(c2.caps(D)[1]) and c2.caps(D)[0] == pytest.approx(0.04)


@pytest.mark.parametrize(
    "kw,msg",
    [
        ({"lower": {"web": 0.6, "code": 0.5}}, "sum to 1.1"),
        ({"upper": [0.1] * 5}, "sum to 0.5"),
        ({"lower": {"web": 0.5}, "upper": {"web": 0.4}}, "exceeds its upper bound"),
        ({"fixed": {"web": 0.5}, "upper": {"web": 0.4}}, "outside"),
        ({"token_counts": [1] * 5, "target_tokens": 100, "max_epochs": 4}, "not enough data"),
    ],
)
def test_infeasible_raises_clear_error(kw, msg):
    with pytest.raises(InfeasibleConstraintsError, match=msg):
        Constraints(**kw).feasible_bounds(D)


def test_unknown_domain_and_roundtrip():
    with pytest.raises(ValueError, match="unknown domain"):
        Constraints(upper={"nope": 0.1}).feasible_bounds(D)
    c = Constraints(upper={"web": 0.3}, fixed={"math": 0.1}, kl_weight=0.5)
    assert Constraints.from_dict(c.to_dict()) == c


def test_projection_is_feasible_and_idempotent():
    rng = np.random.default_rng(0)
    lo, hi = np.array([0.0, 0.1, 0.0, 0.0, 0.05]), np.array([0.5, 0.3, 0.2, 1.0, 1.0])
    W = project_box_simplex(rng.normal(0, 1, (200, 5)), lo, hi)
    assert np.allclose(W.sum(axis=1), 1) and np.all(W >= lo - 1e-12) and np.all(W <= hi + 1e-12)
    np.testing.assert_allclose(project_box_simplex(W, lo, hi), W, atol=1e-9)


def test_recommend_finds_known_optimum_unconstrained():
    r = recommend(quad(), {}, domains=D)
    np.testing.assert_allclose(r["mixture"], OPT, atol=1e-4)
    assert r["predicted_objective"] == pytest.approx(1.0, abs=1e-7)
    assert r["binding"] == []


def test_recommend_binding_upper_and_kkt():
    r = recommend(quad(), {"upper": {"web": 0.3}}, domains=D)
    w = np.array(r["mixture"])
    assert w[0] == pytest.approx(0.3, abs=1e-6)
    # KKT: the 0.1 removed from web is spread equally over the others
    np.testing.assert_allclose(w[1:], OPT[1:] + 0.1 / 4, atol=1e-4)
    assert r["binding"] == ["upper:web"]
    np.testing.assert_allclose(r["unconstrained_mixture"], OPT, atol=1e-4)
    assert r["unconstrained_objective"] <= r["predicted_objective"]


def test_recommendations_satisfy_random_constraints():
    rng = np.random.default_rng(1)
    est = quad()
    for trial in range(8):
        lower = {d: float(v) for d, v in zip(D, rng.uniform(0, 0.08, 5), strict=True)}
        upper = {d: float(v) for d, v in zip(D, rng.uniform(0.25, 0.6, 5), strict=True)}
        fixed = {D[trial % 5]: float(rng.uniform(0.08, 0.2))}
        tokens = {d: float(v) for d, v in zip(D, rng.uniform(20, 100, 5), strict=True)}
        c = Constraints(
            lower=lower,
            upper=upper,
            fixed=fixed,
            token_counts=tokens,
            target_tokens=100,
            max_epochs=float(rng.uniform(2, 4)),
            kl_weight=float(rng.choice([0.0, 0.05])),
        )
        try:
            lo, hi = c.feasible_bounds(D)
        except InfeasibleConstraintsError:
            continue
        r = recommend(est, c, domains=D, random_state=trial)
        w = np.array(r["mixture"])
        assert abs(w.sum() - 1) < 1e-8
        assert np.all(w >= lo - 1e-8) and np.all(w <= hi + 1e-8)
        d = D[trial % 5]
        assert w[D.index(d)] == pytest.approx(fixed[d], abs=1e-9)
        assert f"fixed:{d}" in r["binding"]


def test_kl_pulls_toward_prior():
    prior = np.full(5, 0.2)
    a = np.array(recommend(quad(), {}, prior=prior, domains=D)["mixture"])
    b = np.array(recommend(quad(), {"kl_weight": 1.0}, prior=prior, domains=D)["mixture"])
    assert np.abs(b - prior).sum() < np.abs(a - prior).sum()


def test_tree_strategy_and_bootstrap_interval():
    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(5), 150)
    y = 1 + ((X - OPT) ** 2).sum(axis=1) + rng.normal(0, 1e-3, 150)
    est = RegMixLGBM(
        n_estimators=200, learning_rate=0.05, validation_fraction=0, min_child_samples=5
    ).fit(X, y)
    c = {"upper": {"web": 0.35}}
    r = recommend(est, c, domains=D, n_samples=5000, top_k=64, X=X, Y=y, n_boot=3)
    w = np.array(r["mixture"])
    assert w[0] <= 0.35 + 1e-9 and abs(w.sum() - 1) < 1e-9
    assert np.abs(w - OPT).sum() < 0.35  # near the true optimum
    assert r["interval"] is not None and r["interval"][0] <= r["interval"][1]
    assert "RegMix simulation" in r["strategy"]
    lin = RegMixLinear().fit(X, y)
    iv = predict_with_interval(lin, X[:3], X_train=X, Y_train=y, n_boot=5)
    assert iv["method"].startswith("bootstrap") and all(
        lo <= hi for lo, hi in zip(iv["lower"], iv["upper"], strict=True)
    )


def test_epoch_questions_answered_once_by_constraints():
    """Caps from max_epochs/max_epochs_per_domain, epochs used, the limits the what-if page
    compares with, and the warnings, all from one rule."""
    c = Constraints.for_epochs(
        {"a": 1e6, "b": 20_000, "c": 0, "d": None},
        1e6,
        max_epochs=4,
        max_epochs_per_domain={"a": None},
    )
    domains = ["a", "b", "c", "d"]
    mix = {"a": 0.3, "b": 0.5, "c": 0.1, "d": 0.1}
    assert c.epoch_caps(domains) == {"a": None, "b": 4.0, "c": 4.0, "d": 4.0}
    assert c.epochs_used(mix, domains) == {"a": 0.3, "b": 25.0, "c": None, "d": None}
    assert c.over_cap(mix, domains) == {"a": False, "b": True, "c": False, "d": False}
    limits = c.epoch_limits(domains)
    assert limits["b"]["max_weight"] == pytest.approx(0.08) and limits["a"]["max_weight"] is None
    assert (
        limits["c"]["unavailable"] == "no tokens" and limits["d"]["unavailable"] == "no token count"
    )
    assert c.epoch_warnings(mix, domains) == [
        "b: 25.00 epochs at weight 0.500, 6.2x its 4-epoch cap",
        "c: weight 0.100 but the project has no tokens of it",
        "d: weight 0.100 but no token count (availability unknown)",
    ]
    assert not c.epoch_warnings({"a": 0.9, "b": 0.08, "c": 0.0, "d": 0.0}, domains)
    no_target = Constraints.for_epochs({"a": 1e6, "d": None}, None, max_epochs=4)
    assert no_target.epoch_warnings({"a": 1.0, "d": 0.5}, ["a", "d"]) == []
