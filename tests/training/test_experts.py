"""Data experts (mixopt.training.experts) on the fixture corpora, CPU: the probability arrays
cover the trainer's evaluation windows (one-hot MDE == the expert's reported validation loss),
and the MDE approximation equals a direct evaluation of the ensembled experts' models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mixopt.mixing.mde import ExpertProbs, mde_losses
from mixopt.training.experts import (
    P_FLOOR,
    eval_window_count,
    next_token_probs,
    predicted_token_count,
    train_experts,
)
from mixopt.training.trainer import TrainConfig, _eval_windows

EXPERTS = ("code", "prose", "math")
CFG = dict(
    preset="micro",
    n_layer=1,
    n_embd=32,
    n_head=2,
    block_size=32,
    batch_size=8,
    max_steps=30,
    eval_batches=2,
    eval_batch_size=5,
    eval_interval=15,
    device="cpu",
    seed=3,
)


@pytest.fixture(scope="module")
def trained(corpora):
    data = {d: corpora[d] for d in EXPERTS}
    models = {}

    class Keep:  # the test keeps each model to evaluate the ensemble directly
        def on_train_end(self, ctx, result):
            models[result.weights.index(max(result.weights))] = ctx.model

    probs, runs = train_experts(TrainConfig(**CFG), data, callbacks=[Keep()])
    return data, probs, runs, [models[i] for i in range(len(EXPERTS))]


def test_arrays_have_the_predicted_length_dtype_and_range(trained):
    data, probs, _, _ = trained
    assert set(probs) == {(e, v) for e in EXPERTS for v in EXPERTS}
    n_windows = eval_window_count(TrainConfig(**CFG))
    assert n_windows == 10
    for (_, v), p in probs.items():
        assert p.dtype == np.float16 and p.ndim == 1
        assert p.size == predicted_token_count(data[v].n_val_tokens, 32, n_windows)
        assert p.size == 10 * 32  # the fixture shards hold more than 10 windows
        assert np.all(p >= P_FLOOR) and np.all(p <= 1.0)


def test_one_hot_mde_equals_each_experts_reported_validation_loss(trained):
    _, probs, runs, _ = trained
    ep = ExpertProbs.from_pairs(probs, experts=list(EXPERTS), val_domains=list(EXPERTS))
    one_hot = mde_losses(ep, np.eye(len(EXPERTS)))
    for i, e in enumerate(EXPERTS):
        reported = runs[e].result.final_val_losses
        for j, v in enumerate(EXPERTS):
            # float16 probabilities: about 5e-4 relative per token, far less on the mean
            assert one_hot[i, j] == pytest.approx(reported[v], rel=2e-4, abs=2e-4)
    # the experts differ: each is best on its own domain among these three
    assert np.all(np.argmin(one_hot, axis=0) == np.arange(len(EXPERTS)))


def test_mde_equals_the_direct_loss_of_the_ensembled_models(trained):
    data, probs, _, models = trained
    ep = ExpertProbs.from_pairs(probs, experts=list(EXPERTS), val_domains=list(EXPERTS))
    W = np.array([[0.2, 0.5, 0.3], [0.6, 0.0, 0.4], [1 / 3, 1 / 3, 1 / 3]])
    approx = mde_losses(ep, W)
    for j, v in enumerate(EXPERTS):
        wins = torch.from_numpy(_eval_windows(np.asarray(data[v].val), 32, 10))
        with torch.no_grad():
            soft = [torch.softmax(m.eval()(wins[:, :-1])[0].double(), dim=-1) for m in models]
        for n, w in enumerate(W):
            mix = sum(float(w[i]) * soft[i] for i in range(len(models)))  # sum_i w_i p_i(x)
            p_obs = mix.gather(-1, wins[:, 1:].unsqueeze(-1)).squeeze(-1)
            direct = float(-torch.log(p_obs).mean())
            assert approx[n, j] == pytest.approx(direct, rel=3e-4), (v, w)


def test_next_token_probs_positions(corpora):
    # position t of window k scores val[s_k + t + 1] given val[s_k .. s_k + t]: a model that
    # always predicts "the same token again" shows which token is scored where
    val = np.asarray(corpora["code"].val)[:200].astype(np.int64)

    class Repeat(torch.nn.Module):
        def forward(self, idx):
            logits = torch.full((*idx.shape, 257), -30.0)
            logits.scatter_(-1, idx.unsqueeze(-1), 0.0)
            return logits, None

    p = next_token_probs(Repeat(), val, block_size=16, n_windows=4)
    assert p.size == predicted_token_count(200, 16, 4) == 64
    starts = np.linspace(0, 200 - 16 - 1, 4).astype(np.int64)
    expected = np.concatenate([val[s + 1 : s + 17] == val[s : s + 16] for s in starts])
    assert np.array_equal(p > 0.5, expected)


def test_predicted_token_count_limits():
    assert predicted_token_count(1000, 32, 100) == 31 * 32
    assert predicted_token_count(1000, 32, 5) == 160
    with pytest.raises(ValueError, match="fewer than block_size"):
        predicted_token_count(32, 32, 5)
    with pytest.raises(ValueError, match="n_windows"):
        predicted_token_count(1000, 32, 0)
