"""Mixture reuse when domains change: re-explore only the changed part, the rest frozen.

olmix (``allenai/olmix``) handles a changed domain set (domains added, split, merged or
removed) without a fresh swarm: the domains that did not change keep the ratios they had in
the old mixture, merged into one *virtual* domain, and a new swarm explores only the
changed domains plus that virtual domain. A swarm's size grows with the number of
dimensions it explores, so the reuse swarm is smaller than a fresh one. Here both are sized
by the same rule, ``runs_per_dim x dimensions`` (``runs_per_dim`` default 4; RegMix used
512 runs for 17 domains, about 30 per domain), so the saving is stated in the same units.

:func:`map_old_runs` says which old runs remain valid in the new domain set: a run is kept
when every domain it used still exists or was split into new domains (its weight is then
shared among the parts by their token counts, the split a uniform sampler of the old domain
would have made); runs that used a removed or merged-away domain are dropped, and the notes
say which and why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

DEFAULT_RUNS_PER_DIM = 4


def domain_changes(old: Sequence[str], new: Sequence[str],
                   splits: Mapping[str, Sequence[str]] | None = None) -> dict[str, list[str]]:
    """``unchanged``, ``added`` (new names, split parts included), ``removed`` (old names gone)."""
    old, new = [str(d) for d in old], [str(d) for d in new]
    return {"unchanged": [d for d in new if d in old], "added": [d for d in new if d not in old],
            "removed": [d for d in old if d not in new], "split": sorted(splits or {})}


def reuse_design(old_mixture: Mapping[str, float], new_domains: Sequence[str], *, prior: Any = None,
                 count: int | None = None, runs_per_dim: int = DEFAULT_RUNS_PER_DIM, temperature: float = 0.5,
                 min_weight: float = 2e-4, random_state: int = 0) -> dict[str, Any]:
    """The smallest swarm that re-explores only the changed domains (olmix's mixture reuse).

    Parameters
    ----------
    old_mixture : the mixture chosen on the old domain set (``{old domain: weight}``).
    new_domains : the new domain set, in order.
    prior : token shares of the new domains (default uniform), for the swarm's Dirichlet.
    count : runs to propose (default ``runs_per_dim x (changed + 1)``).

    Returns
    -------
    dict: ``mixtures`` (rows over ``new_domains``), ``frozen`` (``{domain: ratio inside the
    frozen part}``), ``changed``, ``removed``, ``count``, ``fresh_count`` (the fresh swarm's
    size by the same rule), ``dimensions`` and ``explanation``.
    """
    from mixopt.mixing.design import regmix_swarm

    new = [str(d) for d in new_domains]
    ch = domain_changes(list(old_mixture), new)
    frozen = [d for d in ch["unchanged"] if float(old_mixture.get(d, 0.0)) > 0]
    changed = [d for d in new if d not in frozen]
    K = len(new)
    p = np.full(K, 1.0 / K) if prior is None else np.clip(np.asarray(
        [prior.get(d, 0.0) for d in new] if isinstance(prior, Mapping) else prior, dtype=float).ravel(), 0, None)
    if p.size != K or p.sum() <= 0:
        raise ValueError(f"prior must have {K} non-negative entries with a positive sum")
    p = p / p.sum()
    fresh = int(runs_per_dim) * K
    if not frozen or not changed:
        n = int(count or fresh)
        W = regmix_swarm(p, n, domains=new, temperature=temperature, min_weight=min_weight, random_state=random_state)
        return {"mixtures": np.asarray(W).tolist(), "frozen": {}, "changed": changed, "removed": ch["removed"],
                "count": n, "fresh_count": fresh, "dimensions": K,
                "explanation": "nothing to freeze (no unchanged domain with weight): a fresh swarm"
                if not frozen else "no domain changed: a fresh swarm over the same domains"}
    ratios = np.array([float(old_mixture[d]) for d in frozen])
    ratios = ratios / ratios.sum()
    idx_f = [new.index(d) for d in frozen]
    idx_c = [new.index(d) for d in changed]
    dims = len(changed) + 1
    n = int(count or int(runs_per_dim) * dims)
    # reduced problem: the changed domains and one virtual domain carrying the frozen part
    p_red = np.concatenate([p[idx_c], [p[idx_f].sum()]])
    V = np.asarray(regmix_swarm(p_red, n, domains=changed + ["__frozen__"], temperature=temperature,
                                min_weight=min_weight, random_state=random_state))
    W = np.zeros((V.shape[0], K))
    W[:, idx_c] = V[:, :-1]
    W[:, idx_f] = V[:, -1:] * ratios[None, :]
    expl = (f"{len(frozen)} unchanged domains frozen at their old ratios (one virtual domain), {len(changed)} "
            f"changed re-explored: {n} runs over {dims} dimensions instead of {fresh} for a fresh swarm over {K}")
    if ch["removed"]:
        expl += f"; removed: {ch['removed']}"
    return {"mixtures": W.tolist(), "frozen": {d: float(r) for d, r in zip(frozen, ratios, strict=True)},
            "changed": changed, "removed": ch["removed"], "count": n, "fresh_count": fresh, "dimensions": dims,
            "explanation": expl}


def map_old_runs(X_old: Any, old_domains: Sequence[str], new_domains: Sequence[str], *,
                 splits: Mapping[str, Sequence[str]] | None = None,
                 token_counts: Mapping[str, float] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Old runs expressed over the new domains where that is valid (module docstring).

    Returns ``(X_new, kept, notes)``: ``X_new`` rows for the kept runs only, ``kept`` a boolean
    mask over the old runs, ``notes`` saying what was mapped and what was dropped.
    """
    X = np.atleast_2d(np.asarray(X_old, dtype=float))
    old, new = [str(d) for d in old_domains], [str(d) for d in new_domains]
    splits = {str(k): [str(x) for x in v] for k, v in (splits or {}).items()}
    counts = dict(token_counts or {})
    M = np.zeros((len(old), len(new)))
    valid = np.ones(len(old), dtype=bool)
    notes = []
    for i, d in enumerate(old):
        if d in new:
            M[i, new.index(d)] = 1.0
        elif d in splits and all(x in new for x in splits[d]):
            parts = splits[d]
            t = np.array([float(counts.get(x, 1.0)) for x in parts])
            M[i, [new.index(x) for x in parts]] = t / t.sum()
            notes.append(f"{d} split into {parts}: old weight shared by token counts")
        else:
            valid[i] = False
    used_invalid = (X[:, ~valid] > 0).any(axis=1) if (~valid).any() else np.zeros(X.shape[0], dtype=bool)
    kept = ~used_invalid
    if used_invalid.any():
        notes.append(f"{int(used_invalid.sum())} old runs dropped: they trained on "
                     f"{[d for d, v in zip(old, valid, strict=True) if not v]} which the new domain set lacks")
    notes.append(f"{int(kept.sum())} of {X.shape[0]} old runs reused in the new domain set")
    return X[kept] @ M, kept, notes
