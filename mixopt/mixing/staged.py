"""Staged mixtures: phases with their own token budget and objective weights, epoch caps
counted across phases.

Teams train in phases (a main phase, then an annealing phase on higher-quality data; the
two-phase pretraining of Feng et al. 2024; Levanter's ``train_weights: [[step, weights], ...]``).
A staged recommendation gives each phase ``p`` a mixture ``w_p`` for ``tokens_p`` tokens and
its own objective weights ``s_p``; the availability cap of olmix becomes a budget shared by
the phases::

    sum_p w_{p,i} tokens_p <= R_i x tokens_i          (R_i = max_epochs of domain i)

The budget is split between the phases by a joint solve where it can be (all phases at
once, objective the token-weighted sum of the phases' objectives, the shared cap above;
:func:`joint_allocation`), else greedily in phase order (an earlier phase takes what it is
predicted to need, a later one is capped by what is left: tree estimators, a reference or a
trust region); then each phase is recommended by :func:`mixopt.mixing.solve.recommend_one`
under the project's other constraints (bounds, fixed weights, group totals) within its
share ``w_{p,i} <= share_{p,i} / tokens_p``. The result reports the tokens and epochs each
domain uses over all phases and which budget solver ran, and :func:`levanter_weights`
writes Levanter's staged list form.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.optimize import minimize

from mixopt.mixing import hierarchy
from mixopt.mixing.constraints import Constraints, InfeasibleConstraintsError, resolve_per_domain
from mixopt.mixing.objective import Objective
from mixopt.mixing.solve import objective_batch, prior_vector, recommend_one


def _phase_weights(estimator: Any, weights: Any, k: int) -> Any:
    """A phase's objective weights: a list over the estimator's targets, or ``{target: w}``
    (read by :class:`~mixopt.mixing.objective.Objective`)."""
    if not isinstance(weights, Mapping):
        return weights
    targets = getattr(estimator, "targets_", None) or getattr(
        estimator.final_estimator(), "targets_", None
    )
    return Objective.parse(weights, targets=targets, field=f"phases[{k}].objective").explicit


#: the joint solve (SLSQP over phases x domains) runs up to this many variables, greedy above
JOINT_MAX_VARIABLES = 256


def _phase_constraints(
    base: Constraints, capped: bool, cap_tokens: np.ndarray, t: float
) -> Constraints:
    """The project's constraints for one phase of ``t`` tokens that may use ``cap_tokens`` of
    each domain: ``w_i <= cap_tokens_i / t``."""
    c = Constraints.from_dict(base.to_dict())
    if capped:
        c.token_counts = [float(max(x, 0.0)) for x in cap_tokens]
        c.max_epochs, c.target_tokens = 1.0, t
    else:
        c.target_tokens = None
    return c


def _sequential(
    estimator: Any,
    phases: Sequence[Mapping[str, Any]],
    base: Constraints,
    names: list[str],
    ows: list[Any],
    capped: bool,
    budget: np.ndarray,
    allocation: np.ndarray | None,
    random_state: int,
    kw: dict[str, Any],
) -> tuple[list[dict[str, Any]], Any]:
    """One recommendation per phase, in order: phase ``p`` may use ``allocation[p]`` tokens of
    each domain, or (greedy, ``allocation`` None) whatever earlier phases left of ``budget``."""
    left = budget.copy()
    out, start, first = [], 0.0, None
    for k, ph in enumerate(phases):
        t = float(ph["tokens"])
        c = _phase_constraints(base, capped, left if allocation is None else allocation[k], t)
        try:
            rec = recommend_one(
                estimator,
                c,
                objective_weights=ows[k],
                random_state=random_state,
                domains=names,
                **kw,
            )
        except InfeasibleConstraintsError as exc:
            raise InfeasibleConstraintsError(
                f"phases[{k}] ({ph.get('name') or k}): {exc} (earlier phases used "
                "part of the data; epoch caps are counted across phases)"
            ) from None
        w = np.asarray(rec["mixture"], dtype=float)
        left = left - w * t
        out.append(
            {
                "name": ph.get("name") or f"phase{k}",
                "tokens": t,
                "start_tokens": start,
                "objective_weights": ph.get("objective_weights"),
                "mixture": w.tolist(),
                "mixture_by_domain": rec["mixture_by_domain"],
                "predicted_objective": rec["predicted_objective"],
                "interval": rec.get("interval"),
                "binding": rec.get("binding"),
                "group_totals": rec.get("group_totals"),
                "explanation": rec.get("explanation"),
            }
        )
        if k == 0:
            first = rec
        start += t
    return out, first


def _weighted(out: list[dict[str, Any]]) -> float:
    """The staged objective: the phases' predicted objectives weighted by their tokens."""
    t = np.array([p["tokens"] for p in out], dtype=float)
    return float(np.dot(t, [p["predicted_objective"] for p in out]) / t.sum())


