"""Loss-based sample reweighting (Sow et al. 2025): strategy properties, mean-1 weights,
warm-up, and the torch variant agreeing with the numpy one."""

from __future__ import annotations

import numpy as np
import pytest

from mixopt.online.reweighting import normalise_losses, sample_weights

LOSSES = np.array([1.0, 2.0, 2.5, 3.0, 4.0, 5.0])


def test_losses_are_normalised_to_minus_one_one():
    h = normalise_losses(LOSSES)
    assert h.min() == -1.0 and h.max() == 1.0
    assert np.allclose(normalise_losses([2.0, 2.0]), 0.0)


@pytest.mark.parametrize("strategy", ["linupper", "quadratic", "extremes", "upper", "mid"])
def test_weights_have_mean_one_and_are_positive(strategy):
    w = sample_weights(LOSSES, strategy)
    assert w.shape == LOSSES.shape
    assert np.isclose(w.mean(), 1.0) and np.all(w > 0)


def test_linupper_downweights_low_loss_samples_only():
    w = sample_weights(LOSSES, "linupper", r=1.0)
    assert w[0] < w[1] < w[2]  # below the midrange: increasing with the loss
    assert np.allclose(w[3:], w[3])  # at or above the midrange (h >= 0): equal weights
    # f goes from 0 to 1, so the ratio of highest to lowest weight is exp(1 / r)
    assert w[-1] / w[0] == pytest.approx(np.e)
    assert sample_weights(LOSSES, "linupper", r=0.4)[0] < w[0]  # smaller r: sharper


def test_quadratic_favours_medium_and_extremes_favour_both_ends():
    q = sample_weights(LOSSES, "quadratic")
    assert q[2] > q[0] and q[3] > q[-1] and np.isclose(q[0], q[-1])
    e = sample_weights(LOSSES, "extremes")
    assert e[0] > e[2] and e[-1] > e[3] and np.isclose(e[0], e[-1])


def test_warmup_returns_ones_and_constant_losses_give_ones():
    assert np.array_equal(sample_weights(LOSSES, step=999, warmup_steps=1000), np.ones(6))
    assert not np.allclose(sample_weights(LOSSES, step=1000, warmup_steps=1000), 1.0)
    assert np.allclose(sample_weights([3.0, 3.0, 3.0]), 1.0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="strategy"):
        sample_weights(LOSSES, "nope")
    with pytest.raises(ValueError, match="r:"):
        sample_weights(LOSSES, r=0)
    with pytest.raises(ValueError, match="losses"):
        sample_weights([1.0, float("inf")])


@pytest.mark.parametrize("strategy", ["linupper", "quadratic", "extremes", "upper"])
def test_torch_variant_matches_numpy(strategy):
    torch = pytest.importorskip("torch")
    from mixopt.online.reweighting import sample_weights_torch

    t = torch.tensor(LOSSES, requires_grad=True)
    w = sample_weights_torch(t, strategy, r=0.4)
    assert not w.requires_grad
    assert np.allclose(w.numpy(), sample_weights(LOSSES, strategy, r=0.4), atol=1e-5)
    assert np.array_equal(sample_weights_torch(t, step=0, warmup_steps=10).numpy(), np.ones(6))
