"""A synthetic training environment with a known law and a computable optimal mixture.

Used by the tests and demos of the online mixers: it plays the trainer, cheaply.

Law
---
Domain ``j`` has received ``n_j`` "steps-worth" of data (``counts_j / batch_size`` summed over
steps). Through a transfer matrix ``T`` (``T_ii = 1``, ``T_ij >= 0`` the benefit of data of
``j`` for domain ``i``) domain ``i`` has effectively seen ``E_i = sum_j T_ij n_j`` and its loss
is the power law

    ``L_i(E_i) = c_i + b_i (1 + E_i / s) ** (-a_i)``

(``c_i`` irreducible loss, ``b_i`` learnable part, ``a_i`` learning speed, ``s`` a scale in
steps). A *static* run of ``N`` steps with mixture ``p`` ends with ``E = N T p``, so the
objective ``sum_i o_i L_i(N T p)`` (``o`` the objective weights, uniform by default) is a
smooth convex-in-practice function of ``p`` whose minimiser on the simplex,
:meth:`SyntheticEnv.optimal_mixture`, is computed numerically (SLSQP from several starts).

Simulation
----------
:meth:`SyntheticEnv.step` samples a batch of ``batch_size`` sequences from a mixture
(multinomial), returns the batch's per-domain training losses (measured before the update,
with noise ``noise / sqrt(count)``) and per-sample losses, then advances ``n``. Optional
per-domain ``loss_weights`` scale each domain's contribution, normalised over the batch
(DoReMi's loss weighting: a sequence counts ``w_{d(s)} / mean_s w_{d(s)}``).
:meth:`SyntheticEnv.evaluate` returns validation losses with ``eval_noise``.
:func:`run_online` drives an online mixer through the observation protocol of
:mod:`mixopt.online.base`, evaluating at the boundaries the mixer asks for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize


@dataclass
class SyntheticEnv:
    """Per-domain power-law losses with cross-domain transfer (see module docstring)."""

    domains: list[str] = field(default_factory=lambda: ["web", "code", "math"])
    floor: Sequence[float] = (1.0, 1.0, 1.0)  # c_i, irreducible loss
    scale: Sequence[float] = (1.0, 2.5, 4.0)  # b_i, learnable part
    exponent: Sequence[float] = (0.8, 0.5, 0.35)  # a_i, learning speed
    transfer: Sequence[Sequence[float]] = ((1.0, 0.3, 0.2), (0.2, 1.0, 0.3), (0.1, 0.3, 1.0))
    objective: Sequence[float] | None = None  # o_i, uniform when None
    step_scale: float = 20.0  # s, in steps
    batch_size: int = 32
    tokens_per_sequence: int = 128
    noise: float = 0.02
    eval_noise: float = 0.002
    seed: int = 0

    def __post_init__(self) -> None:
        self.k = len(self.domains)
        self.c = np.asarray(self.floor, dtype=float)
        self.b = np.asarray(self.scale, dtype=float)
        self.a = np.asarray(self.exponent, dtype=float)
        self.T = np.asarray(self.transfer, dtype=float)
        o = np.ones(self.k) if self.objective is None else np.asarray(self.objective, dtype=float)
        self.o = o / o.sum()
        for name, arr in (
            ("floor", self.c),
            ("scale", self.b),
            ("exponent", self.a),
            ("objective", self.o),
        ):
            if arr.shape != (self.k,):
                raise ValueError(f"{name}: expected {self.k} values")
        if self.T.shape != (self.k, self.k):
            raise ValueError("transfer: expected a K x K matrix")
        self.reset()

    # -- state ---------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> SyntheticEnv:
        self.rng = np.random.default_rng(self.seed if seed is None else seed)
        self.n = np.zeros(self.k)  # steps-worth of data seen per domain
        self.steps = 0
        self.tokens = 0
        return self

    # -- the law -------------------------------------------------------------------------
    def loss_at(self, n: np.ndarray) -> np.ndarray:
        """Per-domain loss after ``n`` steps-worth of data per domain."""
        E = self.T @ np.asarray(n, dtype=float)
        return self.c + self.b * (1.0 + E / self.step_scale) ** (-self.a)

    def static_losses(self, mixture: Sequence[float], steps: int) -> np.ndarray:
        """Expected final per-domain losses of a static run (``n = steps * p``)."""
        return self.loss_at(steps * np.asarray(mixture, dtype=float))

    def static_objective(self, mixture: Sequence[float], steps: int) -> float:
        return float(self.o @ self.static_losses(mixture, steps))

    def optimal_mixture(self, steps: int, starts: int = 8) -> np.ndarray:
        """Static mixture minimising the final objective after ``steps`` steps."""
        k = self.k
        cons = ({"type": "eq", "fun": lambda p: p.sum() - 1.0},)
        rng = np.random.default_rng(12345)
        inits = [np.full(k, 1.0 / k)] + [rng.dirichlet(np.ones(k)) for _ in range(starts - 1)]
        best = None
        for p0 in inits:
            res = minimize(
                lambda p: self.static_objective(np.clip(p, 0, None), steps),
                p0,
                method="SLSQP",
                bounds=[(0.0, 1.0)] * k,
                constraints=cons,
                options={"ftol": 1e-12, "maxiter": 500},
            )
            if best is None or res.fun < best.fun:
                best = res
        assert best is not None  # at least one start ran
        p = np.clip(best.x, 0, None)
        return p / p.sum()

    def objective_value(self) -> float:
        """Objective of the current (noise-free) state."""
        return float(self.o @ self.loss_at(self.n))

    # -- simulation ----------------------------------------------------------------------
    def step(
        self, mixture: Sequence[float], loss_weights: Sequence[float] | None = None
    ) -> dict[str, Any]:
        """Train one step on a batch sampled from ``mixture``; returns the observation."""
        p = np.clip(np.asarray(mixture, dtype=float), 0, None)
        p = p / p.sum()
        counts = self.rng.multinomial(self.batch_size, p)
        domain_ids = np.repeat(np.arange(self.k), counts)
        true = self.loss_at(self.n)
        per_sample = true[domain_ids] + self.noise * self.rng.standard_normal(self.batch_size)
        train = {}
        for i in np.flatnonzero(counts):
            train[self.domains[i]] = float(per_sample[domain_ids == i].mean())
        contrib = counts.astype(float)
        if loss_weights is not None:
            lw = np.asarray(loss_weights, dtype=float)[domain_ids]
            contrib = np.bincount(domain_ids, weights=lw / lw.mean(), minlength=self.k)
        self.n += contrib / self.batch_size
        obs = {
            "step": self.steps,
            "tokens": self.tokens,
            "train_losses": train,
            "per_sample_loss": per_sample,
            "domain_ids": domain_ids,
            "mixture": {d: float(x) for d, x in zip(self.domains, p, strict=True)},
        }
        self.steps += 1
        self.tokens += self.batch_size * self.tokens_per_sequence
        return obs

    def evaluate(self) -> dict[str, float]:
        """Per-domain validation losses of the current state (small noise)."""
        L = self.loss_at(self.n) + self.eval_noise * self.rng.standard_normal(self.k)
        return {d: float(x) for d, x in zip(self.domains, L, strict=True)}

    def reference_curve(self, mixture: Sequence[float], steps: int, every: int = 1) -> list[dict]:
        """Noise-free per-step losses of a static reference run (for DoReMi)."""
        p = np.asarray(mixture, dtype=float)
        return [
            {
                "step": s,
                "losses": {
                    d: float(x) for d, x in zip(self.domains, self.loss_at(s * p), strict=True)
                },
            }
            for s in range(0, steps + 1, every)
        ]


def run_online(env: SyntheticEnv, mixer: Any, steps: int, start: int = 0) -> list[dict[str, Any]]:
    """Drive ``mixer`` for steps ``start .. steps-1`` on ``env``; returns the trajectory.

    Per step: report validation losses if ``mixer.needs_eval_at(step)`` (with the mixture of
    the previous step), take ``mixer.mixture_for_step(step)``, train, report the batch's
    training losses. DoReMi in loss-weighting mode has its loss weights ``alpha_i / p_i``
    (:meth:`~mixopt.online.doremi.DoReMi.loss_weights`) applied to the batch.
    """
    trajectory = []
    last_mixture: Mapping[str, float] | None = None
    for step in range(start, steps):
        if mixer.needs_eval_at(step):
            mixer.update([{"step": step, "eval_losses": env.evaluate(), "mixture": last_mixture}])
        w = mixer.mixture_for_step(step)
        lw = mixer.loss_weights() if hasattr(mixer, "loss_weights") else None
        obs = env.step(w, loss_weights=lw)
        last_mixture = obs["mixture"]
        mixer.update([{k: obs[k] for k in ("step", "tokens", "train_losses", "mixture")}])
        trajectory.append({"step": step, "weights": [float(x) for x in w]})
    return trajectory
