"""Baseline mixtures that need no proxy runs: natural, uniform (stratified), temperature-scaled
and UniMax (Chung et al. 2023, "UniMax: Fairer and More Effective Language Sampling for
Large-Scale Multilingual Pretraining", ICLR 2023, Algorithm 1).

All functions return a numpy array on the simplex in the order of the given token counts.
Epoch caps: a domain with ``n_i`` tokens may receive at most ``max_epochs * n_i`` of the
``target_tokens`` training tokens, i.e. ``w_i <= max_epochs * n_i / target_tokens`` (the same
availability cap olmix uses).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _counts(token_counts: Any) -> np.ndarray:
    n = np.asarray(token_counts, dtype=float).ravel()
    if n.size == 0:
        raise ValueError("token_counts is empty")
    if not np.all(np.isfinite(n)) or np.any(n < 0):
        raise ValueError("token_counts must be finite and >= 0")
    if n.sum() <= 0:
        raise ValueError("token_counts must not all be 0")
    return n


def natural_mixture(token_counts: Any) -> np.ndarray:
    """Token-proportional mixture ``w_i = n_i / sum_j n_j``."""
    n = _counts(token_counts)
    return n / n.sum()


def uniform_mixture(k: int) -> np.ndarray:
    """Stratified mixture ``w_i = 1 / k``."""
    if int(k) < 1:
        raise ValueError("k must be >= 1")
    return np.full(int(k), 1.0 / int(k))


def epoch_caps(token_counts: Any, target_tokens: float, max_epochs: float) -> np.ndarray:
    """Largest weight each domain may take: ``max_epochs * n_i / target_tokens``."""
    n = _counts(token_counts)
    if target_tokens <= 0 or max_epochs <= 0:
        raise ValueError("target_tokens and max_epochs must be > 0")
    return max_epochs * n / float(target_tokens)


def cap_and_redistribute(weights: Any, caps: Any) -> np.ndarray:
    """Clip ``weights`` to ``caps`` and hand the excess to the uncapped domains in proportion
    to their weights (water-filling); raises if the caps sum to less than 1."""
    w = np.asarray(weights, dtype=float).copy()
    caps = np.asarray(caps, dtype=float)
    if caps.sum() < 1.0 - 1e-12:
        raise ValueError(
            f"caps sum to {caps.sum():.4g} < 1: not enough tokens for the budget "
            "(raise max_epochs or lower target_tokens)"
        )
    w = w / w.sum()
    fixed = np.zeros(w.size, dtype=bool)
    for _ in range(w.size + 1):
        over = (~fixed) & (w > caps + 1e-15)
        if not over.any():
            break
        fixed |= over
        w[fixed] = caps[fixed]
        rest = 1.0 - w[fixed].sum()
        free = ~fixed
        if free.any():
            base = w[free].sum()
            w[free] = w[free] / base * rest if base > 0 else rest / free.sum()
    return w


def temperature_mixture(
    token_counts: Any,
    temperature: float,
    target_tokens: float | None = None,
    max_epochs: float | None = None,
) -> np.ndarray:
    """Temperature sampling ``w_i ∝ n_i^(1/T)`` (T = 1 natural, T -> inf uniform), optionally
    with UniMax-style epoch caps (``target_tokens`` and ``max_epochs``) and the excess
    redistributed to the uncapped domains."""
    n = _counts(token_counts)
    if temperature <= 0:
        raise ValueError("temperature must be > 0")
    with np.errstate(divide="ignore"):
        logw = np.where(n > 0, np.log(np.where(n > 0, n, 1.0)) / float(temperature), -np.inf)
    w = np.exp(logw - logw.max())
    w /= w.sum()
    if target_tokens is None and max_epochs is None:
        return w
    if target_tokens is None or max_epochs is None:
        raise ValueError("epoch caps need both target_tokens and max_epochs")
    return cap_and_redistribute(w, epoch_caps(n, target_tokens, max_epochs))


def unimax_mixture(token_counts: Any, target_tokens: float, max_epochs: float) -> np.ndarray:
    """UniMax (Chung et al. 2023, Algorithm 1): go through the domains from the smallest to the
    largest, give each ``min(remaining budget / remaining domains, max_epochs * n_i)`` tokens;
    return the allocation divided by ``target_tokens``. Raises when even ``max_epochs`` of
    every domain cannot fill the budget."""
    n = _counts(token_counts)
    caps = epoch_caps(n, target_tokens, max_epochs) * float(target_tokens)  # in tokens
    if caps.sum() < float(target_tokens) * (1 - 1e-12):
        raise ValueError(
            f"{max_epochs} epochs of all domains give {caps.sum():.4g} tokens < "
            f"target_tokens {float(target_tokens):.4g}"
        )
    order = np.argsort(n, kind="stable")
    budget = float(target_tokens)
    alloc = np.zeros(n.size)
    for i, j in enumerate(order):
        share = budget / (n.size - i)
        alloc[j] = min(share, caps[j])
        budget -= alloc[j]
    return alloc / alloc.sum()
