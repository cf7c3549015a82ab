"""The trainer's callback hook: how online mixers (and evaluation, progress, cancellation)
talk to ``mixopt.training.trainer.train``.

A callback is any object with some of these methods; missing ones are skipped. All
weights are numpy float arrays over the run's domains, in the run's domain order, on the
simplex.

* ``on_train_start(ctx)``: called once, after the model and data are ready.
* ``mixture_for_step(ctx, step) -> np.ndarray | None``: called before each optimiser step;
  returning weights switches the sampler to them from this step on (None keeps them).
* ``sample_weights(ctx, step, per_sample_loss, domain_ids) -> torch.Tensor | None``:
  per-sequence weights (shape ``(batch,)``, mean 1) used in the loss of this step
  (loss-based sample reweighting); None means plain mean.
* ``on_step_end(ctx, step, info)``: ``info`` has ``loss`` (float), ``domain_ids`` (np int
  array, one per sequence), ``per_sample_loss`` (np float array), ``per_domain_loss``
  (dict name -> mean training loss of that domain's sequences in the batch, absent when the
  domain is not in the batch), ``tokens`` (tokens seen so far), ``lr``.
* ``on_eval(ctx, step, val_losses)``: after each periodic evaluation (dict name -> loss).
* ``on_train_end(ctx, result)``.

``ctx`` (:class:`TrainContext`) exposes ``domains``, ``weights`` (current), ``config``,
``evaluate(max_batches=None) -> dict[str, float]`` (per-domain validation loss of the
current model, used by Aioli's LearnParams sweeps), and ``request_stop()``.
"""

from __future__ import annotations

from typing import Any, Protocol


class TrainContext(Protocol):
    domains: list[str]
    weights: Any
    config: Any

    def evaluate(self, max_batches: int | None = None) -> dict[str, float]: ...

    def request_stop(self) -> None: ...
