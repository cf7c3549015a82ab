"""Adapters from the online mixers to the trainer's callback hook.

See :mod:`mixopt.training.callbacks` for the hook contract. Two callbacks:

* :class:`OnlineMixingCallback` drives any :class:`~mixopt.online.base.OnlineMixer`:

  - ``mixture_for_step(ctx, step)``: if the mixer asks for validation losses at this step
    boundary (Aioli's LearnParams sweeps), it calls ``ctx.evaluate(eval_max_batches)`` and
    reports them (with the mixture the previous steps used); then it returns the mixer's
    mixture for the step, or None when unchanged (the sampler keeps its weights);
  - ``on_step_end(ctx, step, info)``: reports ``info["per_domain_loss"]`` as the batch's
    ``train_losses`` (ODM, DoReMi) with the mixture the batch was sampled from;
  - ``sample_weights(...)``: only for DoReMi in loss-weighting mode (the paper's proxy
    objective): per-sequence weights ``alpha_i / p_i`` over the batch mean (mean 1), ``p``
    the sampling distribution, as in the reference ``doremi/trainer.py``;
  - ``trajectory``: ``[{"step", "weights": {domain: w}, "phase"}]`` each time the mixture
    sent to the trainer (or DoReMi's alpha) changes, for storing with the run;
  - ``state_dict()`` / ``load_state_dict()`` so the trainer's checkpoint includes the mixer.

* :class:`SampleReweightingCallback`: loss-based sample reweighting (Sow et al. 2025) via
  ``sample_weights``; returns None (plain mean) during the warm-up.

Torch is imported lazily, only when a tensor of weights is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mixopt.online.base import OnlineMixer, load_mixer
from mixopt.online.reweighting import (
    DEFAULT_R,
    DEFAULT_WARMUP_STEPS,
    resolve_strategy,
    sample_weights_torch,
)


class OnlineMixingCallback:
    """Run an online mixer inside ``mixopt.training.trainer.train``.

    Parameters
    ----------
    mixer : OnlineMixer
        The mixer; its domain order must be the run's (checked at train start).
    eval_max_batches : int or None
        Passed to ``ctx.evaluate`` for the mixer's own evaluations (Aioli), to bound their
        cost; None evaluates on the whole validation split.
    record_every : int
        Minimum number of steps between trajectory entries (a phase change is always
        recorded); ODM and DoReMi change their weights every step.
    """

    def __init__(
        self, mixer: OnlineMixer, eval_max_batches: int | None = None, record_every: int = 1
    ) -> None:
        self.mixer = mixer
        self.eval_max_batches = eval_max_batches
        self.record_every = max(1, int(record_every))
        self.trajectory: list[dict[str, Any]] = []
        self.n_evals = 0
        self._sent: np.ndarray | None = None  # mixture last returned to the trainer
        self._last_sent_rec: np.ndarray | None = None
        self._last_alpha: np.ndarray | None = None

    # -- hooks ---------------------------------------------------------------------------
    def on_train_start(self, ctx) -> None:
        domains = list(getattr(ctx, "domains", self.mixer.domains))
        if domains != list(self.mixer.domains):
            raise ValueError(f"domains: mixer has {self.mixer.domains}, the run has {domains}")
        config = getattr(ctx, "config", None)
        if config is not None and hasattr(config, "total_steps"):
            vocab = getattr(ctx, "vocab_size", None)
            self.mixer.configure_run(int(config.total_steps()), vocab)

    def mixture_for_step(self, ctx, step: int) -> np.ndarray | None:
        if self.mixer.needs_eval_at(step):
            losses = ctx.evaluate(self.eval_max_batches)
            self.n_evals += 1
            prev = None if self._sent is None else self.mixer.weights_dict(self._sent)
            self.mixer.update([{"step": int(step), "eval_losses": dict(losses), "mixture": prev}])
        w = self.mixer.mixture_for_step(step)
        self._record(step, w)
        if self._sent is not None and np.array_equal(w, self._sent):
            return None
        self._sent = w
        return w

    def on_step_end(self, ctx, step: int, info: Mapping[str, Any]) -> None:
        if "train_losses" not in self.mixer.uses:
            return
        per_domain = {d: float(v) for d, v in (info.get("per_domain_loss") or {}).items()}
        if not per_domain:
            return
        obs = {"step": int(step), "train_losses": per_domain}
        ids = info.get("domain_ids")
        if ids is not None:
            obs["batch_size"] = int(len(ids))  # the trainer's batches are systematic samples
        if info.get("tokens") is not None:
            obs["tokens"] = int(info["tokens"])
        if self._sent is not None:
            obs["mixture"] = self.mixer.weights_dict(self._sent)
        self.mixer.update([obs])
        self._record(step + 1, self.mixer.mixture_for_step(step + 1))

    def sample_weights(self, ctx, step: int, per_sample_loss, domain_ids):
        """DoReMi's loss weighting: sequence weights ``alpha_i / p_i`` (mean 1 in the batch)."""
        lw = self.mixer.loss_weights() if hasattr(self.mixer, "loss_weights") else None
        if lw is None:
            return None
        import torch

        per_domain = torch.as_tensor(lw, dtype=torch.float32, device=per_sample_loss.device)
        ids = torch.as_tensor(np.asarray(domain_ids), device=per_sample_loss.device).long()
        w = per_domain[ids]
        return w / w.mean().clamp_min(1e-12)

    def on_train_end(self, ctx, result) -> None:
        pass

    # -- record --------------------------------------------------------------------------
    def _record(self, step: int, sent: np.ndarray) -> None:
        """Append to the trajectory when the sent mixture or the mixer's weights change."""
        alpha = self.mixer.weights()
        phase = self.mixer.phase(step) if hasattr(self.mixer, "phase") else "mix"
        last = self.trajectory[-1] if self.trajectory else None
        if last is not None:
            if (
                self._last_sent_rec is not None
                and self._last_alpha is not None
                and np.array_equal(sent, self._last_sent_rec)
                and np.array_equal(alpha, self._last_alpha)
            ):
                return
            if phase == last["phase"] and step - last["step"] < self.record_every:
                return
        entry = {"step": int(step), "weights": self.mixer.weights_dict(sent), "phase": phase}
        if not np.array_equal(alpha, sent):
            entry["mixer_weights"] = self.mixer.weights_dict(alpha)
        self.trajectory.append(entry)
        self._last_sent_rec = np.asarray(sent).copy()
        self._last_alpha = alpha

    def final_weights(self) -> dict[str, float]:
        """The mixer's recommendation (DoReMi: average alpha)."""
        return self.mixer.weights_dict(self.mixer.final_weights())

    # -- checkpointing -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "mixer": self.mixer.state_dict(),
            "trajectory": self.trajectory,
            "n_evals": self.n_evals,
            "sent": None if self._sent is None else self._sent.tolist(),
            "record_every": self.record_every,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.mixer = load_mixer(state["mixer"])
        self.trajectory = [dict(e) for e in state.get("trajectory", [])]
        self.n_evals = int(state.get("n_evals", 0))
        self.record_every = int(state.get("record_every", self.record_every))
        self._sent = None if state.get("sent") is None else np.asarray(state["sent"], dtype=float)
        if self.trajectory:
            last = self.trajectory[-1]
            self._last_sent_rec = np.array([last["weights"][d] for d in self.mixer.domains])
            mw = last.get("mixer_weights", last["weights"])
            self._last_alpha = np.array([mw[d] for d in self.mixer.domains])


