"""The trainer adapters, driven by a fake trainer loop over the synthetic environment that
follows the hook contract of ``mixopt.training.callbacks``."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from mixopt.online import make_mixer
from mixopt.online.callback import OnlineMixingCallback, SampleReweightingCallback
from mixopt.online.synthetic import SyntheticEnv


class FakeCtx:
    def __init__(self, env: SyntheticEnv) -> None:
        self.env = env
        self.domains = env.domains
        self.weights = np.full(env.k, 1 / env.k)
        self.config = None
        self.evals = 0

    def evaluate(self, max_batches=None):
        self.evals += 1
        return self.env.evaluate()

    def request_stop(self):
        pass


def fake_train(ctx: FakeCtx, cb, start: int, stop: int) -> None:
    """The trainer's loop as the hook contract describes it."""
    if start == 0:
        cb.on_train_start(ctx)
    for step in range(start, stop):
        w = cb.mixture_for_step(ctx, step)
        if w is not None:
            ctx.weights = w
        obs = ctx.env.step(ctx.weights)
        info = {
            "loss": 0.0,
            "domain_ids": obs["domain_ids"],
            "per_sample_loss": obs["per_sample_loss"],
            "per_domain_loss": obs["train_losses"],
            "tokens": obs["tokens"],
            "lr": 1e-3,
        }
        cb.on_step_end(ctx, step, info)


def doremi_params(env):
    ref = env.static_losses(np.full(3, 1 / 3), 400)
    return {
        "reference_losses": dict(zip(env.domains, ref.tolist(), strict=True)),
        "loss_weighting": False,
    }


@pytest.mark.parametrize("name", ["aioli", "odm", "doremi"])
def test_callback_records_trajectory_and_resumes_identically(name):
    env = SyntheticEnv()
    params = {"update_steps": 50, "lp_rounds": 1, "lp_steps": 4} if name == "aioli" else {}
    if name == "doremi":
        params = doremi_params(env)
    cb = OnlineMixingCallback(make_mixer(name, env.domains, params), record_every=5)
    ctx = FakeCtx(env)
    fake_train(ctx, cb, 0, 120)
    traj = cb.trajectory
    assert traj and traj[0]["step"] == 0
    assert all(abs(sum(e["weights"].values()) - 1) < 1e-9 for e in traj)
    assert len({tuple(e["weights"].values()) for e in traj}) > 2  # weights changed
    if name == "aioli":
        assert ctx.evals == 3 * (3 + 1)  # rounds at 0, 50, 100: 4 boundaries each
        assert {e["phase"] for e in traj} == {"learn", "mix"}
    # checkpoint: JSON round trip, then both continue identically
    state = json.loads(json.dumps(cb.state_dict()))
    cb2 = OnlineMixingCallback(make_mixer(name, env.domains, params))
    cb2.load_state_dict(state)
    ctx2 = copy.deepcopy(ctx)
    fake_train(ctx, cb, 120, 200)
    fake_train(ctx2, cb2, 120, 200)
    assert cb.trajectory == cb2.trajectory
    assert cb.final_weights() == cb2.final_weights()


def test_callback_rejects_other_domains():
    cb = OnlineMixingCallback(make_mixer("odm", ["x", "y"]))
    with pytest.raises(ValueError, match="domains"):
        cb.on_train_start(FakeCtx(SyntheticEnv()))


def test_doremi_loss_weighting_gives_mean_one_sequence_weights():
    torch = pytest.importorskip("torch")
    env = SyntheticEnv()
    params = doremi_params(env)
    params["loss_weighting"] = True
    cb = OnlineMixingCallback(make_mixer("doremi", env.domains, params))
    ctx = FakeCtx(env)
    fake_train(ctx, cb, 0, 20)
    assert np.allclose(ctx.weights, 1 / 3)  # samples from the reference distribution
    ids = np.array([0, 1, 2, 2])
    w = cb.sample_weights(ctx, 20, torch.ones(4), ids)
    alpha = cb.mixer.weights()
    assert torch.isclose(w.mean(), torch.tensor(1.0))
    assert w[3] / w[0] == pytest.approx(alpha[2] / alpha[0], rel=1e-5)


def test_sample_reweighting_callback():
    torch = pytest.importorskip("torch")
    cb = SampleReweightingCallback("linupper", r=1.0, warmup_steps=3)
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert cb.sample_weights(None, 2, losses, None) is None
    w = cb.sample_weights(None, 3, losses, None)
    assert torch.isclose(w.mean(), torch.tensor(1.0)) and w[0] < w[-1]
    cb2 = SampleReweightingCallback()
    cb2.load_state_dict(json.loads(json.dumps(cb.state_dict())))
    assert cb2.state_dict() == cb.state_dict()