def joint_allocation(
    estimator: Any,
    W0: np.ndarray,
    tokens: np.ndarray,
    ows: list[Any],
    base: Constraints,
    names: list[str],
    budget: np.ndarray,
    prior: np.ndarray | None = None,
    maxiter: int = 300,
) -> tuple[np.ndarray, float] | None:
    """All phases at once: ``min sum_p (t_p / T) f_p(w_p)`` over ``w_1 .. w_P``, each on the
    simplex under the project's bounds, fixed weights and group totals, with the shared cap
    ``sum_p w_{p,i} t_p <= R_i x tokens_i`` (SLSQP from the greedy solution ``W0``, which is
    feasible, so the result is never worse than greedy). ``f_p`` includes the KL pull when
    ``kl_weight`` is set. Returns ``(W, objective)``, or None when SLSQP ends infeasible.
    """
    P, K = W0.shape
    share = tokens / tokens.sum()
    c = Constraints.from_dict(base.to_dict())
    c.max_epochs = c.target_tokens = None
    lo, hi = c.feasible_bounds(names)
    groups = c.group_system(names, check=False)
    kl = float(c.kl_weight or 0.0)
    p0 = prior_vector(prior, base, names)
    weights = [Objective.parse(ow).explicit for ow in ows]
    h = 1e-6

    def fun(x):
        W = x.reshape(P, K)
        f, g = 0.0, np.zeros((P, K))
        for p in range(P):
            pts = np.clip(np.vstack([W[p]] + [W[p] + h * e for e in np.eye(K)]), 0.0, None)
            v = objective_batch(estimator, pts, weights[p], kl, p0)
            f += share[p] * float(v[0])
            g[p] = share[p] * (v[1:] - v[0]) / h
        return f, g.ravel()

    cons: list[dict[str, Any]] = []
    for p in range(P):
        sel = np.zeros(P * K)
        sel[p * K : (p + 1) * K] = 1.0
        cons.append(
            {"type": "eq", "fun": lambda x, sel=sel: sel @ x - 1.0, "jac": lambda x, sel=sel: sel}
        )
        for gc in (
            hierarchy.scipy_constraints(groups, np.ones(K, dtype=bool), np.zeros(K))
            if groups
            else []
        ):
            cons.append(
                {
                    "type": "ineq",
                    "fun": lambda x, p=p, f=gc["fun"]: f(x[p * K : (p + 1) * K]),
                    "jac": lambda x, p=p, j=gc["jac"]: np.concatenate(
                        [np.zeros(p * K), j(x[p * K : (p + 1) * K]), np.zeros((P - p - 1) * K)]
                    ),
                }
            )
    finite = np.isfinite(budget)
    A = np.hstack([t * np.eye(K) for t in tokens])[
        finite
    ]  # rows: tokens of domain i over all phases
    cons.append({"type": "ineq", "fun": lambda x: budget[finite] - A @ x, "jac": lambda x: -A})
    res = minimize(
        fun,
        W0.ravel(),
        jac=True,
        method="SLSQP",
        bounds=[(a, b) for _ in range(P) for a, b in zip(lo, hi, strict=True)],
        constraints=cons,
        options={"maxiter": maxiter, "ftol": 1e-12},
    )
    W = np.clip(res.x.reshape(P, K), lo, hi)
    W = W / W.sum(axis=1, keepdims=True)
    used = tokens @ W
    scale = np.where(finite, np.maximum(budget, 1.0), 1.0)
    if np.any((used - budget)[finite] / scale[finite] > 1e-6):
        return None
    if groups and np.any(groups.violation(W) > 1e-6):
        return None
    return W, float(fun(W.ravel())[0])


