"""The learning-rate areas of bench/schedule_law.py (Tissue et al. 2024, Eq. 1): the forward
area is the sum of the rates; the annealing area is zero at a constant rate and, after one drop
of size d, k steps on, it is d * (1 + LAMBDA + ... + LAMBDA^k) (the drop's decaying momentum)."""

import numpy as np
import pytest

from bench.schedule_law import FLOOR, LAMBDA, areas, learning_rates

pytestmark = pytest.mark.science


def test_constant_rate_has_no_annealing_area():
    S1, S2 = areas(np.full(50, 0.5))
    np.testing.assert_allclose(S1, 0.5 * np.arange(1, 51))
    np.testing.assert_allclose(S2, 0.0)


def test_one_drop_builds_its_momentum():
    eta = np.r_[np.ones(10), np.full(20, 0.4)]
    S1, S2 = areas(eta)
    assert S1[-1] == pytest.approx(10 + 0.4 * 20)
    assert np.all(S2[:10] == 0)
    k = np.arange(20)  # steps since the drop of 0.6
    np.testing.assert_allclose(S2[10:], 0.6 * (1 - LAMBDA ** (k + 1)) / (1 - LAMBDA))


def test_cosine_warms_up_then_decays_to_its_floor():
    eta = learning_rates(1000, total=800, warmup=100)
    assert eta[0] == pytest.approx(0.01) and eta[99] == pytest.approx(1.0)
    assert np.all(np.diff(eta[100:800]) <= 1e-12)
    assert eta[799] == pytest.approx(FLOOR) and np.allclose(eta[800:], FLOOR)
