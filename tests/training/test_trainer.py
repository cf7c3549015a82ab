"""The trainer: learning, exact resume after a crash, the callback hook, the model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mixopt.training.model import PRESETS, build_model
from mixopt.training.sampler import DataExhausted
from mixopt.training.trainer import TrainConfig, train

# a small, fast shape for the plumbing tests (the learning test uses the tiny preset itself)
FAST = dict(
    preset="tiny",
    n_layer=1,
    n_embd=32,
    n_head=2,
    block_size=32,
    batch_size=6,
    eval_batches=1,
    eval_batch_size=4,
)


def test_presets_grow_and_count_non_embedding_params():
    sizes = []
    for name in PRESETS:
        with torch.device("meta"):
            m = build_model(name)
        sizes.append(m.num_params(non_embedding=True))
        assert m.num_params(False) - m.num_params(True) == (
            m.tok_emb.weight.numel() + m.pos_emb.weight.numel()
        )
    assert sizes == sorted(sizes)
    assert 0.05e6 < sizes[0] < 0.2e6 and 0.5e6 < sizes[1] < 2e6 and 70e6 < sizes[-1] < 130e6


def test_forward_reductions():
    torch.manual_seed(0)
    m = build_model("tiny", n_layer=1, n_embd=32, n_head=2, block_size=16)
    x = torch.randint(0, 257, (3, 16))
    logits, per_tok = m(x, x, reduction="none")
    assert logits.shape == (3, 16, 257) and per_tok.shape == (3, 16)
    _, per_seq = m(x, x, reduction="sequence")
    _, mean = m(x, x)
    torch.testing.assert_close(per_seq, per_tok.mean(1))
    torch.testing.assert_close(mean, per_tok.mean())
    assert m.lm_head.weight is m.tok_emb.weight


def test_tiny_preset_lowers_every_domain_loss(corpora):
    cfg = TrainConfig(
        preset="tiny",
        block_size=64,
        batch_size=8,
        max_steps=200,
        eval_interval=100,
        eval_batches=2,
        seed=0,
    )
    r = train(cfg, corpora)
    first, last = r.curve[0]["losses"], r.final_val_losses
    assert [p["step"] for p in r.curve] == [0, 100, 200]
    for d in corpora:
        assert last[d] < first[d] - 1.0, (d, first[d], last[d])
        assert 0 < r.final_val_bpb[d] < 8
    assert r.steps == 200 and r.tokens == 200 * 8 * 64 and r.tokens_per_s > 0
    assert 0.5e6 < r.n_params < 2e6


class Crash(Exception):
    pass


class Crasher:
    def __init__(self, at: int):
        self.at = at

    def on_step_end(self, ctx, step, info):
        if step == self.at:
            raise Crash


class Recorder:
    """A stateful callback: its state must survive the crash too."""

    def __init__(self):
        self.steps, self.evals = 0, []

    def on_step_end(self, ctx, step, info):
        self.steps += 1

    def on_eval(self, ctx, step, losses):
        self.evals.append(step)

    def state_dict(self):
        return {"steps": self.steps, "evals": list(self.evals)}

    def load_state_dict(self, s):
        self.steps, self.evals = s["steps"], list(s["evals"])


def test_resume_after_crash_is_exact(corpora, tmp_path):
    data = {k: corpora[k] for k in ("code", "prose", "math")}
    base = dict(FAST, max_steps=30, eval_interval=10, weights=[0.5, 0.3, 0.2], seed=7)
    ref_rec = Recorder()
    ref = train(TrainConfig(**base), data, [ref_rec])

    ck = tmp_path / "ck"
    cfg = TrainConfig(**base, checkpoint_dir=str(ck), checkpoint_interval=5)
    rec = Recorder()
    with pytest.raises(Crash):
        train(cfg, data, [rec, Crasher(17)], resume=True)
    meta = json.loads((ck / "meta.json").read_text())
    assert meta["step"] == 15
    rec2 = Recorder()
    out = train(cfg, data, [rec2, Crasher(-1)], resume=True)
    assert out.resumed_from == 15
    assert out.final_val_losses == ref.final_val_losses  # exact, not approximate
    assert out.curve == ref.curve
    assert rec2.steps == ref_rec.steps == 30 and rec2.evals == ref_rec.evals
    # resuming a finished run changes nothing
    again = train(cfg, data, [Recorder(), Crasher(-1)], resume=True)
    assert again.final_val_losses == ref.final_val_losses and again.resumed_from == 30


class Switch:
    """Puts all weight on one domain from step ``at`` on; records the sampled domains."""

    def __init__(self, at: int, target: int, k: int):
        self.at, self.target, self.k = at, target, k
        self.ids: dict[int, np.ndarray] = {}

    def mixture_for_step(self, ctx, step):
        if step == self.at:
            w = np.zeros(self.k)
            w[self.target] = 1.0
            return w
        return None

    def on_step_end(self, ctx, step, info):
        self.ids[step] = info["domain_ids"]
        assert set(info["per_domain_loss"]) == {ctx.domains[i] for i in set(info["domain_ids"])}


def test_mixture_for_step_changes_the_sampled_proportions(corpora):
    data = {k: corpora[k] for k in ("code", "prose", "math")}
    cb = Switch(at=5, target=2, k=3)
    r = train(TrainConfig(**FAST, max_steps=10, eval_interval=100, weights=[1, 0, 0]), data, [cb])
    assert all(set(cb.ids[s]) == {0} for s in range(5))
    assert all(set(cb.ids[s]) == {2} for s in range(5, 10))
    assert r.weights == [0.0, 0.0, 1.0]


class HalfWeights:
    """Weights 2 on the first half of the batch, 0 on the second (mean 1)."""

    def __init__(self):
        self.checked = 0

    def sample_weights(self, ctx, step, per_sample_loss, domain_ids):
        n = per_sample_loss.shape[0]
        w = torch.zeros(n)
        w[: n // 2] = 2.0
        return w

    def on_step_end(self, ctx, step, info):
        ls = info["per_sample_loss"]
        n = len(ls)
        assert info["loss"] == pytest.approx(2 * ls[: n // 2].sum() / n, rel=1e-5)
        self.checked += 1


def test_sample_weights_are_applied(corpora):
    data = {k: corpora[k] for k in ("code", "prose")}
    cb = HalfWeights()
    cfg = TrainConfig(**FAST, max_steps=4, eval_interval=100)
    weighted = train(cfg, data, [cb])
    plain = train(cfg, data)
    assert cb.checked == 4
    assert weighted.final_val_losses != plain.final_val_losses


class Stopper:
    def on_step_end(self, ctx, step, info):
        if step == 2:
            ctx.request_stop()

    def on_train_end(self, ctx, result):
        self.result = result


def test_request_stop_and_evaluate(corpora):
    data = {k: corpora[k] for k in ("code", "prose")}
    cb = Stopper()
    r = train(TrainConfig(**FAST, max_steps=50, eval_interval=100), data, [cb])
    assert r.stopped and r.steps == 3 and cb.result is r
    assert r.curve[-1]["step"] == 3 and set(r.final_val_losses) == set(data)


def test_token_budget_and_max_epochs(corpora):
    data = {k: corpora[k] for k in ("code", "prose")}  # ~27k training tokens each
    cfg = TrainConfig(
        **dict(FAST, batch_size=4),
        max_tokens=4 * 32 * 30,
        eval_interval=100,
        weights=[0.9, 0.1],
        max_epochs=0.1,
    )
    assert cfg.total_steps() == 30
    r = train(cfg, data)
    # code (3.6 sequences a step) passes 0.1 epochs after ~24 steps; prose never does
    assert set(r.exhausted) == {"code"} and r.weights == [0.0, 1.0]
    with pytest.raises(DataExhausted):
        train(TrainConfig(**FAST, max_steps=200, eval_interval=100, max_epochs=0.1), data)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_run(corpora):
    data = {k: corpora[k] for k in ("code", "prose")}
    r = train(TrainConfig(**FAST, max_steps=20, eval_interval=10, device="cuda"), data)
    assert r.device.startswith("cuda") and all(np.isfinite(list(r.final_val_losses.values())))
