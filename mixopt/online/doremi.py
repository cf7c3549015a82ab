"""DoReMi: domain reweighting with minimax optimisation (Group DRO over domains).

Xie, Pham, Dong, Du, Liu, Lu, Liang, Le, Ma, Yu (2023), "DoReMi: Optimizing Data Mixtures
Speeds Up Language Model Pretraining", NeurIPS 2023, Algorithm 1; reference implementation
``sangmichaelxie/doremi``, ``doremi/trainer.py`` (``update_domain_weights``, optimizer
``doremiv1``) with ``reweight_eta=1`` and ``reweight_eps=1e-3`` (``doremi/training_args.py``).

At each training step ``t``:

* per-domain excess loss ``lambda_i = max(L_i(theta_t) - L_i(ref), 0)`` of the domains present
  in the batch; a domain absent from the batch keeps its last value (initially
  ``log(vocab_size)``, as in the reference);
* ``alpha' = softmax(log alpha_{t-1} + eta * lambda)``, ``eta = 1``;
* ``alpha_t = (1 - c) alpha' + c u``, ``c = 1e-3``, ``u`` uniform (or a given distribution);
* the result is the average ``(1/T) sum_t alpha_t`` (:meth:`DoReMi.final_weights`).

Deviation: the reference clips each *token's* excess loss before averaging per domain; an
observation here carries per-domain mean losses, so the clip applies to the domain mean.

In the paper the proxy model samples from the reference distribution and the alpha weights
enter the *loss*. ``params.loss_weighting`` keeps that (the trainer callback turns alpha into
per-sequence loss weights and samples from ``sampling_weights``); set it to False to sample
the batches from alpha instead, the usual online-mixing use. As in the reference
(``doremi/trainer.py``, "normalize by inverse sampling weight") a sequence of domain ``i``
weighs ``alpha_i / p_i`` (``p`` the sampling distribution), normalised over the batch
(:meth:`DoReMi.loss_weights`): the expected loss is then ``sum_i alpha_i L_i`` whatever ``p``
is; weighting by ``alpha_i`` alone would optimise ``sum_i p_i alpha_i L_i``.

Initial scores: the reference starts every domain's score (``perdomain_scores``) at
``log(vocabulary size)``, the loss of a uniform predictor, so a domain absent from the first
batches is treated as maximally behind. ``params.vocab_size`` sets it (the trainer callback
fills it from the model); without it the scores start at 0.

Reference losses come in ``params``: ``reference_losses`` ``{domain: loss}`` (the reference
model's per-domain loss) and/or ``reference_curve`` ``[{"step": s, "losses": {...}}, ...]``
(a reference run's per-step losses, linearly interpolated at the observation's step, clamped
at the ends), which is preferred when given.

Observations read: ``step``, ``train_losses``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from mixopt.online.base import OnlineMixer, as_mixture, register


@register("doremi")
class DoReMi(OnlineMixer):
    """Online DoReMi domain weights (Xie et al. 2023, Algorithm 1).

    Parameters (``params``)
    -----------------------
    eta : float, default 1.0
        Step size of the exponentiated-gradient update (``reweight_eta``).
    smoothing : float, default 1e-3
        Mixing ``c`` with the smoothing distribution (``reweight_eps``).
    smoothing_weights : mapping or list, optional
        Smoothing distribution ``u`` (uniform when None).
    reference_losses : mapping domain -> float
        Per-domain loss of the reference model.
    reference_curve : list of {"step", "losses"}, optional
        Per-step reference losses (interpolated); overrides ``reference_losses``.
    loss_weighting : bool, default True
        Paper mode: alpha weights the loss, batches come from ``sampling_weights()`` (the
        reference distribution = ``initial_weights``).
    vocab_size : int or None, default None
        Scores start at ``log(vocab_size)`` as in the reference (0 when None).
    """

    defaults = {
        "eta": 1.0,
        "smoothing": 1e-3,
        "smoothing_weights": None,
        "reference_losses": None,
        "reference_curve": None,
        "loss_weighting": True,
        "vocab_size": None,
    }
    uses = ("step", "train_losses")

    def __init__(self, domains, params=None, initial_weights=None, seed=0):
        super().__init__(domains, params, initial_weights, seed)
        self.excess = self._initial_scores()  # last clipped excess loss per domain (lambda)
        self.weight_sum = np.zeros(self.k)  # sum of alpha_t for the average

    def _initial_scores(self) -> np.ndarray:
        v = self.params["vocab_size"]
        return np.full(self.k, math.log(int(v)) if v is not None else 0.0)

    def configure_run(self, total_steps: int, vocab_size: int | None = None) -> None:
        """Take the model's vocabulary size for the initial scores (before any update)."""
        if vocab_size is not None and self.params["vocab_size"] is None and self.n_updates == 0:
            self.params["vocab_size"] = int(vocab_size)
            self.excess = self._initial_scores()

    def _validate_params(self) -> None:
        p = self.params
        if p["vocab_size"] is not None and int(p["vocab_size"]) < 2:
            raise ValueError("params.vocab_size: must be None or >= 2")
        if float(p["eta"]) <= 0:
            raise ValueError("params.eta: must be > 0")
        if not 0.0 <= float(p["smoothing"]) <= 1.0:
            raise ValueError("params.smoothing: must be in [0, 1]")
        self.u = (
            np.full(self.k, 1.0 / self.k)
            if p["smoothing_weights"] is None
            else as_mixture(p["smoothing_weights"], self.domains, "params.smoothing_weights")
        )
        self._ref_steps = None
        if p["reference_curve"]:
            pts = sorted(p["reference_curve"], key=lambda r: float(r["step"]))
            self._ref_steps = np.array([float(r["step"]) for r in pts])
            self._ref_curve = np.array(
                [self._ref_vector(r["losses"], "params.reference_curve") for r in pts]
            )
        elif p["reference_losses"] is not None:
            self._ref = self._ref_vector(p["reference_losses"], "params.reference_losses")
        else:
            raise ValueError(
                "params.reference_losses: DoReMi needs the reference model's per-domain losses"
            )

    def _ref_vector(self, losses: Mapping[str, Any], field: str) -> np.ndarray:
        missing = [d for d in self.domains if d not in losses]
        if missing:
            raise ValueError(f"{field}: missing domain(s) {missing}")
        v = np.array([float(losses[d]) for d in self.domains])
        if not np.all(np.isfinite(v)):
            raise ValueError(f"{field}: losses must be finite")
        return v

    def reference_at(self, step: float) -> np.ndarray:
        """Reference per-domain losses at ``step`` (constant unless a curve is given)."""
        if self._ref_steps is None:
            return self._ref
        return np.array(
            [np.interp(step, self._ref_steps, self._ref_curve[:, i]) for i in range(self.k)]
        )

    def sampling_weights(self) -> np.ndarray:
        """Distribution the batches come from: the reference one in loss-weighting mode."""
        return self.initial_weights.copy() if self.params["loss_weighting"] else self.weights()

    def mixture_for_step(self, step: int) -> np.ndarray:
        return self.sampling_weights()

    def loss_weights(self) -> np.ndarray | None:
        """Per-domain loss weights ``alpha_i / p_i`` normalised to sum 1 (reference
        ``doremi/trainer.py``), ``p`` the sampling distribution; None unless loss weighting.

        A batch's loss is ``sum_s w_{d(s)} L_s / sum_s w_{d(s)}`` over its sequences ``s``.
        """
        if not self.params["loss_weighting"]:
            return None
        w = self.weights() / np.maximum(self.sampling_weights(), 1e-12)
        return w / w.sum()

    def _update_one(self, obs: Mapping[str, Any]) -> None:
        losses = self.losses(obs, "train_losses")
        present = ~np.isnan(losses)
        if not present.any():
            return
        ref = self.reference_at(float(obs.get("step", 0)))
        self.excess[present] = np.maximum(losses[present] - ref[present], 0.0)
        z = np.log(np.maximum(self._w, 1e-300)) + float(self.params["eta"]) * self.excess
        alpha = np.exp(z - z.max())
        alpha /= alpha.sum()
        c = float(self.params["smoothing"])
        alpha = (1 - c) * alpha + c * self.u
        self._w = alpha / alpha.sum()
        self.weight_sum += self._w
        self.n_updates += 1

    def average_weights(self) -> np.ndarray:
        """Average alpha over all updates so far: DoReMi's output mixture."""
        if self.n_updates == 0:
            return self.weights()
        avg = self.weight_sum / self.n_updates
        return avg / avg.sum()

    def final_weights(self) -> np.ndarray:
        return self.average_weights()

    def _state(self) -> dict[str, Any]:
        return {"excess": self.excess.tolist(), "weight_sum": self.weight_sum.tolist()}

    def _load(self, state: Mapping[str, Any]) -> None:
        self.excess = np.asarray(state["excess"], dtype=float)
        self.weight_sum = np.asarray(state["weight_sum"], dtype=float)
