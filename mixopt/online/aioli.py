"""Aioli: online data mixing from a linear dynamic mixing law, learned during training.

Chen, Hu, Lourie, Cho, Ré (2024), "Aioli: A Unified Optimization Framework for Language Model
Data Mixing", arXiv:2411.05735 (ICLR 2025): Algorithm 1 (Aioli) and Algorithm 2
(LearnParams); reference implementation ``HazyResearch/aioli``, ``trainer/aioli_trainer.py``
(``learn_params_subroutine`` and ``train``), hyper-parameters from
``scripts/full/aioli/run.sh`` and the README.

Law (paper eq. "linear dynamic mixing law"): ``L^{t+1}_i = L^t_i - sum_j A^t_ij p^t_j``.

Each round ``t`` of ``update_steps`` optimiser steps:

1. *LearnParams* (Algorithm 2). The domains are swept in random order, ``lp_rounds`` passes
   (each pass a fresh permutation). Sweep ``j`` trains ``lp_steps`` steps on the smoothed
   one-hot mixture ``w_j = one_hot_factor`` on domain ``j`` and
   ``(1 - one_hot_factor)/(K - 1)`` elsewhere, and records every domain's validation-loss drop
   ``M[:, j] += L(before) - L(after)``. ``M /= lp_rounds``. The smoothing is undone by a linear
   solve: ``M = A W^T`` with ``W`` the matrix of sweep mixtures, so ``A = M W^{-T}``.
2. ``A`` is made non-negative (``A -= min(A)`` when ``min(A) < 0``) and normalised to sum 1
   (``aioli_normalize_A``).
3. Update (exponentiated gradient on the law): ``p^t ∝ p^{t-1} exp(eta * sum_i A^t_ij)``; with
   ``ema`` set, the reference instead smooths ``A`` (``Ā = (1 - ema) A^t + ema Ā``, so ``ema``
   weighs the *past*) and sets ``p^t ∝ p^0 exp(eta * sum_i Ā_ij)``.
4. The remaining ``update_steps - K * lp_rounds * lp_steps`` steps of the round use ``p^t``.

Settings: *unrestricted* (from scratch: ``p^0`` uniform) and *restricted* (a prior mixture,
e.g. learned from shorter runs, is trained for ``prior_steps`` and Aioli adjusts it). The
reference code anchors the update at uniform after the prior (``anchor="uniform"``);
``anchor="prior"`` anchors it at the prior (``p^0 = prior`` in Algorithm 1), a warm start.

Schedule and protocol
---------------------
Aioli is a *schedule*: the trainer asks :meth:`Aioli.mixture_for_step` before every step and
must measure per-domain validation losses at the step boundaries where
:meth:`Aioli.needs_eval_at` is true. Step ``s`` is the 0-based index of the optimiser step
about to be taken; "boundary ``b``" means after ``b`` steps (before step ``b``). Round ``r``
starts at ``s0 = prior_steps + r * update_steps``; its eval boundaries are
``s0 + j * lp_steps`` for ``j = 0 .. K * lp_rounds`` and step ``s0 + j * lp_steps + i``
(``0 <= i < lp_steps``) trains on sweep mixture ``j``. :meth:`Aioli.eval_boundaries` lists
them. The evaluations are reported as observations
``{"step": b, "eval_losses": {...}, "mixture": <mixture of the steps before b, optional>}``;
when ``mixture`` is given it must match the scheduled sweep mixture (it guards against a
trainer that trained on something else). Evaluations at other steps are ignored, so the
trainer's periodic evaluations can be passed through. A round whose sweeps were not all
reported (an external trainer that missed one) leaves ``p`` unchanged (counted in
``skipped_rounds``); the schedule itself is a pure function of the step and the seed, so a
restart never desynchronises it.

Observations read: ``step``, ``eval_losses``, ``mixture``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from mixopt.online.base import OnlineMixer, register

#: default ``eta`` per domain: ``eta = 0.1 K`` (0.2 at K = 2, the reference's 2-domain setting)
ETA_PER_DOMAIN = 0.1


@register("aioli")
class Aioli(OnlineMixer):
    """Aioli online mixer (Chen et al. 2024, Algorithms 1-2).

    Parameters (``params``). The reference's full SlimPajama run
    (``scripts/full/aioli/run.sh``) uses ``lp_rounds=2, lp_steps=10, eta=1,
    update_steps=200, one_hot_factor=0.75, ema=0.1``; its README says to try no ``ema``
    first and recommends ``lp_steps=4`` and ``eta`` in {0.1, 0.2, 0.5}; its 2- and 3-domain
    settings use ``eta`` 0.1-0.2 with sweeps taking 13-29% of training. Our defaults follow
    those short-run settings: ``lp_rounds=2, lp_steps=4``, no EMA, sweeps capped at 14% of
    training, ``eta = 0.1 K``. Weight movement bound: ``A`` is normalised to sum 1, so one
    update multiplies the ratio of two weights by at most ``e^eta`` (with ``ema`` set the
    weights stay within ``e^eta`` of the anchor forever; without it the bound compounds over
    rounds). Sweeps are costly (their batches are ``one_hot_factor`` one domain), which is
    why the budget is a share of training.

    update_steps : int or None, default None
        Round length in optimiser steps, LearnParams sweeps included (None: derived from
        ``sweep_share``, see :meth:`_derive_schedule`).
    lp_rounds : int, default 2
        Passes over the domains in LearnParams (lowered to fit the sweep budget).
    lp_steps : int, default 4
        Optimiser steps per sweep (lowered to fit the sweep budget).
    eta : float or None, default None
        Step size of the exponentiated-gradient update (None: ``0.1 * K``).
    sweep_share : float or None, default 0.14
        Largest share of the training steps spent in LearnParams sweeps.
    total_steps : int or None, default None
        Length of the run; with ``sweep_share`` it fixes the number of rounds. The trainer
        callback fills it in from the run's budget when left None.
    one_hot_factor : float, default 0.75
        Weight of the swept domain in a sweep mixture (must exceed ``1/K``; 1 = pure one-hot).
    ema : float or None, default None
        Weight of the past in the moving average over ``A`` (None: no averaging, the update
        is multiplicative over rounds).
    normalize_A : bool, default True
        Shift ``A`` to be non-negative and normalise it to sum 1.
    prior_steps : int, default 0
        Steps trained on ``initial_weights`` before the first round (restricted setting).
    anchor : "uniform" or "prior", default "uniform"
        ``p^0`` of the update: uniform (reference code) or ``initial_weights`` (warm start).
    """

    defaults = {
        "update_steps": None,
        "lp_rounds": 2,
        "lp_steps": 4,
        "eta": None,
        "sweep_share": 0.14,
        "total_steps": None,
        "one_hot_factor": 0.75,
        "ema": None,
        "normalize_A": True,
        "prior_steps": 0,
        "anchor": "uniform",
    }
    uses = ("step", "eval_losses", "mixture")

    def __init__(self, domains, params=None, initial_weights=None, seed=0):
        super().__init__(domains, params, initial_weights, seed)
        self.anchor_weights = (
            self.initial_weights.copy()
            if self.params["anchor"] == "prior"
            else np.full(self.k, 1.0 / self.k)
        )
        self.ema_A: np.ndarray | None = None
        self.rounds_done = 0  # rounds whose update was applied
        self.skipped_rounds = 0
        self.history: list[dict[str, Any]] = []  # per round: {"round", "step", "A", "weights"}
        self._reset_round(-1)

    # -- parameters ----------------------------------------------------------------------
    def _validate_params(self) -> None:
        p = self.params
        for key in ("lp_rounds", "lp_steps"):
            if int(p[key]) < 1:
                raise ValueError(f"params.{key}: must be >= 1")
        if p["update_steps"] is not None and int(p["update_steps"]) < 1:
            raise ValueError("params.update_steps: must be None or >= 1")
        if int(p["prior_steps"]) < 0:
            raise ValueError("params.prior_steps: must be >= 0")
        share = p["sweep_share"]
        if share is not None and not 0.0 < float(share) < 1.0:
            raise ValueError("params.sweep_share: must be None or in (0, 1)")
        if p["total_steps"] is not None and int(p["total_steps"]) <= int(p["prior_steps"]):
            raise ValueError("params.total_steps: must exceed prior_steps")
        if p["eta"] is not None and float(p["eta"]) <= 0:
            raise ValueError("params.eta: must be None or > 0")
        self._derive_schedule()
        if self.lp_duration > self.update_steps:
            raise ValueError(
                f"params.update_steps: a round must hold the LearnParams sweeps "
                f"(K * lp_rounds * lp_steps = {self.lp_duration} steps)"
            )
        f = float(p["one_hot_factor"])
        if self.k > 1 and not (1.0 / self.k < f <= 1.0):
            raise ValueError(
                f"params.one_hot_factor: must be in (1/K, 1] = ({1.0 / self.k:.3f}, 1]"
            )
        if p["ema"] is not None and not 0.0 <= float(p["ema"]) < 1.0:
            raise ValueError("params.ema: must be None or in [0, 1)")
        if p["anchor"] not in ("uniform", "prior"):
            raise ValueError("params.anchor: must be 'uniform' or 'prior'")

    def _derive_schedule(self) -> None:
        """Effective ``lp_rounds``, ``lp_steps``, ``update_steps`` and ``eta``.

        * ``eta`` None: ``ETA_PER_DOMAIN * K`` (0.2 at K = 2, the reference's two-domain
          setting). With ``A`` normalised to sum 1 the column sums ``c_j`` are in [0, 1] and
          sum to 1, so one update changes the ratio of any two weights by at most ``e^eta``,
          and a typical ``c_j`` is ``1/K``: scaling ``eta`` with K keeps the pull the same
          at any K (at K = 7 and eta = 1 the weights stay within a few per cent of uniform).
        * Budget: with ``sweep_share`` and ``total_steps`` given, the sweeps of all rounds
          take at most ``floor(sweep_share * (total_steps - prior_steps))`` steps: the number
          of rounds is the budget over one round's sweeps (at least 1), with ``lp_rounds``
          and then ``lp_steps`` lowered when a single round's sweeps do not fit, and
          ``update_steps`` splits the run into that many rounds. Without ``total_steps``,
          ``update_steps`` None is ``ceil(K * lp_rounds * lp_steps / sweep_share)``, so every
          round keeps the share.
        """
        p = self.params
        k = self.k
        self.eta = float(p["eta"]) if p["eta"] is not None else ETA_PER_DOMAIN * k
        self.lp_rounds, self.lp_steps = int(p["lp_rounds"]), int(p["lp_steps"])
        self.n_rounds: int | None = None  # rounds of a budgeted run (None: unbounded)
        share = None if p["sweep_share"] is None else float(p["sweep_share"])
        if p["total_steps"] is not None and share is not None:
            span = int(p["total_steps"]) - int(p["prior_steps"])
            budget = int(math.floor(share * span + 1e-9))
            if budget < k:
                raise ValueError(
                    f"params.sweep_share: {share} of {span} steps is {budget} steps, fewer than "
                    f"one step per domain (K = {k})"
                )
            while self.lp_rounds > 1 and self.lp_duration > budget:
                self.lp_rounds -= 1
            if self.lp_duration > budget:
                self.lp_steps = budget // k
            n_rounds = max(1, budget // self.lp_duration)
            self.n_rounds = n_rounds
            self.update_steps = (
                int(p["update_steps"]) if p["update_steps"] is not None else span // n_rounds
            )
        elif p["update_steps"] is not None:
            self.update_steps = int(p["update_steps"])
        elif share is not None:
            self.update_steps = int(math.ceil(self.lp_duration / share - 1e-9))
        else:
            raise ValueError("params.update_steps: give update_steps or sweep_share")

    def configure_run(self, total_steps: int, vocab_size: int | None = None) -> None:
        """Fill ``total_steps`` from the trainer (before any observation) and re-derive."""
        if self.params["total_steps"] is None and self.n_updates == 0 and self._round < 0:
            self.params["total_steps"] = int(total_steps)
            self._validate_params()

    def sweep_steps(self, total_steps: int) -> int:
        """Number of LearnParams steps among steps ``0 .. total_steps - 1``."""
        return sum(self.phase(s) == "learn" for s in range(int(total_steps)))

    @property
    def lp_duration(self) -> int:
        """Steps of LearnParams in a round: ``K * lp_rounds * lp_steps``."""
        return self.k * self.lp_rounds * self.lp_steps

    @property
    def n_sweeps(self) -> int:
        return self.k * self.lp_rounds

    # -- the schedule (a pure function of step and seed) ---------------------------------
    def round_of(self, step: int) -> tuple[int, int]:
        """``(round, offset)`` of ``step``; round -1 is the prior phase."""
        s = int(step) - int(self.params["prior_steps"])
        if s < 0:
            return -1, int(step)
        u = self.update_steps
        r = s // u
        if self.n_rounds is not None and r >= self.n_rounds:
            r = self.n_rounds - 1  # a budgeted run's last round runs to the end
        return r, s - r * u

    def round_start(self, r: int) -> int:
        return int(self.params["prior_steps"]) + r * self.update_steps

    def sweep_order(self, r: int) -> list[int]:
        """Domain swept by each sweep of round ``r``: ``lp_rounds`` random permutations.

        Drawn from a generator seeded by ``(seed, r)``, so the order does not depend on
        what was observed (a restarted or external trainer computes the same schedule).
        """
        g = np.random.default_rng([self.seed, 7919, r])
        return [int(i) for _ in range(self.lp_rounds) for i in g.permutation(self.k)]

    def sweep_mixture(self, domain: int) -> np.ndarray:
        """Smoothed one-hot mixture of a sweep on ``domain``."""
        if self.k == 1:
            return np.ones(1)
        f = float(self.params["one_hot_factor"])
        w = np.full(self.k, (1.0 - f) / (self.k - 1))
        w[domain] = f
        return w

    def phase(self, step: int) -> str:
        """``"prior"``, ``"learn"`` (a LearnParams sweep) or ``"mix"`` for step ``step``."""
        r, off = self.round_of(step)
        if r < 0:
            return "prior"
        return "learn" if off < self.lp_duration else "mix"

    def sweep_at(self, step: int) -> tuple[int, int] | None:
        """``(round, sweep index)`` when ``step`` is a LearnParams step, else None."""
        r, off = self.round_of(step)
        if r < 0 or off >= self.lp_duration:
            return None
        return r, off // self.lp_steps

    def mixture_for_step(self, step: int) -> np.ndarray:
        if step < int(self.params["prior_steps"]):
            return self.initial_weights.copy()
        sw = self.sweep_at(step)
        if sw is not None:
            r, j = sw
            return self.sweep_mixture(self.sweep_order(r)[j])
        return self.weights()

    def needs_eval_at(self, step: int) -> bool:
        r, off = self.round_of(step)
        lp = self.lp_steps
        return r >= 0 and off <= self.lp_duration and off % lp == 0

    def eval_boundaries(self, start: int, stop: int) -> list[int]:
        """Boundaries in ``[start, stop)`` where validation losses must be reported."""
        return [b for b in range(int(start), int(stop)) if self.needs_eval_at(b)]

    # -- consuming evaluations -----------------------------------------------------------
    def _reset_round(self, r: int) -> None:
        self._round = r
        self._prev_loss: np.ndarray | None = None  # loss at the last consumed boundary
        self._prev_sweep = -1  # sweep index whose start boundary gave _prev_loss
        self._M = np.zeros((self.k, self.k))
        self._recorded = np.zeros(self.n_sweeps, dtype=bool)
        self._finished = False

    def _update_one(self, obs: Mapping[str, Any]) -> None:
        if obs.get("eval_losses") is None:
            return
        b = int(obs["step"])
        loss = self.losses(obs, "eval_losses")
        r, off = self.round_of(b)
        lp = self.lp_steps
        # end of the previous round's last sweep when LearnParams fills the whole round
        if r > 0 and off == 0 and self.lp_duration == self.update_steps:
            self._consume(r - 1, self.n_sweeps, loss, obs)
        if r >= 0 and off <= self.lp_duration and off % lp == 0:
            self._consume(r, off // lp, loss, obs)

    def _consume(self, r: int, j: int, loss: np.ndarray, obs: Mapping[str, Any]) -> None:
        """Eval at the boundary ending sweep ``j - 1`` and starting sweep ``j`` of round ``r``."""
        if np.isnan(loss).any():
            missing = [d for d, x in zip(self.domains, loss, strict=True) if np.isnan(x)]
            raise ValueError(f"eval_losses: Aioli needs every domain's loss, missing {missing}")
        if r < self._round or (r == self._round and self._finished):
            return  # a stale report of an earlier (or already applied) round
        if r > self._round:
            self._finish_round()
            self._reset_round(r)
        if j > 0 and self._prev_loss is not None and self._prev_sweep == j - 1:
            order = self.sweep_order(r)
            trained = self.mixture_of(obs)
            expected = self.sweep_mixture(order[j - 1])
            if trained is not None and not np.allclose(trained, expected, atol=1e-6):
                raise ValueError(
                    f"mixture: steps before boundary {int(obs['step'])} should have used sweep "
                    f"mixture {self.weights_dict(expected)}, got {self.weights_dict(trained)}"
                )
            if not self._recorded[j - 1]:
                self._M[:, order[j - 1]] += self._prev_loss - loss
                self._recorded[j - 1] = True
        self._prev_loss = loss
        self._prev_sweep = j
        if j == self.n_sweeps:
            self._finish_round()

    def _finish_round(self) -> None:
        """Apply the update of the current round once, or count it skipped if incomplete."""
        if self._round < 0 or self._finished:
            return
        self._finished = True
        if self._recorded.all():
            self._apply(self._M / self.lp_rounds, self._round)
        else:
            self.skipped_rounds += 1

    def solve_A(self, M: np.ndarray) -> np.ndarray:
        """Undo the sweep smoothing: ``M = A W^T`` -> ``A = M W^{-T}`` (Algorithm 2)."""
        if self.k == 1:
            return M.copy()
        W = np.stack([self.sweep_mixture(j) for j in range(self.k)])  # row j: sweep mixture j
        return np.linalg.solve(W, M.T).T

    def _apply(self, M: np.ndarray, r: int) -> None:
        A = self.solve_A(M)
        if self.params["normalize_A"]:
            lo = A.min()
            if lo < 0:
                A = A - lo
            total = A.sum()
            A = A / total if total > 0 else np.zeros_like(A)
        ema = self.params["ema"]
        eta = self.eta
        if ema is not None:
            self.ema_A = A if self.ema_A is None else (1 - float(ema)) * A + float(ema) * self.ema_A
            z = np.log(np.maximum(self.anchor_weights, 1e-300)) + eta * self.ema_A.sum(axis=0)
        else:
            base = self.anchor_weights if self.rounds_done == 0 else self._w
            z = np.log(np.maximum(base, 1e-300)) + eta * A.sum(axis=0)
        w = np.exp(z - z.max())
        self._w = w / w.sum()
        self.rounds_done += 1
        self.n_updates += 1
        self.history.append(
            {
                "round": r,
                "step": self.round_start(r) + self.lp_duration,
                "A": A.tolist(),
                "weights": self._w.tolist(),
            }
        )

    # -- persistence ---------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "anchor_weights": self.anchor_weights.tolist(),
            "ema_A": None if self.ema_A is None else self.ema_A.tolist(),
            "rounds_done": self.rounds_done,
            "skipped_rounds": self.skipped_rounds,
            "history": self.history,
            "round": self._round,
            "prev_loss": None if self._prev_loss is None else self._prev_loss.tolist(),
            "prev_sweep": self._prev_sweep,
            "M": self._M.tolist(),
            "recorded": self._recorded.tolist(),
            "finished": self._finished,
        }

    def _load(self, state: Mapping[str, Any]) -> None:
        self.anchor_weights = np.asarray(state["anchor_weights"], dtype=float)
        self.ema_A = None if state["ema_A"] is None else np.asarray(state["ema_A"], dtype=float)
        self.rounds_done = int(state["rounds_done"])
        self.skipped_rounds = int(state["skipped_rounds"])
        self.history = list(state["history"])
        self._round = int(state["round"])
        self._prev_loss = (
            None if state["prev_loss"] is None else np.asarray(state["prev_loss"], dtype=float)
        )
        self._prev_sweep = int(state["prev_sweep"])
        self._M = np.asarray(state["M"], dtype=float)
        self._recorded = np.asarray(state["recorded"], dtype=bool)
        self._finished = bool(state["finished"])
