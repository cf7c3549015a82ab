"""The mixture sampler: each batch's sequences drawn from the domains by the mixture weights.

Allocation (exact in expectation, low variance): every step, the batch's ``B`` sequence
slots are shared among the domains by *systematic sampling*: with one uniform offset ``u``
per step, slot ``k`` goes to the domain whose cumulative-weight interval holds
``(u + k) / B``. Domain ``i`` then gets ``floor(w_i B)`` or ``ceil(w_i B)`` sequences, with
expectation exactly ``w_i B`` -- a weight of 0.01 at batch 16 still gets a sequence about one
step in six, where rounding would give it none. Each sequence is a window of
``block_size + 1`` tokens at a uniformly random offset of the domain's training shard
(inputs = the first ``block_size``, targets = the last ``block_size``).

Epochs: each sampled sequence consumes ``block_size`` tokens of its domain, and
``epochs[i] = consumed_i / n_train_tokens_i`` (random windows cover a shard about once per
epoch). With ``max_epochs`` set, a domain is never sampled beyond it: the step that would
take it past ``max_epochs`` instead marks the domain *exhausted*. Policy
``on_exhausted="renormalize"`` (the default) then gives it weight 0 and renormalises the
others for the rest of the run (recorded in ``exhausted``: domain -> step, and logged);
``"raise"`` raises :class:`DataExhausted`. When every domain with weight is exhausted,
:class:`DataExhausted` is raised either way: the run cannot go on without repeating data.

All randomness comes from one seeded ``numpy.random.Generator``; ``state_dict`` /
``load_state_dict`` make a resumed run draw exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mixopt.training.data import DomainData

log = logging.getLogger(__name__)


class DataExhausted(RuntimeError):
    """Sampling on would repeat a domain beyond ``max_epochs``."""


def validate_weights(weights: Any, k: int, names: Sequence[str] | None = None) -> np.ndarray:
    """A length-``k`` mixture as a float array on the simplex (normalised; errors name the
    problem)."""
    if isinstance(weights, Mapping):
        if names is None:
            raise ValueError("weights: a mapping needs the domain names")
        unknown = set(weights) - set(names)
        if unknown:
            raise ValueError(f"weights: unknown domains {sorted(unknown)}")
        weights = [weights.get(n, 0.0) for n in names]
    w = np.asarray(weights, dtype=float).reshape(-1)
    if w.shape != (k,):
        raise ValueError(f"weights: expected {k} values, got {w.shape[0]}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"weights: must be finite and non-negative, got {w.tolist()}")
    if w.sum() <= 0:
        raise ValueError("weights: must not all be zero")
    return w / w.sum()


def systematic_counts(weights: np.ndarray, n: int, u: float) -> np.ndarray:
    """Split ``n`` slots by systematic sampling with offset ``u`` in [0, 1)."""
    edges = np.cumsum(weights) * n  # domain i owns slots in [edges[i-1], edges[i])
    edges[-1] = n
    points = u + np.arange(n)  # (n,)
    idx = np.searchsorted(edges, points, side="right")
    return np.bincount(np.minimum(idx, len(weights) - 1), minlength=len(weights))


class MixtureSampler:
    """Draw ``(x, y, domain_ids)`` batches from several domains' training shards.

    Parameters
    ----------
    domains : the domains' data, in the run's order (a dict keeps its order).
    weights : initial mixture (normalised); None means natural (train-token share).
    batch_size, block_size : sequences per batch, tokens per sequence.
    seed : seed of the sampler's random generator.
    max_epochs : cap on epochs per domain (None: no cap).
    on_exhausted : ``"renormalize"`` or ``"raise"`` (see the module docstring).
    """

    def __init__(
        self,
        domains: Mapping[str, DomainData] | Sequence[DomainData],
        weights: Any = None,
        batch_size: int = 16,
        block_size: int = 128,
        seed: int = 0,
        max_epochs: float | None = None,
        on_exhausted: str = "renormalize",
    ):
        ds = list(domains.values()) if isinstance(domains, Mapping) else list(domains)
        self.names = list(domains.keys()) if isinstance(domains, Mapping) else [d.name for d in ds]
        self.shards = [d.train for d in ds]
        self.n_train = np.array([len(s) for s in self.shards], dtype=np.int64)
        self.batch_size, self.block_size = int(batch_size), int(block_size)
        if on_exhausted not in ("renormalize", "raise"):
            raise ValueError(f"on_exhausted: 'renormalize' or 'raise', got {on_exhausted!r}")
        if max_epochs is not None and max_epochs <= 0:
            raise ValueError(f"max_epochs: must be > 0, got {max_epochs}")
        self.max_epochs, self.on_exhausted = max_epochs, on_exhausted
        short = [
            n for n, t in zip(self.names, self.n_train, strict=True) if t < self.block_size + 1
        ]
        self._too_short = set(short)
        self.rng = np.random.default_rng(seed)
        self.consumed = np.zeros(len(ds), dtype=np.int64)  # tokens (targets) drawn per domain
        self.exhausted: dict[str, int] = {}  # domain -> step at which it ran out
        self.step = 0
        self.set_weights(self.n_train / self.n_train.sum() if weights is None else weights)

    # -- weights -------------------------------------------------------------------------
    def set_weights(self, weights: Any) -> np.ndarray:
        """Switch the mixture from the next batch on; returns the effective weights."""
        w = validate_weights(weights, len(self.names), self.names)
        bad = [n for n, wi in zip(self.names, w, strict=True) if wi > 0 and n in self._too_short]
        if bad:
            raise ValueError(
                f"weights: domains {bad} have fewer than block_size + 1 = "
                f"{self.block_size + 1} training tokens"
            )
        self.base_weights = w
        return self.weights

    @property
    def weights(self) -> np.ndarray:
        """The mixture in force: the requested one, exhausted domains zeroed, renormalised."""
        w = self.base_weights.copy()
        for n in self.exhausted:
            w[self.names.index(n)] = 0.0
        if w.sum() <= 0:
            raise DataExhausted(
                f"every domain with weight is exhausted (max_epochs={self.max_epochs}): "
                f"{sorted(self.exhausted)}"
            )
        return w / w.sum()

    @property
    def epochs(self) -> np.ndarray:
        return self.consumed / np.maximum(self.n_train, 1)

    # -- sampling ------------------------------------------------------------------------
    def _allocate(self) -> np.ndarray:
        while True:
            w = self.weights
            u = self.rng.random()
            counts = systematic_counts(w, self.batch_size, u)
            if self.max_epochs is None:
                return counts
            after = self.consumed + counts * self.block_size
            over = [
                i for i in np.flatnonzero(counts) if after[i] > self.max_epochs * self.n_train[i]
            ]
            if not over:
                return counts
            names = [self.names[i] for i in over]
            if self.on_exhausted == "raise":
                raise DataExhausted(
                    f"domains {names} would pass max_epochs={self.max_epochs} at step {self.step}"
                )
            for n in names:
                self.exhausted[n] = self.step
                log.warning(
                    "domain %r reached max_epochs=%s at step %d: its weight is now 0",
                    n,
                    self.max_epochs,
                    self.step,
                )

    def next_batch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``x`` ``(B, T)`` int64 inputs, ``y`` ``(B, T)`` int64 targets, ``domain_ids`` ``(B,)``.

        Sequences are grouped by domain, in domain order.
        """
        counts = self._allocate()
        T = self.block_size
        xs, ids = [], []
        for i, c in enumerate(counts):
            if c == 0:
                continue
            starts = self.rng.integers(0, self.n_train[i] - T, size=c)  # windows of T + 1 tokens
            win = np.stack([np.asarray(self.shards[i][s : s + T + 1]) for s in starts])  # (c, T+1)
            xs.append(win.astype(np.int64))
            ids.append(np.full(c, i, dtype=np.int64))
            self.consumed[i] += c * T
        batch = np.concatenate(xs)  # (B, T+1)
        self.step += 1
        return batch[:, :-1], batch[:, 1:], np.concatenate(ids)

    # -- checkpointing -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": self.rng.bit_generator.state,
            "base_weights": self.base_weights.tolist(),
            "consumed": self.consumed.tolist(),
            "exhausted": dict(self.exhausted),
            "step": self.step,
            "names": list(self.names),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if list(state["names"]) != self.names:
            raise ValueError(f"sampler state is for domains {state['names']}, not {self.names}")
        self.rng.bit_generator.state = state["rng"]
        self.base_weights = np.asarray(state["base_weights"], dtype=float)
        self.consumed = np.asarray(state["consumed"], dtype=np.int64)
        self.exhausted = {k: int(v) for k, v in state["exhausted"].items()}
        self.step = int(state["step"])
