"""Baselines: natural, uniform, temperature (with epoch caps) and UniMax (Chung et al. 2023)
are on the simplex, respect the caps, and match hand-computed small cases."""

from __future__ import annotations

import numpy as np
import pytest

from mixopt.mixing.baselines import (
    epoch_caps,
    natural_mixture,
    temperature_mixture,
    uniform_mixture,
    unimax_mixture,
)

COUNTS = np.array([1e9, 5e7, 2e8, 1e6, 4e9])


def test_natural_and_uniform():
    np.testing.assert_allclose(natural_mixture([1, 3]), [0.25, 0.75])
    np.testing.assert_allclose(uniform_mixture(4), [0.25] * 4)
    with pytest.raises(ValueError):
        natural_mixture([0, 0])


def test_temperature_limits():
    np.testing.assert_allclose(temperature_mixture(COUNTS, 1.0), natural_mixture(COUNTS))
    w = temperature_mixture(COUNTS, 1e6)
    np.testing.assert_allclose(w, uniform_mixture(5), atol=1e-4)
    w2 = temperature_mixture([1.0, 4.0], 2.0)  # sqrt: 1, 2
    np.testing.assert_allclose(w2, [1 / 3, 2 / 3])


def test_temperature_with_caps():
    target = 2e9
    w = temperature_mixture(COUNTS, 3.0, target_tokens=target, max_epochs=2)
    caps = epoch_caps(COUNTS, target, 2)
    assert w.sum() == pytest.approx(1.0) and np.all(w >= 0)
    assert np.all(w <= caps + 1e-12)
    assert w[3] == pytest.approx(caps[3])  # the tiny domain is capped


def test_unimax_uniform_budget_with_caps():
    counts = np.array([10.0, 100.0, 1000.0])
    w = unimax_mixture(counts, target_tokens=300.0, max_epochs=2)
    # smallest: min(100, 20) = 20; then min(140, 200) = 140; then 140
    np.testing.assert_allclose(w * 300, [20.0, 140.0, 140.0])
    w = unimax_mixture(COUNTS, target_tokens=1e9, max_epochs=4)
    assert w.sum() == pytest.approx(1.0)
    assert np.all(w * 1e9 <= 4 * COUNTS + 1e-6)
    with pytest.raises(ValueError, match="target_tokens"):
        unimax_mixture([1.0, 1.0], target_tokens=100.0, max_epochs=2)
