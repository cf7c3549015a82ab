"""ODM: Online Data Mixing with a multi-armed bandit (EXP3), domains as arms.

Albalak, Pan, Raffel, Wang (2023), "Efficient Online Data Mixing For Language Model
Pre-Training", arXiv:2312.02406, Algorithm 1; reference implementation
``alon-albalak/online-data-mixing``, ``megatron/data/data_sampling_utils.py``
(``SmoothedMeanWeightUpdater``, the class the README names as the paper's method).

At update ``t = 1, 2, ...`` (one per training batch):

* exploration rate  ``eps_t = min(1/K, sqrt(ln K / (K t)))``;
* reward of every domain ``i`` present in the batch: its mean training loss ``L_i``
  (the loss is the reward: domains the model still finds hard are sampled more);
  importance-weighted and smoothed,
  ``R_i <- alpha R_i + (1 - alpha) L_i / q_i``, ``alpha = 0.9``, where ``q_i`` is the
  probability that domain ``i`` is in the batch at all (domains absent from the batch keep
  ``R_i``). In the paper one batch is one pull of one arm, so ``q_i = pi(i)``, the
  distribution the batch was sampled from. When the observation gives ``batch_size`` (our
  trainer's systematic sampling: domain ``i`` gets ``floor`` or ``ceil`` of ``B pi(i)``
  sequences) ``q_i = min(1, B pi(i))``: a domain with ``B pi(i) >= 1`` is in every batch
  and is not importance-weighted, only those that can be absent are (dividing every reward
  by ``pi`` would inflate them about K times and turn the bandit into a loss-proportional
  rule);
* policy  ``pi_{t+1}(i) = (1 - K eps_t) exp(eps_{t-1} R_i) / sum_j exp(eps_{t-1} R_j) + eps_t``
  (a Gibbs distribution mixed with the uniform exploration mass ``K eps_t``).

Before the first update (and during ``warmup_steps``) the policy is ``initial_weights``.
The reference scripts use mixed minibatches, an update every step, and 2,000 warm-up steps
of a 100k-step run (``scripts/train_1B_ema_0.5smoothing.sh``); our default warm-up is 0 since
proxy runs here are short. The Gibbs term uses ``eps_{t-1}`` as the learning rate, as in the
paper (so the first update uses ``eps_0 = 1/K``).

Observations read: ``step``, ``train_losses`` and optionally ``mixture`` (the distribution the
batch was sampled from; the current policy when absent) and ``batch_size`` (sequences per
batch, systematic sampling). ``eval_losses`` are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from mixopt.online.base import OnlineMixer, register


@register("odm")
class ODM(OnlineMixer):
    """EXP3 online data mixing (Albalak et al. 2023, Algorithm 1).

    Parameters (``params``)
    -----------------------
    alpha : float, default 0.9
        Smoothing of the importance-weighted reward estimate (``smoothing_factor=0.9`` in
        the reference ``SmoothedMeanWeightUpdater``).
    warmup_steps : int, default 0
        Observations with ``step < warmup_steps`` leave the policy at ``initial_weights``.
    reward_scale : float, default 1.0
        Multiplies the loss before it becomes a reward (the early EXP3 variant of the
        reference divided by 10); 1 is the paper's smoothed-mean updater.
    """

    defaults = {"alpha": 0.9, "warmup_steps": 0, "reward_scale": 1.0}
    uses = ("step", "train_losses", "mixture", "batch_size")

    def __init__(self, domains, params=None, initial_weights=None, seed=0):
        super().__init__(domains, params, initial_weights, seed)
        self.rewards = np.zeros(self.k)  # smoothed importance-weighted reward estimates R_i
        self.t = 0  # number of bandit updates so far
        self.eps = 1.0 / self.k  # eps_t of the last update (eps_0 = 1/K)

    def _validate_params(self) -> None:
        a = float(self.params["alpha"])
        if not 0.0 <= a < 1.0:
            raise ValueError("params.alpha: must be in [0, 1)")
        if int(self.params["warmup_steps"]) < 0:
            raise ValueError("params.warmup_steps: must be >= 0")
        if float(self.params["reward_scale"]) <= 0:
            raise ValueError("params.reward_scale: must be > 0")

    @staticmethod
    def exploration(k: int, t: int) -> float:
        """``eps_t = min(1/K, sqrt(ln K / (K t)))`` (``1/K`` for ``t = 0``)."""
        if t <= 0 or k == 1:
            return 1.0 / k
        return min(1.0 / k, math.sqrt(math.log(k) / (k * t)))

    @staticmethod
    def presence_probability(pi: np.ndarray, batch_size: Any = None) -> np.ndarray:
        """Probability that each domain is in a batch: ``pi`` (one arm per batch, the
        paper) or ``min(1, B pi)`` for a systematically sampled batch of ``B`` sequences."""
        if batch_size is None:
            return np.asarray(pi, dtype=float)
        b = int(batch_size)
        if b < 1:
            raise ValueError("batch_size: must be >= 1")
        return np.minimum(1.0, b * np.asarray(pi, dtype=float))

    def _update_one(self, obs: Mapping[str, Any]) -> None:
        if int(obs.get("step", 0)) < int(self.params["warmup_steps"]):
            return
        losses = self.losses(obs, "train_losses")
        present = ~np.isnan(losses)
        if not present.any():
            return
        pi = self.mixture_of(obs)
        if pi is None:
            pi = self._w
        alpha = float(self.params["alpha"])
        reward = float(self.params["reward_scale"]) * losses[present]
        q = self.presence_probability(pi, obs.get("batch_size"))
        # importance weighting: a domain that is rarely in a batch gets a larger reward
        self.rewards[present] = alpha * self.rewards[present] + (1 - alpha) * reward / np.maximum(
            q[present], 1e-12
        )
        prev_eps = self.eps
        self.t += 1
        self.eps = self.exploration(self.k, self.t)
        z = prev_eps * self.rewards
        gibbs = np.exp(z - z.max())
        gibbs /= gibbs.sum()
        w = (1.0 - self.k * self.eps) * gibbs + self.eps
        self._w = w / w.sum()
        self.n_updates += 1

    def _state(self) -> dict[str, Any]:
        return {"rewards": self.rewards.tolist(), "t": self.t, "eps": self.eps}

    def _load(self, state: Mapping[str, Any]) -> None:
        self.rewards = np.asarray(state["rewards"], dtype=float)
        self.t = int(state["t"])
        self.eps = float(state["eps"])
