"""Staged mixtures: phases with their own token budget and objective weights, epoch caps
counted across phases.

Teams train in phases (a main phase, then an annealing phase on higher-quality data; the
two-phase pretraining of Feng et al. 2024; Levanter's ``train_weights: [[step, weights], ...]``).
A staged recommendation gives each phase ``p`` a mixture ``w_p`` for ``tokens_p`` tokens and
its own objective weights ``s_p``; the availability cap of olmix becomes a budget shared by
the phases::

    sum_p w_{p,i} tokens_p <= R_i x tokens_i          (R_i = max_epochs of domain i)

Phases are optimised in order (greedy: an earlier phase takes what it is predicted to need,
a later one is capped by what is left), each by :func:`mixopt.mixing.optimize.recommend`
under the project's other constraints (bounds, fixed weights, group totals) with the cap
``w_{p,i} <= left_i / tokens_p``. The result reports the tokens and epochs each domain
uses over all phases, and :func:`levanter_weights` writes Levanter's staged list form.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mixopt.mixing.constraints import Constraints, InfeasibleConstraintsError, _resolve


def _phase_weights(estimator: Any, weights: Any, k: int) -> Any:
    """A phase's objective weights: a list over the estimator's targets, or ``{target: w}``."""
    if not isinstance(weights, Mapping):
        return weights
    targets = getattr(estimator, "targets_", None) or getattr(getattr(estimator, "estimator_", None), "targets_", None)
    if targets is None:
        raise ValueError(f"phases[{k}].objective: the estimator has no target names")
    unknown = sorted(set(weights) - set(targets))
    if unknown:
        raise ValueError(f"phases[{k}].objective: unknown metric(s) {unknown}; the fit's are {list(targets)}")
    return [float(weights.get(t, 0.0)) for t in targets]


def recommend_staged(estimator: Any, phases: Sequence[Mapping[str, Any]], constraints: Constraints | dict | None,
                     *, domains: list[str], random_state: int = 0, objective_names: bool = False,
                     objective_weights: Any = None, **kw: Any) -> dict[str, Any]:
    """Recommend one mixture per phase with epoch caps counted across phases.

    Parameters
    ----------
    phases : ``[{"name": str, "tokens": float, "objective_weights": weights over the
        estimator's targets or None}]`` in training order.
    constraints : the project's; its ``token_counts`` and ``max_epochs`` give the shared
        budget ``R_i x tokens_i`` (no caps without them); ``target_tokens`` is ignored (each
        phase has its own).
    objective_weights : the default of a phase without its own (``objective_weights`` or
        ``objective``: a list over the targets or ``{target: weight}``).
    kw : passed to :func:`~mixopt.mixing.optimize.recommend` (``X``, ``Y``, ``n_boot``, ...).

    Returns
    -------
    dict: ``phases`` (each with ``name``, ``tokens``, ``start_tokens``, ``mixture_by_domain``,
    ``predicted_objective``, ``interval``, ``binding``), ``tokens_used``, ``epochs_used`` and
    ``epochs_allowed`` per domain, ``total_tokens``.
    """
    from mixopt.mixing.optimize import recommend

    if not phases:
        raise ValueError("phases: at least one phase")
    base = constraints if isinstance(constraints, Constraints) else Constraints.from_dict(constraints)
    names = [str(d) for d in domains]
    K = len(names)
    for k, ph in enumerate(phases):
        t = ph.get("tokens")
        if t is None or not np.isfinite(float(t)) or float(t) <= 0:
            raise ValueError(f"phases[{k}].tokens must be > 0")
    capped = base.token_counts is not None and base.max_epochs is not None
    if capped:
        tokens = _resolve(base.token_counts, names, np.inf, "token_counts")
        epochs = _resolve(base.max_epochs, names, np.inf, "max_epochs")
        budget = tokens * epochs
    else:
        tokens = epochs = budget = np.full(K, np.inf)
    left = budget.copy()
    out, start = [], 0.0
    for k, ph in enumerate(phases):
        t = float(ph["tokens"])
        c = Constraints.from_dict(base.to_dict())
        if capped:
            # the phase's own cap from what earlier phases left: w_i <= left_i / t_p
            c.token_counts = [float(max(x, 0.0)) for x in left]
            c.max_epochs, c.target_tokens = 1.0, t
        else:
            c.target_tokens = None
        try:
            ow = ph.get("objective_weights", ph.get("objective"))
            ow = objective_weights if ow is None else ow  # a phase without its own: the project's objective
            rec = recommend(estimator, c, objective_weights=_phase_weights(estimator, ow, k),
                            random_state=random_state, domains=names, **kw)
        except InfeasibleConstraintsError as exc:
            raise InfeasibleConstraintsError(f"phases[{k}] ({ph.get('name') or k}): {exc} (earlier phases used "
                                             "part of the data; epoch caps are counted across phases)") from None
        w = np.asarray(rec["mixture"], dtype=float)
        left = left - w * t
        out.append({"name": ph.get("name") or f"phase{k}", "tokens": t, "start_tokens": start,
                    "objective_weights": ph.get("objective_weights"), "mixture": w.tolist(),
                    "mixture_by_domain": rec["mixture_by_domain"], "predicted_objective": rec["predicted_objective"],
                    "interval": rec.get("interval"), "binding": rec.get("binding"),
                    "group_totals": rec.get("group_totals"), "explanation": rec.get("explanation")})
        if k == 0:
            first = rec
        start += t
    used = np.sum([np.asarray(p["mixture"]) * p["tokens"] for p in out], axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ep = np.where(np.isfinite(tokens) & (tokens > 0), used / tokens, np.nan)
    out_dict = {
        "phases": out, "total_tokens": start,
        "tokens_used": {d: float(x) for d, x in zip(names, used, strict=True)},
        "epochs_used": {d: (None if not np.isfinite(x) else float(x)) for d, x in zip(names, ep, strict=True)},
        "epochs_allowed": {d: (None if not np.isfinite(x) else float(x)) for d, x in zip(names, epochs, strict=True)},
    }
    if objective_names:  # called by optimize.recommend: it returns the first phase's full result
        out_dict["first"] = first
    return out_dict


def levanter_weights(staged: Mapping[str, Any], global_batch_tokens: int) -> list[list[Any]]:
    """Levanter's staged form ``train_weights: [[start_step, {domain: weight}], ...]``: each
    phase starts at ``start_tokens / global_batch_tokens`` (whole steps)."""
    if not global_batch_tokens or int(global_batch_tokens) <= 0:
        raise ValueError("global_batch_tokens must be > 0 (a phase starts at a step)")
    return [[int(round(float(p["start_tokens"]) / int(global_batch_tokens))), dict(p["mixture_by_domain"])]
            for p in staged["phases"]]
