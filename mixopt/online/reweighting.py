"""Loss-based sample reweighting within a batch.

Sow, Woisetschläger, Rosenberg, Richtárik, Vikalo (2025), "Dynamic Loss-Based Sample
Reweighting for Improved Large Language Model Pretraining", ICLR 2025; reference
implementation ``sowmaster/Sample-Level-Loss-Reweighting-ICLR-2025``, ``src/trainer.py``
(``h_func``, ``f_func_*``, ``g_func`` and the ``reweight_samples`` branch of
``training_step``; ``burnout_steps=1000``, ``kl_reg`` = r).

For the per-sequence losses ``l`` of a batch:

1. normalise to ``[-1, 1]``: ``h = (2 l - (l_max + l_min)) / (l_max - l_min)`` (all zeros when
   every loss is equal);
2. score with a strategy ``f``:
   ``linupper``: ``f = min(h + 1, 1)`` (recommended: down-weights the easiest, low-loss
   samples, leaves the others equal), ``quadratic`` (``mid`` in the reference):
   ``f = 1 - h^2`` (favours medium losses), ``extremes``: ``f = |h|`` (favours both ends),
   ``upper``: ``f = (h + 1) / 2``;
3. weights ``w = softmax(f / r)`` (the KL-regularised solution; ``r = 1``, ``r = 0.4`` when
   combined with domain weights such as DoReMi/DoGE in the paper), rescaled to mean 1 so the
   weighted loss ``mean(w * l)`` has the scale of the plain mean;
4. no reweighting (all ones) during the first ``warmup_steps`` (1000) steps.

``sample_weights`` (numpy) is for external trainers (re-exported by the Python client);
``sample_weights_torch`` is the same computation on a tensor, for the built-in trainer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

#: reference default: steps before reweighting starts (``burnout_steps``)
DEFAULT_WARMUP_STEPS = 1000
#: temperature r: 1 alone, 0.4 combined with domain reweighting (paper, Sec. 5)
DEFAULT_R = 1.0
DEFAULT_R_WITH_DOMAIN_WEIGHTS = 0.4

_ALIASES = {"mid": "quadratic"}


def _linupper(h):
    return np.minimum(h + 1.0, 1.0)


def _quadratic(h):
    return 1.0 - h**2


def _extremes(h):
    return np.abs(h)


def _upper(h):
    return 0.5 * h + 0.5


STRATEGIES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linupper": _linupper,
    "quadratic": _quadratic,
    "extremes": _extremes,
    "upper": _upper,
}


def resolve_strategy(name: str) -> str:
    """The canonical name of a reweighting strategy (aliases accepted); ``ValueError`` if
    unknown."""
    key = _ALIASES.get(name, name)
    if key not in STRATEGIES:
        raise ValueError(f"strategy: unknown {name!r}; known: {sorted(STRATEGIES)}")
    return key


def normalise_losses(losses: Any) -> np.ndarray:
    """Map the batch's losses linearly onto ``[-1, 1]`` (min -> -1, max -> 1)."""
    l = np.asarray(losses, dtype=float).reshape(-1)  # noqa: E741
    if l.size == 0:
        return l
    if not np.all(np.isfinite(l)):
        raise ValueError("losses: must be finite")
    lo, hi = l.min(), l.max()
    if hi - lo <= 1e-12:
        return np.zeros_like(l)
    return (2.0 * l - (hi + lo)) / (hi - lo)


def sample_weights(
    losses: Any,
    strategy: str = "linupper",
    r: float = DEFAULT_R,
    step: int | None = None,
    warmup_steps: int = 0,
) -> np.ndarray:
    """Per-sample loss weights of one batch (mean 1), Sow et al. 2025, Sec. 4.

    Parameters
    ----------
    losses : array-like, shape (batch,)
        Per-sequence (token-averaged) losses of the batch.
    strategy : {"linupper", "quadratic", "extremes", "upper"}
        Score function ``f`` of the normalised loss (``"mid"`` is an alias of quadratic).
    r : float
        Temperature of the softmax (the KL-regularisation strength).
    step, warmup_steps : int
        When ``step < warmup_steps`` the weights are all ones (pass
        ``warmup_steps=DEFAULT_WARMUP_STEPS`` for the paper's 1000-step burn-in).

    Returns
    -------
    np.ndarray, shape (batch,)
        Non-negative weights with mean 1; multiply the per-sample losses by them.
    """
    key = resolve_strategy(strategy)
    if r <= 0:
        raise ValueError("r: must be > 0")
    l = np.asarray(losses, dtype=float).reshape(-1)  # noqa: E741
    if step is not None and step < warmup_steps:
        return np.ones_like(l)
    if l.size == 0:
        return l
    f = STRATEGIES[key](normalise_losses(l))
    z = (f - f.max()) / r
    w = np.exp(z)
    return w * (l.size / w.sum())


def sample_weights_torch(
    losses: Any,
    strategy: str = "linupper",
    r: float = DEFAULT_R,
    step: int | None = None,
    warmup_steps: int = 0,
):
    """Torch version of :func:`sample_weights`: a detached tensor on ``losses``' device."""
    import torch

    key = resolve_strategy(strategy)
    if r <= 0:
        raise ValueError("r: must be > 0")
    l = losses.detach().reshape(-1).float()  # noqa: E741
    if (step is not None and step < warmup_steps) or l.numel() == 0:
        return torch.ones_like(l)
    lo, hi = l.min(), l.max()
    span = hi - lo
    if float(span) <= 1e-12:
        h = torch.zeros_like(l)
    else:
        h = (2.0 * l - (hi + lo)) / span
    if key == "linupper":
        f = torch.clamp(h + 1.0, max=1.0)
    elif key == "quadratic":
        f = 1.0 - h**2
    elif key == "extremes":
        f = h.abs()
    else:
        f = 0.5 * h + 0.5
    w = torch.softmax(f / r, dim=0)
    return w * l.numel()