class SampleReweightingCallback:
    """Loss-based sample reweighting (Sow et al. 2025) as a trainer callback.

    Parameters
    ----------
    strategy : str, default "linupper"
    r : float, default 1.0 (use 0.4 together with domain reweighting)
    warmup_steps : int, default 1000 (the reference ``burnout_steps``)
    """

    def __init__(
        self,
        strategy: str = "linupper",
        r: float = DEFAULT_R,
        warmup_steps: int = DEFAULT_WARMUP_STEPS,
    ) -> None:
        self.strategy = resolve_strategy(strategy)
        if r <= 0:
            raise ValueError("r: must be > 0")
        self.r = float(r)
        self.warmup_steps = int(warmup_steps)
        self.n_reweighted = 0

    def sample_weights(self, ctx, step: int, per_sample_loss, domain_ids):
        if step < self.warmup_steps:
            return None
        self.n_reweighted += 1
        return sample_weights_torch(per_sample_loss, self.strategy, self.r)

    def state_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "r": self.r,
            "warmup_steps": self.warmup_steps,
            "n_reweighted": self.n_reweighted,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.strategy = state["strategy"]
        self.r = float(state["r"])
        self.warmup_steps = int(state["warmup_steps"])
        self.n_reweighted = int(state.get("n_reweighted", 0))
