"""The online-mixer contract shared by Aioli, DoReMi and ODM, and their registry.

An online mixer owns a mixture over the run's domains (numpy float array, the caller's domain
order, on the simplex) and changes it from what the training job reports. It is pure: no web,
no database, no torch.

Contract (Optuna-style strategy with a registry, see ../shared/STYLE.md)
-----------------------------------------------------------------------
``weights() -> np.ndarray``
    The mixer's current mixture (for DoReMi: the current alpha).
``mixture_for_step(step) -> np.ndarray``
    The mixture the trainer must sample optimiser step ``step`` (0-based index of the step
    about to be taken) from. Equal to ``weights()`` except for schedules (Aioli's LearnParams
    sweeps) and for DoReMi in loss-weighting mode (samples from the reference distribution).
``needs_eval_at(step) -> bool``
    True when the mixer needs per-domain *validation* losses measured at the step boundary
    ``step`` (after ``step`` optimiser steps, before step ``step`` is taken). Only Aioli asks.
``update(observations) -> np.ndarray``
    Consume observations and return ``weights()``. ``observations`` is a list of dicts::

        {"step": int,                       # steps completed when measured (see each mixer)
         "tokens": int,                     # optional, tokens seen so far
         "train_losses": {domain: float},   # mean training loss of the batch per domain,
                                            # only domains present in the batch
         "eval_losses": {domain: float},    # per-domain validation loss
         "mixture": {domain: float}}        # optional: mixture the preceding steps used

    Each mixer documents which fields it reads (``uses``) and ignores the others. An unknown
    domain or a non-finite loss raises ``ValueError`` naming the field.
``final_weights() -> np.ndarray``
    The mixture the algorithm recommends at the end (DoReMi: the average alpha).
``state_dict() -> dict`` / ``OnlineMixer.from_state(dict)``
    JSON-serialisable (``json.dumps`` works, floats round-trip exactly), including the random
    generator's state, so a mixer restored mid-run makes identical subsequent updates.

Registry: ``ONLINE_MIXERS`` (name -> class) and ``make_mixer(name, domains, params,
initial_weights, seed)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

STATE_VERSION = 1

ONLINE_MIXERS: dict[str, type[OnlineMixer]] = {}


def register(name: str):
    """Class decorator: make an online mixer available by name."""

    def deco(cls: type[OnlineMixer]) -> type[OnlineMixer]:
        cls.name = name
        ONLINE_MIXERS[name] = cls
        return cls

    return deco


def make_mixer(
    name: str,
    domains: Sequence[str],
    params: Mapping[str, Any] | None = None,
    initial_weights: Any = None,
    seed: int = 0,
) -> OnlineMixer:
    """Build a registered online mixer by name (``"aioli"``, ``"doremi"``, ``"odm"``)."""
    if name not in ONLINE_MIXERS:
        raise KeyError(f"unknown online mixer {name!r}; known: {sorted(ONLINE_MIXERS)}")
    return ONLINE_MIXERS[name](domains, params=params, initial_weights=initial_weights, seed=seed)


def load_mixer(state: Mapping[str, Any]) -> OnlineMixer:
    """Restore any registered mixer from its ``state_dict()``."""
    return OnlineMixer.from_state(state)


def as_mixture(weights: Any, domains: Sequence[str], field: str = "weights") -> np.ndarray:
    """Validate and normalise a mixture given as a sequence (domain order) or a mapping."""
    k = len(domains)
    if isinstance(weights, Mapping):
        unknown = sorted(set(weights) - set(domains))
        if unknown:
            raise ValueError(f"{field}: unknown domain(s) {unknown}")
        arr = np.array([float(weights.get(d, 0.0)) for d in domains], dtype=float)
    else:
        arr = np.asarray(weights, dtype=float).reshape(-1)
        if arr.shape[0] != k:
            raise ValueError(f"{field}: expected {k} weights, got {arr.shape[0]}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{field}: weights must be finite and non-negative")
    total = arr.sum()
    if total <= 0:
        raise ValueError(f"{field}: weights sum to zero")
    return arr / total


class OnlineMixer:
    """Base class: parameter handling, observation parsing, (de)serialisation.

    Subclasses set ``defaults`` (the paper's hyper-parameters), ``uses`` (observation fields
    read) and implement ``_update_one`` (or ``update``), ``_state`` and ``_load``.
    """

    name: ClassVar[str] = "base"
    #: hyper-parameters and their paper defaults; ``params`` may override any of them
    defaults: ClassVar[dict[str, Any]] = {}
    #: observation fields this mixer reads
    uses: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        domains: Sequence[str],
        params: Mapping[str, Any] | None = None,
        initial_weights: Any = None,
        seed: int = 0,
    ) -> None:
        domains = [str(d) for d in domains]
        if not domains:
            raise ValueError("domains: at least one domain is needed")
        if len(set(domains)) != len(domains):
            raise ValueError("domains: duplicate names")
        self.domains = domains
        self.k = len(domains)
        params = dict(params or {})
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise ValueError(
                f"params: unknown parameter(s) {unknown} for {self.name}; known: "
                f"{sorted(self.defaults)}"
            )
        self.params = {**self.defaults, **params}
        self.seed = int(seed)
        self.initial_weights = (
            np.full(self.k, 1.0 / self.k)
            if initial_weights is None
            else as_mixture(initial_weights, domains, "initial_weights")
        )
        self.rng = np.random.default_rng(self.seed)
        self._w = self.initial_weights.copy()
        self.n_updates = 0
        self._validate_params()

    # -- contract ------------------------------------------------------------------------
    def weights(self) -> np.ndarray:
        return self._w.copy()

    def mixture_for_step(self, step: int) -> np.ndarray:
        return self.weights()

    def needs_eval_at(self, step: int) -> bool:
        return False

    def final_weights(self) -> np.ndarray:
        return self.weights()

    def configure_run(self, total_steps: int, vocab_size: int | None = None) -> None:
        """Hook: the trainer gives the run's length and vocabulary before the first step.

        No-op here; Aioli sizes its sweep budget from ``total_steps``, DoReMi initialises its
        scores from ``vocab_size``. Only fills parameters the caller left None.
        """

    def plan(self, step: int, horizon: int = 1000) -> dict[str, Any]:
        """What an external trainer needs before optimiser step ``step``.

        Returns ``{"step", "weights": {domain: w}, "phase", "valid_until", "eval_at"}``:
        the mixture to sample step ``step`` from; ``valid_until``, the first later step whose
        scheduled mixture differs (exclusive end; None when the mixture only changes through
        reported observations); ``eval_at``, the first boundary ``>= step`` where validation
        losses must be reported (None when none within ``horizon`` steps). Without new
        reports, steps ``step .. valid_until - 1`` use these weights.
        """
        step = int(step)
        w = self.mixture_for_step(step)
        valid_until = None
        for s in range(step + 1, step + horizon + 1):
            if not np.array_equal(self.mixture_for_step(s), w):
                valid_until = s
                break
        eval_at = next((b for b in range(step, step + horizon + 1) if self.needs_eval_at(b)), None)
        phase = self.phase(step) if hasattr(self, "phase") else "mix"
        return {
            "step": step,
            "weights": self.weights_dict(w),
            "phase": phase,
            "valid_until": valid_until,
            "eval_at": eval_at,
        }

    def update(self, observations: Iterable[Mapping[str, Any]]) -> np.ndarray:
        for obs in sorted(observations, key=lambda o: int(o.get("step", 0))):
            self._update_one(obs)
        return self.weights()

    def _update_one(self, obs: Mapping[str, Any]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _validate_params(self) -> None:
        """Check hyper-parameters; raise ``ValueError`` naming the parameter."""

    # -- observations --------------------------------------------------------------------
    def losses(self, obs: Mapping[str, Any], key: str) -> np.ndarray:
        """Per-domain losses of ``obs[key]`` in domain order; NaN where a domain is absent."""
        out = np.full(self.k, np.nan)
        values = obs.get(key) or {}
        if not isinstance(values, Mapping):
            raise ValueError(f"{key}: expected a mapping domain -> loss")
        index = {d: i for i, d in enumerate(self.domains)}
        for d, v in values.items():
            if d not in index:
                raise ValueError(f"{key}: unknown domain {d!r}")
            if v is None:
                continue
            v = float(v)
            if not math.isfinite(v):
                raise ValueError(f"{key}.{d}: loss must be finite")
            out[index[d]] = v
        return out

    def mixture_of(self, obs: Mapping[str, Any]) -> np.ndarray | None:
        m = obs.get("mixture")
        return None if m is None else as_mixture(m, self.domains, "mixture")

    # -- persistence ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": STATE_VERSION,
            "domains": list(self.domains),
            "params": _jsonable(self.params),
            "initial_weights": self.initial_weights.tolist(),
            "seed": self.seed,
            "weights": self._w.tolist(),
            "n_updates": self.n_updates,
            "rng": _jsonable(self.rng.bit_generator.state),
            "state": _jsonable(self._state()),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> OnlineMixer:
        name = str(state.get("name"))
        target = ONLINE_MIXERS.get(name) if cls is OnlineMixer else cls
        if target is None:
            raise ValueError(f"state: unknown online mixer {name!r}")
        if name != target.name:
            raise ValueError(f"state: is a {name!r} mixer, not {target.name!r}")
        if int(state.get("version", 0)) > STATE_VERSION:
            raise ValueError(f"state: version {state.get('version')} is newer than {STATE_VERSION}")
        obj = target(
            state["domains"],
            params=state.get("params"),
            initial_weights=state.get("initial_weights"),
            seed=state.get("seed", 0),
        )
        obj._w = np.asarray(state["weights"], dtype=float)
        obj.n_updates = int(state.get("n_updates", 0))
        obj.rng.bit_generator.state = state["rng"]
        obj._load(state.get("state") or {})
        return obj

    def _state(self) -> dict[str, Any]:
        return {}

    def _load(self, state: Mapping[str, Any]) -> None:
        pass

    def weights_dict(self, weights: np.ndarray | None = None) -> dict[str, float]:
        w = self.weights() if weights is None else weights
        return {d: float(x) for d, x in zip(self.domains, w, strict=True)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(domains={self.domains}, params={self.params})"


def _jsonable(x: Any) -> Any:
    """Convert numpy scalars/arrays (and nested containers) to plain JSON types."""
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=float)
    e = np.exp(z - z.max())
    return e / e.sum()