def recommend_staged(
    estimator: Any,
    phases: Sequence[Mapping[str, Any]],
    constraints: Constraints | dict | None,
    *,
    domains: list[str],
    random_state: int = 0,
    objective_names: bool = False,
    objective_weights: Any = None,
    joint: bool = True,
    **kw: Any,
) -> dict[str, Any]:
    """Recommend one mixture per phase with epoch caps counted across phases.

    The budget ``R_i x tokens_i`` is shared by the phases. Greedy (phases in order, each taking
    what it is predicted to need from what earlier ones left) is computed first; with a smooth
    estimator and binding caps, :func:`joint_allocation` then solves all phases at once
    (objective: the token-weighted sum of the phases' objectives) and, when that is predicted
    better, each phase is recommended again within its share of the budget (its joint tokens
    of each domain plus the unused rest split by phase tokens), so every phase keeps its
    interval and binding constraints. Greedy is kept for tree estimators (RegMix's sampled
    recommender has no gradient to solve the coupled problem with), with ``reference`` or
    ``trust_region`` (constraints the joint problem does not carry), and when the joint
    solution is not better; ``budget_solver`` says which and why.

    Parameters
    ----------
    phases : ``[{"name": str, "tokens": float, "objective_weights": weights over the
        estimator's targets or None}]`` in training order.
    constraints : the project's; its ``token_counts`` and ``max_epochs`` give the shared
        budget ``R_i x tokens_i`` (no caps without them); ``target_tokens`` is ignored (each
        phase has its own).
    objective_weights : the default of a phase without its own (``objective_weights`` or
        ``objective``: a list over the targets or ``{target: weight}``).
    joint : try the joint solve (False: greedy only).
    kw : passed to :func:`~mixopt.mixing.solve.recommend_one` (``X``, ``Y``, ``n_boot``, ...).

    Returns
    -------
    dict: ``phases`` (each with ``name``, ``tokens``, ``start_tokens``, ``mixture_by_domain``,
    ``predicted_objective``, ``interval``, ``binding``), ``tokens_used``, ``epochs_used`` and
    ``epochs_allowed`` per domain, ``total_tokens``, ``objective`` (token-weighted) and
    ``budget_solver`` (``method`` joint or greedy, both objectives, ``reason``).
    """
    if not phases:
        raise ValueError("phases: at least one phase")
    base = (
        constraints if isinstance(constraints, Constraints) else Constraints.from_dict(constraints)
    )
    names = [str(d) for d in domains]
    K = len(names)
    _check_tokens(phases)
    capped = base.token_counts is not None and base.max_epochs is not None
    if capped:
        tokens = resolve_per_domain(base.token_counts, names, np.inf, "token_counts")
        epochs = resolve_per_domain(base.max_epochs, names, np.inf, "max_epochs")
        budget = tokens * epochs
    else:
        tokens = epochs = budget = np.full(K, np.inf)
    ows = []
    for k, ph in enumerate(phases):
        ow = ph.get("objective_weights", ph.get("objective"))
        ows.append(_phase_weights(estimator, objective_weights if ow is None else ow, k))
    ts = np.array([float(ph["tokens"]) for ph in phases])

    why = _greedy_reason(estimator, len(phases), K, capped, joint, kw)
    if why is None:  # a cheap greedy pass (no bootstrap) to start from and compare with
        cheap = {**kw, "n_boot": 0}
        g_out, _ = _sequential(
            estimator, phases, base, names, ows, capped, budget, None, random_state, cheap
        )
        used = ts @ np.array([p["mixture"] for p in g_out])
        if np.all(used[np.isfinite(budget)] < budget[np.isfinite(budget)] * (1 - 1e-6)):
            why = "no epoch cap binds under greedy: it is the joint optimum"
    out = first = None
    solver: dict[str, Any] = {"method": "greedy"}
    if why is None:
        g_obj = _weighted(g_out)
        W0 = np.array([p["mixture"] for p in g_out])
        res = joint_allocation(estimator, W0, ts, ows, base, names, budget, prior=kw.get("prior"))
        solver["greedy_objective"] = g_obj
        if res is None:
            why = "the joint solve ended infeasible"
        else:
            W, j_obj = res
            solver["joint_objective"] = j_obj
            if j_obj >= g_obj - 1e-9:
                why = "the joint solution is not predicted better than greedy"
            else:
                slack = np.where(np.isfinite(budget), np.maximum(budget - ts @ W, 0.0), np.inf)
                alloc = W * ts[:, None] + slack[None, :] * (ts / ts.sum())[:, None]
                out, first = _sequential(
                    estimator, phases, base, names, ows, capped, budget, alloc, random_state, kw
                )
                if _weighted(out) > g_obj + 1e-9:  # re-recommending lost it: keep greedy
                    out = first = None
                    why = "the phases re-recommended within the joint budget did worse than greedy"
                else:
                    solver = {
                        **solver,
                        "method": "joint",
                        "reason": "all phases solved at once (SLSQP) under "
                        "the shared cap; each phase recommended within its share",
                    }
    if out is None:
        out, first = _sequential(
            estimator, phases, base, names, ows, capped, budget, None, random_state, kw
        )
        solver["reason"] = why
    out_dict = {
        "phases": out,
        "total_tokens": sum(p["tokens"] for p in out),
        "objective": _weighted(out),
        "budget_solver": solver,
        **_usage(out, names, tokens, epochs),
    }
    if objective_names:  # called by optimize.recommend: it returns the first phase's full result
        out_dict["first"] = first
    return out_dict


