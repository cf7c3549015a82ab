"""Training-free, entropy-driven data mixtures (Ge et al. 2024, BiMix, arXiv:2405.14908,
Sec. "Entropy-driven data mixtures").

The paper measures each domain's token data with an entropy statistic and turns the
per-domain values into mixing proportions; conditional entropy is reported to work best.
Variants (computed from token-id arrays, natural logarithm by default):

* ``"shannon"``: ``H(X) = -sum_x p(x) log p(x)`` of the unigram distribution;
* ``"conditional"``: ``H(X_t | X_{t-1}) = H(X_{t-1}, X_t) - H(X_{t-1})`` from bigram counts;
* ``"joint"``: ``H(X_{t-1}, X_t)`` of the bigram distribution;
* ``"von_neumann"``: ``-tr(rho log rho)`` of a density matrix built from the bigram counts.
  Our construction (the paper's exact one could not be checked): ``M`` = bigram count matrix
  restricted to the ``vne_top`` most frequent tokens, ``rho = M M^T / tr(M M^T)`` (the
  normalised Gram matrix of the tokens' successor-count vectors, positive semi-definite).

Entropies become proportions by a softmax, ``r_i = exp(H_i / tau) / sum_j exp(H_j / tau)``
(``normalization="softmax"``, ``tau = 1``; in nats), or by plain normalisation
``r_i = H_i / sum_j H_j`` (``normalization="sum"``). Higher entropy -> larger proportion.

Counting uses ``numpy.bincount`` on pair ids ``prev * V + next`` when ``V^2`` is small and
``numpy.unique`` otherwise, so ~10^7 tokens take about a second.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

VARIANTS = ("shannon", "conditional", "joint", "von_neumann")
_BINCOUNT_MAX = 1 << 22  # dense pair table up to ~4M bins (32 MB)


def _arrays(tokens: Any) -> list[np.ndarray]:
    """One array, or a sequence of arrays (documents: no pairs across their boundaries)."""
    if isinstance(tokens, np.ndarray) and tokens.ndim == 1:
        return [tokens.astype(np.int64, copy=False)]
    if isinstance(tokens, Sequence) and tokens and not np.isscalar(tokens[0]):
        return [np.asarray(t, dtype=np.int64).ravel() for t in tokens]
    return [np.asarray(tokens, dtype=np.int64).ravel()]


def _entropy_from_counts(counts: np.ndarray, log=np.log) -> float:
    counts = counts[counts > 0].astype(np.float64)
    if counts.size == 0:
        return 0.0
    p = counts / counts.sum()
    return float(-(p * log(p)).sum())


def _pair_counts(arrs: list[np.ndarray], V: int) -> tuple[np.ndarray, np.ndarray]:
    """Bigram ids and counts (ids ``prev * V + next``)."""
    ids = np.concatenate(
        [a[:-1] * V + a[1:] for a in arrs if a.size > 1] or [np.zeros(0, np.int64)]
    )
    if V * V <= _BINCOUNT_MAX:
        c = np.bincount(ids, minlength=V * V)
        nz = np.flatnonzero(c)
        return nz, c[nz]
    return np.unique(ids, return_counts=True)


def domain_entropies(
    tokens_by_domain: Mapping[str, Any],
    variants: Sequence[str] = VARIANTS,
    vocab_size: int | None = None,
    base: float | None = None,
    vne_top: int = 512,
) -> dict[str, dict[str, float]]:
    """Entropy statistics of each domain's tokens.

    Parameters
    ----------
    tokens_by_domain : ``{domain: token ids}`` (1-D int array, or a list of arrays, one per
        document).
    variants : any of ``"shannon"``, ``"conditional"``, ``"joint"``, ``"von_neumann"``.
    vocab_size : largest token id + 1; default inferred from the data.
    base : logarithm base (default e: nats; 2 for bits).
    vne_top : tokens kept for the von Neumann density matrix.

    Returns
    -------
    ``{domain: {variant: value}}``.
    """
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise ValueError(f"unknown entropy variants {sorted(unknown)}; known: {VARIANTS}")
    arrays = {d: _arrays(t) for d, t in tokens_by_domain.items()}
    if vocab_size is None:
        vocab_size = 1 + max(
            (int(a.max()) for arrs in arrays.values() for a in arrs if a.size), default=0
        )
    V = int(vocab_size)
    scale = 1.0 if base is None else 1.0 / np.log(base)
    out: dict[str, dict[str, float]] = {}
    for d, arrs in arrays.items():
        for a in arrs:
            if a.size and (a.min() < 0 or a.max() >= V):
                raise ValueError(f"domain {d!r} has token ids outside [0, {V})")
        res: dict[str, float] = {}
        uni = np.bincount(np.concatenate(arrs), minlength=V) if arrs else np.zeros(V, np.int64)
        if "shannon" in variants:
            res["shannon"] = _entropy_from_counts(uni) * scale
        need_pairs = {"conditional", "joint", "von_neumann"} & set(variants)
        if need_pairs:
            ids, cnt = _pair_counts(arrs, V)
            h_joint = _entropy_from_counts(cnt)
            if "joint" in variants:
                res["joint"] = h_joint * scale
            if "conditional" in variants:
                prev = np.bincount(ids // V, weights=cnt, minlength=V) if ids.size else np.zeros(V)
                res["conditional"] = max(h_joint - _entropy_from_counts(prev), 0.0) * scale
            if "von_neumann" in variants:
                res["von_neumann"] = _von_neumann(ids, cnt, uni, V, vne_top) * scale
        out[d] = res
    return out


def _von_neumann(ids: np.ndarray, cnt: np.ndarray, uni: np.ndarray, V: int, top: int) -> float:
    keep = np.argsort(-uni, kind="stable")[: min(top, int((uni > 0).sum()))]
    if keep.size == 0:
        return 0.0
    pos = np.full(V, -1, dtype=np.int64)
    pos[keep] = np.arange(keep.size)
    a, b = pos[ids // V], pos[ids % V]
    sel = (a >= 0) & (b >= 0)
    M = np.zeros((keep.size, keep.size))
    np.add.at(M, (a[sel], b[sel]), cnt[sel])
    G = M @ M.T
    tr = np.trace(G)
    if tr <= 0:
        return 0.0
    lam = np.linalg.eigvalsh(G / tr)
    lam = lam[lam > 1e-15]
    return float(-(lam * np.log(lam)).sum())


def entropy_mixture(
    tokens_by_domain: Mapping[str, Any],
    variant: str = "conditional",
    vocab_size: int | None = None,
    normalization: str = "softmax",
    temperature: float = 1.0,
    base: float | None = None,
) -> dict[str, float]:
    """Entropy-driven mixture (BiMix, Ge et al. 2024): proportions from per-domain entropy.

    Parameters
    ----------
    tokens_by_domain : ``{domain: token ids}``.
    variant : ``"conditional"`` (default; the paper's best), ``"shannon"``, ``"joint"`` or
        ``"von_neumann"``.
    vocab_size : largest token id + 1 (default inferred).
    normalization : ``"softmax"`` (``exp(H / temperature)`` normalised) or ``"sum"``.
    temperature : softmax temperature (in the entropy's unit).
    base : logarithm base (default e).

    Returns
    -------
    ``{domain: proportion}`` in the input order, summing to 1.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; known: {VARIANTS}")
    if not tokens_by_domain:
        raise ValueError("no domains given")
    ent = domain_entropies(tokens_by_domain, [variant], vocab_size=vocab_size, base=base)
    return proportions_from_entropies(
        {d: ent[d][variant] for d in tokens_by_domain}, normalization, temperature
    )


def proportions_from_entropies(
    entropies: Mapping[str, float], normalization: str = "softmax", temperature: float = 1.0
) -> dict[str, float]:
    """Turn per-domain entropies (one variant, e.g. stored at ingestion) into proportions, as
    :func:`entropy_mixture` does."""
    names = list(entropies)
    h = np.array([float(entropies[d]) for d in names])
    if normalization == "softmax":
        z = h / float(temperature)
        w = np.exp(z - z.max())
    elif normalization == "sum":
        if h.sum() <= 0:
            w = np.ones_like(h)
        else:
            w = h.copy()
    else:
        raise ValueError("normalization must be 'softmax' or 'sum'")
    w = w / w.sum()
    return {d: float(v) for d, v in zip(names, w, strict=True)}
