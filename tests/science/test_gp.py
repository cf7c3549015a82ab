"""GP on the simplex: interpolates a smooth truth, calibrated-ish predictive std, exact JSON
round trip (theta + data), domain-order invariance, warp selection by marginal likelihood,
edge cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mixopt.mixing.base import InsufficientDataError, MixingEstimator
from mixopt.mixing.gp import GaussianProcessMixing


def truth(X):
    return 3.0 + 0.5 * np.log(X[:, 0] + 0.05) - 0.8 * X[:, 1] + 0.6 * X[:, 2] ** 2


def data(n, K=4, seed=0, noise=0.005):
    rng = np.random.default_rng(seed)
    X = rng.dirichlet(np.ones(K), size=n)
    return X, truth(X) + rng.normal(0, noise, n)


def test_interpolates_smooth_truth_with_calibrated_std():
    X, y = data(80)
    Xt, _ = data(200, seed=1)
    gp = GaussianProcessMixing(warp="log").fit(X, y)
    mu, sd = gp.predict(Xt, return_std=True)
    err = np.abs(mu[:, 0] - truth(Xt))
    assert err.mean() < 0.03
    z = err / sd[:, 0]
    assert 0.6 <= np.mean(z < 1.96) <= 1.0  # roughly 95 % coverage
    assert np.all(sd > 0)
    # far from the data (a vertex) the std is larger than at training points
    assert gp.predict_std(np.eye(4)[:1])[0, 0] > np.median(gp.predict_std(X[:20]))


def test_json_roundtrip_exact_and_std():
    X, y = data(40)
    gp = GaussianProcessMixing(random_state=3).fit(X, np.column_stack([y, -y]))
    gp2 = MixingEstimator.from_state(json.loads(json.dumps(gp.to_state())))
    Xt, _ = data(10, seed=2)
    np.testing.assert_allclose(gp2.predict(Xt), gp.predict(Xt), rtol=0, atol=1e-12)
    np.testing.assert_allclose(gp2.predict_std(Xt), gp.predict_std(Xt), rtol=0, atol=1e-12)
    w = np.array([0.3, 0.7])
    assert gp2.predict_objective_std(Xt, w).shape == (10,)


def test_domain_order_invariance():
    X, y = data(50)
    perm = np.array([2, 0, 3, 1])
    a = GaussianProcessMixing(warp="log").fit(X, y).predict(X[:8])
    b = GaussianProcessMixing(warp="log").fit(X[:, perm], y).predict(X[:8][:, perm])
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_auto_warp_records_scores():
    X, y = data(30)
    gp = GaussianProcessMixing(warp="auto").fit(X, y)
    assert set(gp.warp_scores_) == {"log", "sqrt", "identity"}
    assert gp.warp_ == max(gp.warp_scores_, key=gp.warp_scores_.get)


def test_edges():
    X, y = data(30)
    X[:, 3] = 0.0
    X = X / X.sum(axis=1, keepdims=True)
    X = np.vstack([X, X[:3]])
    y = np.concatenate([y, y[:3]])
    p = GaussianProcessMixing().fit(X, y).predict(X)
    assert np.all(np.isfinite(p))
    with pytest.raises(InsufficientDataError, match="at least 2 runs"):
        GaussianProcessMixing().fit(X[:1], y[:1])
    with pytest.raises(ValueError, match="domains"):
        GaussianProcessMixing().fit(X, y).predict(np.ones((1, 3)) / 3)


def test_dim_scaled_prior_gradient_is_exact():
    from scipy.optimize import approx_fprime

    from mixopt.mixing.gp import _log_prior

    lp = _log_prior(5)
    for t in np.random.default_rng(0).normal(size=(3, 7)):
        num = approx_fprime(t, lambda x: lp(x)[0], 1e-6)
        np.testing.assert_allclose(lp(t)[1], num, atol=1e-4)
    # the mode: log length scales at sqrt(2) + log(5) / 2; in t = log noise variance the log
    # density 1.1 t - 0.05 e^t peaks at e^t = 1.1 / 0.05
    mode = np.r_[0.0, np.full(5, np.sqrt(2) + 0.5 * np.log(5)), np.log(1.1 / 0.05)]
    np.testing.assert_allclose(lp(mode)[1], 0.0, atol=1e-12)


def test_dim_scaled_prior_keeps_the_noise_off_zero_on_few_runs():
    """24 noisy runs in 5 dimensions (true noise sd 0.02): the MAP fit's noise sd is within a
    factor 2.5 of the truth on every seed, and closer than the maximum-likelihood fit's, which
    can collapse toward interpolation."""
    err = {"none": [], "dim_scaled": []}
    for seed in range(6):
        X, y = data(24, K=5, seed=seed, noise=0.02)
        for hp in err:
            gp = GaussianProcessMixing(hyper_prior=hp, random_state=seed).fit(X, y)
            sd = np.sqrt(np.exp(gp.theta_[0][-1])) * y.std()
            err[hp].append(abs(np.log(sd / 0.02)))
    assert max(err["dim_scaled"]) < np.log(2.5), err
    assert np.mean(err["dim_scaled"]) < np.mean(err["none"]), err


def test_dim_scaled_prior_round_trips_and_is_checked():
    X, y = data(30, K=4, seed=4, noise=0.01)
    gp = GaussianProcessMixing(hyper_prior="dim_scaled").fit(X, y)
    state = json.loads(json.dumps(gp.to_state()))
    gp2 = MixingEstimator.from_state(state)
    assert gp2.hyper_prior == "dim_scaled"
    np.testing.assert_allclose(gp2.predict(X[:5]), gp.predict(X[:5]), atol=1e-12)
    with pytest.raises(ValueError, match="hyper_prior"):
        GaussianProcessMixing(hyper_prior="flat").fit(X, y)