def _check_tokens(phases: Sequence[Mapping[str, Any]]) -> None:
    for k, ph in enumerate(phases):
        t = ph.get("tokens")
        if t is None or not np.isfinite(float(t)) or float(t) <= 0:
            raise ValueError(f"phases[{k}].tokens must be > 0")


def _greedy_reason(
    estimator: Any, n_phases: int, K: int, capped: bool, joint: bool, kw: Mapping[str, Any]
) -> str | None:
    """Why the budget is split greedily without trying the joint solve (None: try it)."""
    if not joint:
        return "joint solve not asked for"
    if n_phases < 2 or not capped:
        return "one phase or no epoch caps: nothing is shared"
    if not getattr(estimator, "smooth", False):
        return "tree estimator: the sampled recommender has no gradient for the coupled problem"
    if kw.get("reference") is not None or kw.get("trust_region") is not None:
        return "reference and trust_region are not part of the joint problem"
    if n_phases * K > JOINT_MAX_VARIABLES:
        return (
            f"{n_phases} phases x {K} domains = {n_phases * K} variables, above the joint solve's "
            f"{JOINT_MAX_VARIABLES} (SLSQP's cost grows with the cube)"
        )
    return None


def _usage(
    out: list[dict[str, Any]], names: list[str], tokens: np.ndarray, epochs: np.ndarray
) -> dict[str, dict[str, float | None]]:
    """Tokens and epochs each domain uses over all phases, and the epochs it may use."""
    used = np.sum([np.asarray(p["mixture"]) * p["tokens"] for p in out], axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ep = np.where(np.isfinite(tokens) & (tokens > 0), used / tokens, np.nan)
    return {
        "tokens_used": {d: float(x) for d, x in zip(names, used, strict=True)},
        "epochs_used": {
            d: (None if not np.isfinite(x) else float(x)) for d, x in zip(names, ep, strict=True)
        },
        "epochs_allowed": {
            d: (None if not np.isfinite(x) else float(x))
            for d, x in zip(names, epochs, strict=True)
        },
    }


def levanter_weights(staged: Mapping[str, Any], global_batch_tokens: int) -> list[list[Any]]:
    """Levanter's staged form ``train_weights: [[start_step, {domain: weight}], ...]``: each
    phase starts at ``start_tokens / global_batch_tokens`` (whole steps)."""
    if not global_batch_tokens or int(global_batch_tokens) <= 0:
        raise ValueError("global_batch_tokens must be > 0 (a phase starts at a step)")
    return [
        [
            int(round(float(p["start_tokens"]) / int(global_batch_tokens))),
            dict(p["mixture_by_domain"]),
        ]
        for p in staged["phases"]
    ]
