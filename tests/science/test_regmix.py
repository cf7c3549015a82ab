"""RegMix regressors: a linear truth recovered by regmix_linear, LightGBM learns a nonlinear
truth and round-trips through JSON (booster text) with identical predictions, domain-order
invariance, multi-target, edge cases (a domain always 0, duplicate runs, too few runs), and
the HistGradientBoosting fallback (refit on load) when LightGBM is not used."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

import mixopt.mixing  # noqa: F401  (fills the registry)
from mixopt.mixing.base import ESTIMATORS, InsufficientDataError, MixingEstimator
from mixopt.mixing.regmix import RegMixLGBM, RegMixLinear

FAST = {"n_estimators": 150, "learning_rate": 0.05}


def data(n=80, K=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.dirichlet(np.ones(K), size=n)
    return X, rng


def roundtrip(est):
    return MixingEstimator.from_state(json.loads(json.dumps(est.to_state())))


def test_registered():
    assert {"regmix_lgbm", "regmix_linear"} <= set(ESTIMATORS)
    assert RegMixLGBM.smooth is False and RegMixLinear.smooth is True


def test_linear_recovers_linear_truth():
    X, rng = data()
    a = np.array([[1.0, -2.0, 0.5, 3.0, 0.0], [0.3, 0.1, -0.4, 0.2, 0.9]])
    b = np.array([4.0, 2.0])
    Y = X @ a.T + b + rng.normal(0, 1e-4, (X.shape[0], 2))
    est = RegMixLinear().fit(X, Y)
    Xt, _ = data(n=20, seed=1)
    # on the simplex only a + c*1, b - c are identified: compare predictions
    np.testing.assert_allclose(est.predict(Xt), Xt @ a.T + b, atol=2e-3)
    np.testing.assert_allclose(roundtrip(est).predict(Xt), est.predict(Xt), rtol=0, atol=0)


def test_lgbm_learns_and_json_roundtrip_identical():
    X, rng = data(n=200)
    y = np.log(X[:, 0] + 0.05) + 2 * X[:, 1] ** 2 + rng.normal(0, 0.01, X.shape[0])
    est = RegMixLGBM(**FAST).fit(X[:160], y[:160])
    pred = est.predict(X[160:])[:, 0]
    assert spearmanr(pred, y[160:])[0] > 0.8
    st = json.loads(json.dumps(est.to_state()))
    assert isinstance(st["fitted"]["models"][0], str)  # booster text, no pickle
    np.testing.assert_array_equal(
        MixingEstimator.from_state(st).predict(X[160:]), est.predict(X[160:])
    )


def test_lgbm_early_stopping_keeps_fewer_rounds():
    X, rng = data(n=120)
    y = X[:, 0] + rng.normal(0, 0.05, 120)
    es = RegMixLGBM(n_estimators=300, learning_rate=0.1, early_stopping_rounds=3).fit(X, y)
    full = RegMixLGBM(n_estimators=300, learning_rate=0.1, validation_fraction=0).fit(X, y)
    assert full.best_iterations_ == [300]
    assert es.best_iterations_[0] < 300


@pytest.mark.parametrize(
    "cls,params", [(RegMixLinear, {}), (RegMixLGBM, {**FAST, "validation_fraction": 0})]
)
def test_domain_order_invariance(cls, params):
    X, rng = data(n=100)
    y = 3 * X[:, 0] - X[:, 2] + rng.normal(0, 0.01, 100)
    perm = np.array([3, 0, 4, 2, 1])
    a = cls(**params).fit(X, y).predict(X[:10])
    b = cls(**params).fit(X[:, perm], y).predict(X[:10, perm])
    np.testing.assert_allclose(a, b, atol=1e-8)


def test_multi_target_one_model_each():
    X, rng = data(n=100)
    Y = np.column_stack([X[:, 0], X[:, 1] ** 2, -X[:, 2]])
    est = RegMixLGBM(**FAST, validation_fraction=0).fit(X, Y, targets=["a", "b", "c"])
    assert len(est.models_) == 3 and est.predict(X[:4]).shape == (4, 3)
    assert est.targets_ == ["a", "b", "c"]


def test_edges_zero_domain_duplicates_and_too_few():
    X, rng = data(n=40)
    X[:, 4] = 0.0
    X = X / X.sum(axis=1, keepdims=True)
    X = np.vstack([X, X[:5]])  # duplicate runs
    y = X[:, 0] + rng.normal(0, 0.01, X.shape[0])
    for est in (RegMixLinear(), RegMixLGBM(**FAST)):
        p = est.fit(X, y).predict(X)
        assert np.all(np.isfinite(p))
    with pytest.raises(InsufficientDataError, match="at least 4 runs"):
        RegMixLGBM().fit(X[:1], y[:1])
    with pytest.raises(InsufficientDataError, match="at least 2 runs"):
        RegMixLinear().fit(X[:1], y[:1])


def test_sklearn_fallback_refits_identically():
    X, rng = data(n=60)
    y = X[:, 0] ** 2 + rng.normal(0, 0.01, 60)
    est = RegMixLGBM(
        n_estimators=50, learning_rate=0.1, min_child_samples=5, backend="sklearn"
    ).fit(X, y)
    st = json.loads(json.dumps(est.to_state()))
    assert st["fitted"]["backend"] == "sklearn"
    np.testing.assert_array_equal(MixingEstimator.from_state(st).predict(X), est.predict(X))
