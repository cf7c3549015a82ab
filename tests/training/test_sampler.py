"""The mixture sampler: exact expected proportions, windows from the right shard, epoch caps."""

from __future__ import annotations

import numpy as np
import pytest

from mixopt.training.data import DomainData
from mixopt.training.sampler import DataExhausted, MixtureSampler, systematic_counts


def _domains(sizes=(5000, 5000, 5000)):
    # domain i's tokens are all equal to i, so a window tells its source
    return {
        f"d{i}": DomainData.from_tokens(f"d{i}", np.full(n, i), np.full(200, i))
        for i, n in enumerate(sizes)
    }


def test_systematic_counts_exact_in_expectation():
    w = np.array([0.01, 0.29, 0.7])
    rng = np.random.default_rng(0)
    counts = np.array([systematic_counts(w, 16, rng.random()) for _ in range(20000)])
    assert (counts.sum(axis=1) == 16).all()
    # each count is floor or ceil of w * B
    assert (counts >= np.floor(w * 16)).all() and (counts <= np.ceil(w * 16)).all()
    np.testing.assert_allclose(counts.mean(axis=0) / 16, w, atol=2e-3)


def test_empirical_proportions_match_the_mixture():
    """Tolerance: 0.005 absolute on each share after 500 batches of 16 (8,000 sequences);
    systematic allocation keeps the error far below the multinomial's ~0.005 std."""
    w = [0.5, 0.3, 0.2]
    s = MixtureSampler(_domains(), w, batch_size=16, block_size=8, seed=1)
    seen = np.zeros(3)
    for _ in range(500):
        x, y, ids = s.next_batch()
        assert x.shape == (16, 8) and y.shape == (16, 8)
        assert (x[:, 0] == ids).all()  # every window comes from its domain's shard
        seen += np.bincount(ids, minlength=3)
    np.testing.assert_allclose(seen / seen.sum(), w, atol=0.005)


def test_set_weights_mid_run_and_state_round_trip():
    s = MixtureSampler(_domains(), [1, 0, 0], batch_size=8, block_size=8, seed=3)
    assert set(s.next_batch()[2]) == {0}
    s.set_weights([0, 0, 1])
    assert set(s.next_batch()[2]) == {2}
    state = s.state_dict()
    a = [s.next_batch() for _ in range(3)]
    t = MixtureSampler(_domains(), [1, 0, 0], batch_size=8, block_size=8, seed=99)
    t.load_state_dict(state)
    b = [t.next_batch() for _ in range(3)]
    for (x1, _, i1), (x2, _, i2) in zip(a, b, strict=True):
        assert np.array_equal(x1, x2) and np.array_equal(i1, i2)


def test_max_epochs_zeroes_and_renormalises():
    # d0 is small: 1 epoch = 800 tokens = 100 sequences of 8
    s = MixtureSampler(
        _domains((800, 50000, 50000)),
        [0.5, 0.25, 0.25],
        batch_size=8,
        block_size=8,
        seed=0,
        max_epochs=1.0,
    )
    for _ in range(60):
        s.next_batch()
    assert "d0" in s.exhausted
    assert s.epochs[0] <= 1.0
    np.testing.assert_allclose(s.weights, [0, 0.5, 0.5])
    assert 0 not in s.next_batch()[2]


def test_max_epochs_raise_policy_and_all_exhausted():
    s = MixtureSampler(
        _domains((800, 800, 800)),
        None,
        batch_size=8,
        block_size=8,
        seed=0,
        max_epochs=1.0,
        on_exhausted="raise",
    )
    with pytest.raises(DataExhausted, match="max_epochs"):
        for _ in range(100):
            s.next_batch()
    s = MixtureSampler(
        _domains((800, 800, 800)), None, batch_size=8, block_size=8, seed=0, max_epochs=1.0
    )
    with pytest.raises(DataExhausted, match="every domain"):
        for _ in range(1000):
            s.next_batch()
    assert (s.epochs <= 1.0).all()


@pytest.mark.parametrize("bad", [[0.5, 0.5], [1, -1, 1], [np.nan, 1, 1], [0, 0, 0]])
def test_bad_weights(bad):
    with pytest.raises(ValueError, match="weights"):
        MixtureSampler(_domains(), bad)
