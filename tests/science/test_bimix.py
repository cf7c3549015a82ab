"""BiMix (Ge et al. 2024, Eq. 1): recovers the law's coefficients from noisy loss curves,
predicts at a target step, optimises proportions, is invariant to domain order and survives a
JSON round trip.

Data: 3 domains, 16 mixtures, 12 curve points each (steps 500-12000), noise sd 1e-3.
Tolerances: alpha and beta within 0.03, A and B within 5 %, predicted losses at the last
step within 0.005.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from mixopt.mixing.base import ESTIMATORS, InsufficientDataError, MixingEstimator
from mixopt.mixing.bimix import BiMix, bimix_law

DOMAINS = ["web", "code", "math"]
A = np.array([3.0, 2.0, 2.5])
ALPHA = np.array([0.08, 0.15, 0.1])
B = np.array([20.0, 40.0, 10.0])
BETA = np.array([0.5, 0.6, 0.4])
STEPS = np.linspace(500, 12000, 12)


def make_runs(n=16, noise=1e-3, seed=0, zero_domain=None):
    rng = np.random.default_rng(seed)
    X = rng.dirichlet(np.full(3, 2.0), size=n)
    if zero_domain is not None:
        X[:, zero_domain] = 0.0
        X /= X.sum(axis=1, keepdims=True)
    curves, Y = [], []
    for x in X:
        pts = []
        for s in STEPS:
            L = bimix_law(np.clip(x, 1e-4, None), s, A, ALPHA, B, BETA) + rng.normal(0, noise, 3)
            pts.append((float(s), dict(zip(DOMAINS, L.tolist(), strict=True))))
        curves.append(pts)
        Y.append(list(pts[-1][1].values()))
    return X, np.array(Y), curves


def fit(X, Y, curves, **kw):
    return BiMix(**kw).fit(X, Y, curves=curves, domains=DOMAINS, targets=DOMAINS)


def test_registered():
    assert ESTIMATORS["bimix"] is BiMix


def test_recovers_coefficients():
    X, Y, curves = make_runs()
    m = fit(X, Y, curves)
    np.testing.assert_allclose(m.alpha_, ALPHA, atol=0.03)
    np.testing.assert_allclose(m.beta_, BETA, atol=0.03)
    np.testing.assert_allclose(m.A_, A, rtol=0.05)
    np.testing.assert_allclose(m.B_, B, rtol=0.05)
    assert m.max_step_ == STEPS[-1]
    np.testing.assert_allclose(m.predict(X), Y, atol=0.005)


def test_target_steps_and_optimum():
    X, Y, curves = make_runs()
    m = fit(X, Y, curves, target_steps=50_000)
    truth = bimix_law(X, 50_000, A, ALPHA, B, BETA)
    np.testing.assert_allclose(m.predict(X), truth, atol=0.01)
    r = m.optimal_mixture()
    assert r.sum() == pytest.approx(1.0) and np.all(r > 0)
    # no random mixture beats the optimum of the fitted law
    rng = np.random.default_rng(9)
    cand = rng.dirichlet(np.ones(3), size=2000)
    assert m.predict_objective(r[None])[0] <= m.predict_objective(cand).min() + 1e-9


def test_domain_order_invariance():
    X, Y, curves = make_runs()
    m = fit(X, Y, curves)
    perm = [2, 0, 1]
    doms = [DOMAINS[p] for p in perm]
    mp = BiMix().fit(X[:, perm], Y, curves=curves, domains=doms, targets=DOMAINS)
    np.testing.assert_allclose(mp.predict(X[:, perm]), m.predict(X), rtol=1e-6)
    np.testing.assert_allclose(
        mp.optimal_mixture()[np.argsort(perm)], m.optimal_mixture(), atol=1e-6
    )


def test_json_round_trip():
    X, Y, curves = make_runs()
    m = fit(X, Y, curves, target_steps=20_000)
    m2 = MixingEstimator.from_state(json.loads(json.dumps(m.to_state())))
    np.testing.assert_array_equal(m2.predict(X), m.predict(X))
    np.testing.assert_array_equal(m2.optimal_mixture(), m.optimal_mixture())


def test_name_mapping_and_explicit_mapping():
    X, Y, curves = make_runs()
    targets = [f"metric/{d}_val_loss" for d in DOMAINS]
    renamed = [
        [(s, {f"metric/{k}_val_loss": v for k, v in L.items()}) for s, L in c] for c in curves
    ]
    doms = [f"train_{d}" for d in DOMAINS]
    m = BiMix().fit(X, Y, curves=renamed, domains=doms, targets=targets)
    assert m.target_domain_.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="matches no domain"):
        BiMix().fit(X, Y, curves=renamed, domains=["a", "b", "c"], targets=targets)
    mapping = dict(zip(targets, ["a", "b", "c"], strict=True))
    m = BiMix(target_domains=mapping).fit(
        X, Y, curves=renamed, domains=["a", "b", "c"], targets=targets
    )
    assert m.target_domain_.tolist() == [0, 1, 2]


def test_zero_domain_and_too_little_data():
    X, Y, curves = make_runs(zero_domain=2)
    with pytest.raises(InsufficientDataError, match="'math'"):
        fit(X, Y, curves)
    X, Y, curves = make_runs()
    with pytest.raises(InsufficientDataError, match="curves"):
        BiMix().fit(X, Y, domains=DOMAINS, targets=DOMAINS)
    with pytest.raises(InsufficientDataError, match="at least 2 runs"):
        fit(X[:1], Y[:1], curves[:1])
    # a proportion of 0 at prediction time is clipped, not infinite
    m = fit(X, Y, curves)
    assert np.all(np.isfinite(m.predict([[1.0, 0.0, 0.0]])))


def test_duplicate_runs():
    X, Y, curves = make_runs()
    m1 = fit(X, Y, curves)
    m2 = fit(np.vstack([X, X]), np.vstack([Y, Y]), curves + curves)
    np.testing.assert_allclose(m1.predict(X), m2.predict(X), atol=1e-4)


def test_trained_run_metric_names_map_to_domains():
    from mixopt.mixing.bimix import normalise_name

    # mixopt's trained runs report val_loss/<domain>; RegMix files metric/<domain>_val_loss
    assert normalise_name("val_loss/code") == normalise_name("code") == "code"
    assert normalise_name("metric/the_pile_arxiv_val_loss") == normalise_name(
        "train_the_pile_arxiv"
    )
