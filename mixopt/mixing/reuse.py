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
would have made) or merged with others that the run drew in their token proportion (the
inverse rule); runs that used a removed domain are dropped, and the notes say which and why
(:func:`map_mixtures`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from mixopt.mixing.design import regmix_swarm

DEFAULT_RUNS_PER_DIM = 4
#: a merged run is kept when its parts are within this total variation of their token shares
DEFAULT_MERGE_TOLERANCE = 0.05


def domain_changes(
    old: Sequence[str], new: Sequence[str], splits: Mapping[str, Sequence[str]] | None = None
) -> dict[str, list[str]]:
    """``unchanged``, ``added`` (new names, split parts included), ``removed`` (old names gone)."""
    old, new = [str(d) for d in old], [str(d) for d in new]
    return {
        "unchanged": [d for d in new if d in old],
        "added": [d for d in new if d not in old],
        "removed": [d for d in old if d not in new],
        "split": sorted(splits or {}),
    }


def reuse_size(
    old_mixture: Mapping[str, float],
    new_domains: Sequence[str],
    *,
    runs_per_dim: int = DEFAULT_RUNS_PER_DIM,
) -> dict[str, int]:
    """The default size of :func:`reuse_design`: ``runs_per_dim x dimensions`` explored (the
    changed domains plus one virtual domain for the frozen ones), and ``fresh_count``, a fresh
    swarm's size over every new domain by the same rule."""
    new = [str(d) for d in new_domains]
    frozen = [
        d
        for d in domain_changes(list(old_mixture), new)["unchanged"]
        if float(old_mixture.get(d, 0.0)) > 0
    ]
    changed = [d for d in new if d not in frozen]
    dims = len(changed) + 1 if frozen and changed else len(new)
    return {
        "count": int(runs_per_dim) * dims,
        "fresh_count": int(runs_per_dim) * len(new),
        "dimensions": dims,
        "runs_per_dim": int(runs_per_dim),
    }


def reuse_design(
    old_mixture: Mapping[str, float],
    new_domains: Sequence[str],
    *,
    prior: Any = None,
    count: int | None = None,
    runs_per_dim: int = DEFAULT_RUNS_PER_DIM,
    temperature: float = 0.5,
    min_weight: float = 2e-4,
    random_state: int = 0,
) -> dict[str, Any]:
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
    new = [str(d) for d in new_domains]
    ch = domain_changes(list(old_mixture), new)
    frozen = [d for d in ch["unchanged"] if float(old_mixture.get(d, 0.0)) > 0]
    changed = [d for d in new if d not in frozen]
    K = len(new)
    p = (
        np.full(K, 1.0 / K)
        if prior is None
        else np.clip(
            np.asarray(
                [prior.get(d, 0.0) for d in new] if isinstance(prior, Mapping) else prior,
                dtype=float,
            ).ravel(),
            0,
            None,
        )
    )
    if p.size != K or p.sum() <= 0:
        raise ValueError(f"prior must have {K} non-negative entries with a positive sum")
    p = p / p.sum()
    fresh = int(runs_per_dim) * K
    if not frozen or not changed:
        n = int(count or fresh)
        W = regmix_swarm(
            p,
            n,
            domains=new,
            temperature=temperature,
            min_weight=min_weight,
            random_state=random_state,
        )
        return {
            "mixtures": np.asarray(W).tolist(),
            "frozen": {},
            "changed": changed,
            "removed": ch["removed"],
            "count": n,
            "fresh_count": fresh,
            "dimensions": K,
            "runs_per_dim": int(runs_per_dim),
            "explanation": "nothing to freeze (no unchanged domain with weight): a fresh swarm"
            if not frozen
            else "no domain changed: a fresh swarm over the same domains",
        }
    ratios = np.array([float(old_mixture[d]) for d in frozen])
    ratios = ratios / ratios.sum()
    idx_f = [new.index(d) for d in frozen]
    idx_c = [new.index(d) for d in changed]
    dims = len(changed) + 1
    n = int(count or int(runs_per_dim) * dims)
    # reduced problem: the changed domains and one virtual domain carrying the frozen part
    p_red = np.concatenate([p[idx_c], [p[idx_f].sum()]])
    V = np.asarray(
        regmix_swarm(
            p_red,
            n,
            domains=changed + ["__frozen__"],
            temperature=temperature,
            min_weight=min_weight,
            random_state=random_state,
        )
    )
    W = np.zeros((V.shape[0], K))
    W[:, idx_c] = V[:, :-1]
    W[:, idx_f] = V[:, -1:] * ratios[None, :]
    expl = (
        f"{len(frozen)} unchanged domains frozen at their old ratios (one virtual domain), "
        f"{len(changed)} changed re-explored: {n} runs over {dims} dimensions instead of {fresh} "
        f"for a fresh swarm over {K}"
    )
    if ch["removed"]:
        expl += f"; removed: {ch['removed']}"
    return {
        "mixtures": W.tolist(),
        "frozen": {d: float(r) for d, r in zip(frozen, ratios, strict=True)},
        "changed": changed,
        "removed": ch["removed"],
        "count": n,
        "fresh_count": fresh,
        "dimensions": dims,
        "runs_per_dim": int(runs_per_dim),
        "explanation": expl,
    }


def map_mixtures(
    X_old: Any,
    old_domains: Sequence[str],
    new_domains: Sequence[str],
    *,
    splits: Mapping[str, Sequence[str]] | None = None,
    merges: Mapping[str, Sequence[str]] | None = None,
    token_counts: Mapping[str, float] | None = None,
    merge_tolerance: float = DEFAULT_MERGE_TOLERANCE,
) -> dict[str, Any]:
    """Old mixtures over ``old_domains`` expressed over ``new_domains``, run by run.

    One change of the domain set (olmix's mixture reuse, applied to the runs themselves):

    * a domain in both sets keeps its weight; a new domain gets 0 (the old run did not train
      on it, which is a valid point of the new simplex);
    * ``splits {old: [parts]}``: the old weight is shared among the parts by their token
      counts, ``w_part = w_old x tokens_part / sum(tokens_parts)``: what sampling the old domain
      uniformly over its documents drew from each part;
    * ``merges {new: [parts]}``: the merged weight is the sum of the parts' weights, kept only
      when the run drew the parts in their token proportion (total variation between the
      run's within-merge ratio and the parts' token shares at most ``merge_tolerance``).
      Why not always sum: the merged domain is sampled as a whole, by its token shares; a run
      that drew pg19:books3 at 9:1 when their tokens are 1:1 trained on another distribution
      than ``books`` at the same total, and a law fitted on it would read the effect of the
      inner ratio as noise. This is the inverse of the split rule (a split then a merge of the
      same parts gives back the old run exactly), so both rest on the same assumption;
    * a removed domain: runs that gave it a non-zero weight are dropped (their mixture has no
      point in the new simplex); runs that gave it 0 are kept unchanged.

    Token counts missing for the parts of a split or merge count as equal (noted).

    Returns
    -------
    dict: ``X`` (rows over ``new_domains``; NaN rows for dropped runs), ``status`` per run
    (``"reused"``: weights carried over unchanged, ``"mapped"``: a split or merge changed
    them, ``"dropped"``), ``reasons`` per run (None unless dropped) and ``notes``.
    """
    X = np.atleast_2d(np.asarray(X_old, dtype=float))
    old, new = [str(d) for d in old_domains], [str(d) for d in new_domains]
    if X.shape[1] != len(old):
        raise ValueError(f"X has {X.shape[1]} columns for {len(old)} old domains")
    split_map = {str(k): [str(x) for x in v] for k, v in (splits or {}).items()}
    merge_map = {str(k): [str(x) for x in v] for k, v in (merges or {}).items()}
    counts = dict(token_counts or {})
    merged_into = {part: target for target, parts in merge_map.items() for part in parts}
    notes: list[str] = []

    def shares(parts: list[str]) -> np.ndarray:
        t = np.array([float(counts[x]) if counts.get(x) else np.nan for x in parts])
        if np.isnan(t).any() or t.sum() <= 0:
            notes.append(f"token counts of {parts} unknown: counted as equal")
            t = np.ones(len(parts))
        return t / t.sum()

    M = np.zeros((len(old), len(new)))
    removed = np.zeros(len(old), dtype=bool)
    touched = np.zeros(len(old), dtype=bool)  # split or merged: the run's weights change form
    for i, d in enumerate(old):
        if d in split_map and all(x in new for x in split_map[d]):
            M[i, [new.index(x) for x in split_map[d]]] = shares(split_map[d])
            touched[i] = True
        elif d in merged_into and merged_into[d] in new:
            M[i, new.index(merged_into[d])] = 1.0
            touched[i] = True
        elif d in new:
            M[i, new.index(d)] = 1.0
        else:
            removed[i] = True
    n = X.shape[0]
    status: list[str] = ["reused"] * n
    reasons: list[str | None] = [None] * n
    used = X > 0
    for r in range(n):
        gone = [old[i] for i in np.flatnonzero(removed & used[r])]
        if gone:
            status[r], reasons[r] = "dropped", f"trained on removed domain(s) {gone}"
            continue
        why = _merge_violation(X[r], old, merge_map, shares, merge_tolerance)
        if why is not None:
            status[r], reasons[r] = "dropped", why
        if status[r] != "dropped" and (used[r] & touched).any():
            status[r] = "mapped"
    keep = np.array([s != "dropped" for s in status], dtype=bool)
    X_new = np.full((n, len(new)), np.nan)
    X_new[keep] = X[keep] @ M
    notes = list(dict.fromkeys(notes))
    for d, parts in split_map.items():
        notes.append(f"{d} split into {parts}: old weight shared by token counts")
    for d, parts in merge_map.items():
        notes.append(
            f"{parts} merged into {d}: weights summed where the run drew them by token shares"
        )
    if not keep.all():
        notes.append(f"{int((~keep).sum())} old runs dropped")
    return {"X": X_new, "status": status, "reasons": reasons, "notes": notes}


def _merge_violation(
    x: np.ndarray,
    old: list[str],
    merges: dict[str, list[str]],
    shares: Callable[[list[str]], np.ndarray],
    merge_tolerance: float,
) -> str | None:
    """Why a run's weights cannot be summed into a merged domain (it drew the parts away from
    their token shares by more than ``merge_tolerance`` in total variation), or None."""
    for target, parts in merges.items():
        idx = [old.index(p) for p in parts if p in old]
        w = x[idx]
        if w.sum() <= 0:
            continue
        expected = shares([old[i] for i in idx]) if len(idx) > 1 else np.ones(1)
        tv = 0.5 * float(np.abs(w / w.sum() - expected).sum())
        if tv > merge_tolerance:
            ratio = ":".join(f"{v:.3g}" for v in w / w.sum())
            tok = ":".join(f"{v:.3g}" for v in expected)
            return (
                f"drew the parts of merged {target!r} ({[old[i] for i in idx]}) "
                f"at {ratio}, not their token shares {tok}"
            )
    return None


def map_old_runs(
    X_old: Any,
    old_domains: Sequence[str],
    new_domains: Sequence[str],
    *,
    splits: Mapping[str, Sequence[str]] | None = None,
    merges: Mapping[str, Sequence[str]] | None = None,
    token_counts: Mapping[str, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Old runs expressed over the new domains where that is valid (:func:`map_mixtures`).

    Returns ``(X_new, kept, notes)``: ``X_new`` rows for the kept runs only, ``kept`` a boolean
    mask over the old runs, ``notes`` saying what was mapped and what was dropped. A domain
    missing from ``new_domains`` and from ``splits``/``merges`` counts as removed.
    """
    out = map_mixtures(
        X_old, old_domains, new_domains, splits=splits, merges=merges, token_counts=token_counts
    )
    kept = np.array([s != "dropped" for s in out["status"]], dtype=bool)
    notes = [n for n in out["notes"] if not n.endswith("old runs dropped")]
    dropped = [r for r in out["reasons"] if r]
    if dropped:
        notes.append(
            f"{len(dropped)} old runs dropped: {sorted(set(dropped))}, which the new domain set "
            "lacks"
        )
    notes.append(f"{int(kept.sum())} of {kept.size} old runs reused in the new domain set")
    return out["X"][kept], kept, notes
