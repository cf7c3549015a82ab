"""Nested scaling laws (Ye et al. 2024, Eq. 5): steps law and size law recover known
parameters from noisy curves, and ``extrapolate_runs`` feeds the mixing law.

Tolerances: steps law (noise sd 2e-4, steps 1k-30k): E within 0.02, beta within 0.05,
extrapolation to 100k steps within 0.005. Size law (4 sizes, shared exponent over 3 curves,
noise 1e-3): extrapolation to 8e8 params within 0.01.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from mixopt.mixing.mixing_law import MixingLaw
from mixopt.mixing.scaling import PowerLawFit, extrapolate_runs, fit_size_law, fit_steps_law

STEPS = np.linspace(1000, 30000, 30)
SIZES = np.array([2e7, 8e7, 2e8, 3e8])


def steps_curve(E, B, beta, noise, rng, steps=STEPS):
    return E + B / steps**beta + rng.normal(0, noise, steps.size)


def test_steps_law_recovers_parameters():
    rng = np.random.default_rng(0)
    y = steps_curve(2.5, 40.0, 0.5, 2e-4, rng)
    f = fit_steps_law(STEPS, y)
    assert f.E[0] == pytest.approx(2.5, abs=0.02)
    assert f.alpha[0] == pytest.approx(0.5, abs=0.05)
    assert f.predict(1e5)[0, 0] == pytest.approx(2.5 + 40 / 1e5**0.5, abs=0.005)


def test_steps_law_shared_exponent_over_targets():
    rng = np.random.default_rng(1)
    Y = np.column_stack([steps_curve(E, B, 0.6, 2e-4, rng) for E, B in [(2.0, 60.0), (3.0, 30.0)]])
    f = fit_steps_law(STEPS, Y)
    assert f.alpha[0] == f.alpha[1] == pytest.approx(0.6, abs=0.05)
    np.testing.assert_allclose(f.E, [2.0, 3.0], atol=0.03)
    assert PowerLawFit.from_dict(json.loads(json.dumps(f.to_dict()))).predict(5e4) == pytest.approx(
        f.predict(5e4)
    )


def test_size_law_extrapolates():
    rng = np.random.default_rng(2)
    Es, As = np.array([1.8, 2.2, 2.0]), np.array([300.0, 200.0, 250.0])
    Y = Es + As / SIZES[:, None] ** 0.35 + rng.normal(0, 1e-3, (4, 3))
    f = fit_size_law(SIZES, Y)
    np.testing.assert_allclose(f.predict(8e8)[0], Es + As / 8e8**0.35, atol=0.01)


def test_extrapolate_runs_feeds_mixing_law():
    rng = np.random.default_rng(3)
    K, n_mix = 3, 12
    mixtures = rng.dirichlet(np.ones(K), size=n_mix)
    t = np.array([-1.0, 0.4, 0.2])

    def final_loss(r, steps, N):  # mixing law at the target scale, shifted by step/size terms
        return 1.0 + np.exp(r @ t) + 30.0 / steps**0.5 + 200.0 / N**0.35

    runs = []
    for r in mixtures:
        for N in SIZES[:3]:
            curve = [(int(s), {"web": final_loss(r, s, N) + rng.normal(0, 2e-4)}) for s in STEPS]
            runs.append({"mixture": r, "params": N, "curve": curve})
    out = extrapolate_runs(runs, target_steps=1e5, target_params=3e8)
    assert out.X.shape == (n_mix, K) and out.Y.shape == (n_mix, 1) and out.targets == ["web"]
    truth = np.array([final_loss(r, 1e5, 3e8) for r in out.X])
    assert np.max(np.abs(out.Y[:, 0] - truth)) < 0.03
    # ranking of mixtures is preserved, and the mixing law fits the extrapolated losses
    assert (
        np.corrcoef(np.argsort(np.argsort(out.Y[:, 0])), np.argsort(np.argsort(truth)))[0, 1] > 0.95
    )
    law = MixingLaw(n_restarts=300, n_refine=2).fit(out.X, out.Y)
    assert np.mean(np.abs(law.predict(out.X) - out.Y)) < 0.01


def test_extrapolate_runs_needs_sizes_for_several_sizes():
    rng = np.random.default_rng(4)
    runs = [
        {
            "mixture": [0.5, 0.5],
            "params": N,
            "curve": [(s, [3 + 1 / s**0.5 + rng.normal(0, 1e-4)]) for s in STEPS],
        }
        for N in SIZES[:2]
    ]
    with pytest.raises(ValueError, match="target_params"):
        extrapolate_runs(runs, 1e5, targets=["a"])
