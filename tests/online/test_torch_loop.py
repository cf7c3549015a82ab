"""The callbacks in a real (tiny) torch training loop that follows the hook contract of
``mixopt.training.callbacks``: a bigram model on three synthetic token "domains"."""

from __future__ import annotations

import numpy as np
import pytest

from mixopt.online import make_mixer
from mixopt.online.callback import OnlineMixingCallback, SampleReweightingCallback

torch = pytest.importorskip("torch")

DOMAINS = ["easy", "medium", "hard"]
VOCAB, SEQ, BATCH = 16, 12, 16


class Ctx:
    def __init__(self, model, gens):
        self.domains = DOMAINS
        self.weights = np.full(3, 1 / 3)
        self.config = None
        self.model = model
        self.gens = gens

    def evaluate(self, max_batches=None):
        g = torch.Generator().manual_seed(99)
        with torch.no_grad():
            return {
                d: float(seq_losses(self.model, self.gens[i](32, g)).mean())
                for i, d in enumerate(DOMAINS)
            }

    def request_stop(self):
        pass


def make_generators():
    # each domain: a Markov chain over the vocabulary, of increasing entropy
    rng = np.random.default_rng(0)
    mats = []
    for conc in (0.05, 0.5, 5.0):
        mats.append(
            torch.tensor(rng.dirichlet(np.full(VOCAB, conc), size=VOCAB), dtype=torch.float32)
        )

    def gen(m):
        def sample(n, g):
            x = torch.zeros(n, SEQ, dtype=torch.long)
            x[:, 0] = torch.randint(VOCAB, (n,), generator=g)
            for t in range(1, SEQ):
                x[:, t] = torch.multinomial(m[x[:, t - 1]], 1, generator=g).squeeze(1)
            return x

        return sample

    return [gen(m) for m in mats]


def seq_losses(model, x):
    logits = model(x[:, :-1])  # (B, T-1, V)
    ce = torch.nn.functional.cross_entropy(
        logits.reshape(-1, VOCAB), x[:, 1:].reshape(-1), reduction="none"
    )
    return ce.view(x.shape[0], -1).mean(dim=1)  # (B,)


def train(callbacks, steps=40, seed=0):
    torch.manual_seed(seed)
    gens = make_generators()
    model = torch.nn.Embedding(VOCAB, VOCAB)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    ctx = Ctx(model, gens)
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    for cb in callbacks:
        getattr(cb, "on_train_start", lambda c: None)(ctx)
    for step in range(steps):
        for cb in callbacks:
            w = getattr(cb, "mixture_for_step", lambda c, s: None)(ctx, step)
            if w is not None:
                ctx.weights = w
        ids = rng.choice(3, size=BATCH, p=ctx.weights)
        x = torch.cat([gens[i]((ids == i).sum().item(), g) for i in range(3)])
        ids = np.sort(ids)
        per_sample = seq_losses(model, x)
        weights = torch.ones(BATCH)
        for cb in callbacks:
            sw = getattr(cb, "sample_weights", lambda *a: None)(ctx, step, per_sample, ids)
            if sw is not None:
                weights = weights * sw
        loss = (weights * per_sample).mean()  # weights are detached
        opt.zero_grad()
        loss.backward()
        opt.step()
        pdl = {
            DOMAINS[i]: float(per_sample[ids == i].detach().mean())
            for i in range(3)
            if (ids == i).any()
        }
        info = {
            "loss": float(loss.detach()),
            "domain_ids": ids,
            "per_sample_loss": per_sample.detach().numpy(),
            "per_domain_loss": pdl,
            "tokens": (step + 1) * BATCH * SEQ,
            "lr": 0.05,
        }
        for cb in callbacks:
            getattr(cb, "on_step_end", lambda *a: None)(ctx, step, info)
    return ctx


@pytest.mark.parametrize("name", ["odm", "doremi", "aioli"])
def test_mixers_in_a_torch_loop(name):
    params = {
        "odm": {},
        "doremi": {"reference_losses": {d: 1.0 for d in DOMAINS}},
        "aioli": {"update_steps": 20, "lp_rounds": 1, "lp_steps": 2, "ema": None},
    }[name]
    cb = OnlineMixingCallback(make_mixer(name, DOMAINS, params))
    rw = SampleReweightingCallback("linupper", r=0.4, warmup_steps=10)
    train([cb, rw], steps=40)
    assert len(cb.trajectory) > 1
    assert cb.mixer.n_updates > 0
    assert np.abs(cb.mixer.weights() - 1 / 3).sum() > 1e-3
    assert rw.n_reweighted == 30
