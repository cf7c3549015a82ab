"""The single-step solver: one mixture from a fitted estimator under constraints.

The strategies (module docstring of :mod:`mixopt.mixing.optimize`, which dispatches between
a single step and the staged recommendation): smooth estimators by olmix's proposer
``min_w f(w) + lambda KL(w || prior)`` (SLSQP from several starts), trees by RegMix's
simulation (Liu et al. 2024, Sec. 2.4: ``n_samples`` Dirichlet draws around the token prior,
the average of the ``top_k`` best). :func:`recommend_one` adds the unconstrained optimum, the
interval, the binding constraints, the support check and, with a ``reference``, the baseline
constraint of :mod:`mixopt.mixing.reference`.

The layer below :mod:`mixopt.mixing.staged` (each phase is one :func:`recommend_one`) and
:mod:`mixopt.mixing.optimize` (the dispatcher); it imports neither.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.stats import norm

from mixopt.mixing import hierarchy
from mixopt.mixing.base import MixingEstimator
from mixopt.mixing.constraints import Constraints, resolve_per_domain
from mixopt.mixing.objective import Objective
from mixopt.mixing.reference import _as_vector, against_reference
from mixopt.mixing.robust import (
    ROBUST_BY_DEFAULT,
    bootstrap_refits,
    check_support,
    robust_mixture,
    support_bound,
    survival,
)
from mixopt.mixing.simplex import InfeasibleConstraintsError, kl_divergence, project_box_simplex
from mixopt.progress import ProgressFn, report, scaled

__all__ = [
    "EXTRAPOLATION_LOSS_FRACTION",
    "EXTRAPOLATION_WEIGHT_TOL",
    "PAPER_N_SAMPLES",
    "PAPER_TOP_K",
    "domain_names",
    "feasible",
    "find_optimum",
    "kl_divergence",
    "objective_batch",
    "predict_with_interval",
    "prior_vector",
    "recommend_one",
    "support_check",
]

PAPER_N_SAMPLES = 100_000  # RegMix: simulated mixtures
PAPER_TOP_K = 128  # RegMix: averaged best mixtures
EXTRAPOLATION_WEIGHT_TOL = 0.02
EXTRAPOLATION_LOSS_FRACTION = 0.25


def domain_names(estimator: MixingEstimator, domains: list[str] | None) -> list[str]:
    """The domain names of a recommendation: ``domains``, else the estimator's, else
    ``d0 .. d{K-1}``; ``ValueError`` when their number is not the estimator's."""
    if domains is not None:
        names = [str(d) for d in domains]
    elif (fitted := getattr(estimator, "domains_", None)) is not None:
        names = [str(x) for x in fitted]
    else:
        names = [f"d{i}" for i in range(estimator.n_domains_)]
    if len(names) != estimator.n_domains_:
        raise ValueError(
            f"{len(names)} domain names for an estimator fitted on {estimator.n_domains_} domains"
        )
    return names


def _weights(objective_weights: Any) -> np.ndarray | None:
    """Explicit weights over the targets as an array, None for their mean."""
    return Objective.parse(objective_weights).explicit


def prior_vector(prior: Any, constraints: Constraints, domains: list[str]) -> np.ndarray:
    """The prior mixture over ``domains``: ``prior`` (list or ``{domain: w}``), else the token
    share of ``constraints.token_counts``, else uniform; normalised."""
    K = len(domains)
    if prior is None and constraints.token_counts is not None:
        prior = resolve_per_domain(constraints.token_counts, domains, 0.0, "token_counts")
    if prior is None:
        return np.full(K, 1.0 / K)
    if isinstance(prior, dict):
        prior = [float(prior.get(d, 0.0)) for d in domains]
    p = np.clip(np.asarray(prior, dtype=float).ravel(), 0.0, None)
    if p.size != K or p.sum() <= 0:
        raise ValueError(f"prior must have {K} non-negative entries with a positive sum")
    return p / p.sum()


def objective_batch(
    estimator: MixingEstimator,
    W: np.ndarray,
    weights: np.ndarray | None,
    kl_weight: float,
    prior: np.ndarray,
) -> np.ndarray:
    """``f(w) + kl_weight * KL(w || prior)`` for each row of ``W`` (olmix's proposer objective)."""
    f = np.asarray(estimator.predict_objective(W, weights), dtype=float).ravel()
    if kl_weight:
        f = f + kl_weight * kl_divergence(W, prior)
    return f


def feasible(lo: np.ndarray, hi: np.ndarray, groups: hierarchy.GroupSystem | None):
    """Projection onto the feasible set: box-simplex, plus group totals when ``groups``."""
    return hierarchy.feasible_projection(lo, hi, groups or None)


def _optimise_smooth(
    estimator, lo, hi, weights, kl_weight, prior, rng, n_starts=4, maxiter=200, groups=None
):
    K = lo.size
    proj = feasible(lo, hi, groups)
    fixed = np.isclose(lo, hi)
    free = ~fixed
    base = np.where(fixed, lo, 0.0)
    budget = 1.0 - base.sum()
    if free.sum() == 0:
        return base if not groups else proj(base)
    lo_f, hi_f = lo[free], hi[free]

    def full(x):
        w = base.copy()
        w[free] = x
        return w

    def fun_and_grad(x):
        h = 1e-6
        pts = np.vstack([x] + [x + h * e for e in np.eye(x.size)])
        W = np.zeros((pts.shape[0], K))
        W[:, free] = pts
        W[:, fixed] = lo[fixed]
        W = np.clip(W, 0.0, None)
        f = objective_batch(estimator, W, weights, kl_weight, prior)
        return float(f[0]), (f[1:] - f[0]) / h

    pool = proj(rng.dirichlet(np.maximum(prior, 1e-3) * K, size=512))
    fp = objective_batch(estimator, pool, weights, kl_weight, prior)
    starts = [proj(prior), proj((lo + hi) / 2)]
    starts += [pool[i] for i in np.argsort(fp)[: max(1, n_starts - 2)]]
    cons = [{"type": "eq", "fun": lambda x: x.sum() - budget, "jac": lambda x: np.ones_like(x)}]
    if groups:
        cons += hierarchy.scipy_constraints(groups, free, base)
    best_w, best_f = None, np.inf
    for s in starts:
        res = minimize(
            fun_and_grad,
            s[free],
            jac=True,
            method="SLSQP",
            bounds=list(zip(lo_f, hi_f, strict=True)),
            constraints=cons,
            options={"maxiter": maxiter, "ftol": 1e-10},
        )
        w = proj(full(res.x))
        f = float(objective_batch(estimator, w[None], weights, kl_weight, prior)[0])
        if f < best_f:
            best_w, best_f = w, f
    return best_w


def _optimise_trees(
    estimator, lo, hi, weights, kl_weight, prior, rng, n_samples, top_k, n_refine=0, groups=None
):
    proj = feasible(lo, hi, groups)
    S = rng.dirichlet(
        np.maximum(prior, 1e-6), size=int(n_samples)
    )  # RegMix: Dirichlet(token prior)
    S = proj(S)
    f = objective_batch(estimator, S, weights, kl_weight, prior)
    k = min(int(top_k), S.shape[0])
    avg = proj(S[np.argsort(f)[:k]].mean(axis=0))
    best = float(objective_batch(estimator, avg[None], weights, kl_weight, prior)[0])
    # local refinement around the average (kept only when it improves the prediction)
    if n_refine:
        conc = 200.0 * np.maximum(avg, 1e-4)
        R = proj(rng.dirichlet(conc, size=int(n_refine)))
        fr = objective_batch(estimator, R, weights, kl_weight, prior)
        i = int(np.argmin(fr))
        if fr[i] < best:
            avg = R[i]
    return avg


def find_optimum(
    estimator,
    lo,
    hi,
    *,
    prior,
    objective_weights=None,
    kl_weight=0.0,
    random_state=0,
    n_samples=PAPER_N_SAMPLES,
    top_k=PAPER_TOP_K,
    n_starts=4,
    refine=False,
    groups=None,
):
    """``groups``: a :class:`~mixopt.mixing.hierarchy.GroupSystem` of group totals (SLSQP
    inequality constraints for smooth estimators; every simulated mixture projected for trees)."""
    rng = np.random.default_rng(random_state)
    w = _weights(objective_weights)
    if estimator.smooth:
        return _optimise_smooth(
            estimator, lo, hi, w, kl_weight, prior, rng, n_starts=n_starts, groups=groups
        )
    return _optimise_trees(
        estimator,
        lo,
        hi,
        w,
        kl_weight,
        prior,
        rng,
        n_samples,
        top_k,
        n_refine=2000 if refine else 0,
        groups=groups,
    )


def predict_with_interval(
    estimator: MixingEstimator,
    X: Any,
    *,
    objective_weights: Any = None,
    X_train: Any = None,
    Y_train: Any = None,
    n_boot: int = 20,
    level: float = 0.95,
    random_state: int = 0,
    progress: ProgressFn | None = None,
    refits: list[Any] | None = None,
    **context: Any,
) -> dict[str, Any]:
    """Predicted objective with an uncertainty interval for each mixture in ``X``.

    GP-like estimators (with ``predict_objective_std``): ``mean +- z * std``. Otherwise, when
    training runs are given and ``n_boot > 0``: normal interval from ``n_boot`` bootstrap
    refits of the chosen estimator (for ``auto``, ``estimator.estimator_``: the selection is
    not repeated; ``refits``: ones already made, :func:`mixopt.mixing.robust.bootstrap_refits`).
    Else no interval. ``progress`` is called after each refit.
    """
    Xq = np.atleast_2d(np.asarray(X, dtype=float))
    w = _weights(objective_weights)
    mean = np.asarray(estimator.predict_objective(Xq, w), dtype=float).ravel()
    out: dict[str, Any] = {
        "mean": mean.tolist(),
        "lower": None,
        "upper": None,
        "std": None,
        "method": None,
    }
    if hasattr(estimator, "predict_objective_std"):
        sd = np.asarray(estimator.predict_objective_std(Xq, w), dtype=float).ravel()
        z = float(norm.ppf(0.5 + level / 2))
        out.update(
            lower=(mean - z * sd).tolist(),
            upper=(mean + z * sd).tolist(),
            std=sd.tolist(),
            method="gp_posterior",
        )
        return out
    if refits is None:
        if X_train is None or Y_train is None or not n_boot:
            return out
        refits = bootstrap_refits(
            estimator, X_train, Y_train, n_boot, random_state, progress, **context
        )
    preds = [np.asarray(e.predict_objective(Xq, w), dtype=float).ravel() for e in refits]
    if len(preds) >= 2:
        # normal-approximation bootstrap: the refits' spread around the full-data prediction.
        # (A percentile interval of refits of a biased learner, e.g. trees on resamples with
        # duplicate runs, can exclude the prediction it is meant to qualify.)
        sd = np.array(preds).std(axis=0, ddof=1)
        z = float(norm.ppf(0.5 + level / 2))
        out.update(
            lower=(mean - z * sd).tolist(),
            upper=(mean + z * sd).tolist(),
            std=sd.tolist(),
            method=f"bootstrap({len(preds)}), normal",
        )
    return out


def recommend_one(
    estimator: MixingEstimator,
    constraints: Constraints | dict | None = None,
    prior: Any = None,
    objective_weights: Any = None,
    random_state: int = 0,
    *,
    domains: list[str] | None = None,
    X: Any = None,
    Y: Any = None,
    n_boot: int = 20,
    n_samples: int = PAPER_N_SAMPLES,
    top_k: int = PAPER_TOP_K,
    n_starts: int = 4,
    refine: bool = False,
    trust_region: float | None = None,
    reference: dict[str, Any] | None = None,
    robust: bool | None = None,
    allow_extrapolation: bool = False,
    prior_label: str = "prior",
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Best single mixture under ``constraints`` according to a fitted ``estimator``.

    Parameters
    ----------
    constraints : :class:`Constraints` or its dict. prior : mixture (list or ``{domain: w}``);
        default the token share of ``constraints.token_counts``, else uniform.
    objective_weights : weights over the estimator's targets (default: their mean).
    X, Y : training runs (at the fit's scale), for bootstrap intervals of non-GP estimators
        (``n_boot`` refits), the share of refits still beating the baseline, the robust
        recommendation, the support check and ``trust_region``.
    n_samples, top_k : RegMix's simulation size and averaged top-k (tree estimators).
    refine : trees: local refinement around the top-k average (off: the paper's answer).
    trust_region : keep each weight at most this much above the largest weight a run gave
        that domain (needs ``X``).
    reference : a baseline to beat, ``{"mixture", "tolerance", "label"}``: every objective
        metric predicted no worse than the reference's (:mod:`mixopt.mixing.reference`).
    robust : recommend the average of the ``n_boot`` bootstrap refits' argmins
        (:mod:`mixopt.mixing.robust`; each searched within the runs' support unless
        ``allow_extrapolation`` or ``trust_region``) instead of the fit's own argmin; None: the
        default
        (``ROBUST_BY_DEFAULT``, for smooth estimators when the runs and ``n_boot >= 2`` are
        given; trees keep RegMix's top-k average).
    allow_extrapolation : accept a weight beyond :func:`mixopt.mixing.robust.support_bound`
        (refused with :class:`~mixopt.mixing.robust.OffSupportError` otherwise, unless a
        ``trust_region`` bounds the search).
    prior_label : what the prior is (``"natural"`` when the caller passes the token shares):
        the baseline the survival share is measured against when no ``reference`` is given.
    progress : called between the optimisations and the bootstrap refits.

    Returns
    -------
    dict: ``mixture`` (list), ``mixture_by_domain``, ``predicted_objective``, ``interval``
    (``[lower, upper]`` or None) and ``interval_method``, ``unconstrained_mixture`` and
    ``unconstrained_objective`` (same objective, simplex only), ``binding`` (names like
    ``"cap:<domain>"``), ``kl_to_prior``, ``strategy``, ``extrapolation`` (see the module
    docstring), ``survival`` (:func:`mixopt.mixing.robust.survival`), ``robust`` (the plain
    argmin and the refits' spread, when ``robust``) and ``explanation``.
    """
    estimator.check_is_fitted()
    c = constraints if isinstance(constraints, Constraints) else Constraints.from_dict(constraints)
    names = domain_names(estimator, domains)
    p = prior_vector(prior, c, names)
    lo, hi = c.feasible_bounds(names)
    K = len(names)
    Xs = None if X is None else np.atleast_2d(np.asarray(X, dtype=float))
    hi, hi_u = _trust_region(trust_region, Xs, lo, hi, K)
    kw = dict(
        prior=p,
        objective_weights=objective_weights,
        kl_weight=float(c.kl_weight or 0.0),
        random_state=random_state,
        n_samples=n_samples,
        top_k=top_k,
        n_starts=n_starts,
        refine=refine,
    )
    groups = c.group_system(names)
    if groups and trust_region is not None:
        hierarchy.check_feasible(lo, hi, groups)
    proj = feasible(lo, hi, groups or None)

    def argmin(est: Any) -> np.ndarray:
        w = c.project(find_optimum(est, lo, hi, groups=groups or None, **kw), names)
        return proj(w) if trust_region is not None else w

    report(progress, 0.0, "optimising under the constraints")
    w = argmin(estimator)
    can_refit = Xs is not None and Y is not None and int(n_boot) > 0
    refits, robust_report = None, None
    if robust is not False and can_refit:
        w, refits, robust_report = _robust_step(
            estimator,
            w,
            robust,
            Xs,
            Y,
            n_boot=int(n_boot),
            random_state=random_state,
            argmin=argmin,
            bounds=(lo, hi, groups),
            project=lambda v, h: c.project(feasible(lo, h, groups or None)(v), names),
            search=lambda est, h: c.project(
                find_optimum(est, lo, h, groups=groups or None, **kw), names
            ),
            bounded=not allow_extrapolation and trust_region is None,
            objective_weights=objective_weights,
            progress=progress,
        )
    elif robust:
        raise ValueError("robust needs the fit's runs and n_boot >= 2")
    ref_report = None
    if reference is not None:
        report(progress, 0.5, "optimising against the reference")
        w, ref_report = against_reference(
            estimator,
            c,
            names,
            w,
            reference,
            lo=lo,
            hi=hi,
            groups=groups,
            X=X,
            Y=Y,
            n_boot=min(int(n_boot), 20),
            **kw,
        )
    if not allow_extrapolation and trust_region is None:
        check_support(w, Xs, names)
    if refits is None and can_refit:
        refits = bootstrap_refits(
            estimator, Xs, Y, n_boot, random_state, scaled(progress, 0.5, 0.8)
        )
    report(progress, 0.8, "unconstrained optimum")
    w_u = project_box_simplex(find_optimum(estimator, np.zeros(K), hi_u, **kw), np.zeros(K), hi_u)
    ow = _weights(objective_weights)
    f = float(np.ravel(estimator.predict_objective(w[None], ow))[0])
    f_u = float(np.ravel(estimator.predict_objective(w_u[None], ow))[0])
    iv = predict_with_interval(
        estimator, w[None], objective_weights=objective_weights, n_boot=n_boot, refits=refits
    )
    interval = None if iv["lower"] is None else [iv["lower"][0], iv["upper"][0]]
    if reference is not None:
        base, against = (
            _as_vector(reference["mixture"], names),
            (f"reference {reference.get('label') or ''}".strip()),
        )
    else:
        base, against = p, prior_label
    surv = survival(refits or [], estimator, w, base, ow, against, interval)
    if robust_report is not None:
        plain = np.asarray(robust_report["plain_mixture"])
        robust_report["plain_share_beating"] = survival(
            refits or [], estimator, plain, base, ow, against, None
        )["share_beating"]
    binding = c.binding(w, names)
    if trust_region is not None:
        binding += [
            f"trust_region:{names[i]}"
            for i in range(K)
            if hi[i] < 1.0 and w[i] >= hi[i] - 1e-6 and f"cap:{names[i]}" not in binding
        ]
    strategy = _strategy(estimator, n_samples, top_k, refine, robust_report)
    extrapolation = support_check(w, f, Xs, Y, ow, names)
    expl = _explain(
        estimator, f, f_u, w, names, strategy, interval, iv["method"], binding, c, ref_report
    )
    expl += _explain_survival(surv)
    if extrapolation and extrapolation["flag"]:
        expl += " EXTRAPOLATION: " + "; ".join(extrapolation["reasons"]) + "."
    report(progress, 1.0, "recommended")
    return {
        "extrapolation": extrapolation,
        "mixture": w.tolist(),
        "mixture_by_domain": {d: float(x) for d, x in zip(names, w, strict=True)},
        "predicted_objective": f,
        "interval": interval,
        "interval_method": iv["method"],
        "std": None if iv["std"] is None else iv["std"][0],
        "unconstrained_mixture": w_u.tolist(),
        "unconstrained_objective": f_u,
        "binding": binding,
        "group_totals": _group_totals(w, names, c),
        "reference": ref_report,
        "survival": surv,
        "robust": robust_report,
        "kl_to_prior": float(kl_divergence(w, p)[0]),
        "strategy": strategy,
        "explanation": expl,
    }


def _robust_step(
    estimator: Any,
    w: np.ndarray,
    robust: bool | None,
    Xs: Any,
    Y: Any,
    *,
    n_boot: int,
    random_state: int,
    argmin: Any,
    bounds: tuple[np.ndarray, np.ndarray, Any],
    project: Any,
    search: Any,
    bounded: bool,
    objective_weights: Any,
    progress: ProgressFn | None,
) -> tuple[np.ndarray, list[Any] | None, dict[str, Any] | None]:
    """The robust recommendation (``robust`` True, or None and the default applies): the
    bootstrap refits, the mean of their argmins (each within the runs' support when
    ``bounded``) and its report; ``w`` unchanged (refits None) when the default does not apply
    (a tree, ``n_boot < 2``, fewer than 2 resamples that can be refitted)."""
    by_default = robust is None
    if by_default and not (ROBUST_BY_DEFAULT and n_boot >= 2 and estimator.smooth is True):
        return w, None, None
    if n_boot < 2:
        raise ValueError("robust needs the fit's runs and n_boot >= 2")
    refits = bootstrap_refits(estimator, Xs, Y, n_boot, random_state, scaled(progress, 0.05, 0.3))
    if by_default and len(refits) < 2:
        return w, refits, None
    lo, hi, groups = bounds
    hi_r = _support_box(lo, hi, groups, Xs) if bounded else None

    def argmin_r(est: Any) -> np.ndarray:
        if hi_r is None:
            return argmin(est)
        return feasible(lo, hi_r, groups or None)(search(est, hi_r))

    w_r, report_ = robust_mixture(
        refits,
        argmin_r,
        lambda v: project(v, hi if hi_r is None else hi_r),
        scaled(progress, 0.3, 0.5),
    )
    report_["within_support"] = hi_r is not None
    report_["plain_mixture"] = w.tolist()
    report_["plain_objective"] = float(
        np.ravel(estimator.predict_objective(w[None], _weights(objective_weights)))[0]
    )
    return w_r, refits, report_


def _support_box(lo: np.ndarray, hi: np.ndarray, groups: Any, Xs: Any) -> np.ndarray | None:
    """The upper bounds ``hi`` cut to the runs' support (:func:`support_bound`), None when the
    constraints cannot be met inside it (the support check then says so)."""
    h = np.minimum(hi, support_bound(Xs))
    if h.sum() < 1.0 - 1e-9 or np.any(lo > h + 1e-12):
        return None
    if groups:
        try:
            hierarchy.check_feasible(lo, h, groups)
        except (InfeasibleConstraintsError, ValueError):
            return None
    return h


def _trust_region(
    trust_region: float | None, Xs: np.ndarray | None, lo: np.ndarray, hi: np.ndarray, K: int
) -> tuple[np.ndarray, np.ndarray]:
    """The upper bounds under ``trust_region`` (constrained and unconstrained searches)."""
    if trust_region is None:
        return hi, np.ones(K)
    if Xs is None or Xs.shape[0] == 0:
        raise ValueError("trust_region needs the fit's runs")
    region = np.minimum(Xs.max(axis=0) + float(trust_region), 1.0)
    hi = np.minimum(hi, region)
    if hi.sum() < 1.0 - 1e-9 or np.any(lo > hi + 1e-12):
        raise InfeasibleConstraintsError(
            f"trust_region {trust_region:g}: the weights the runs tried (+ {trust_region:g}) "
            "cannot sum to 1 under the constraints; widen trust_region"
        )
    return hi, region


def _strategy(estimator, n_samples, top_k, refine, robust_report) -> str:
    s = (
        "slsqp multi-start on f(w) + lambda KL(w||prior)"
        if estimator.smooth
        else f"RegMix simulation: {n_samples} Dirichlet(prior) samples, mean of top {top_k}"
        + (", local refinement" if refine else "")
    )
    if robust_report is not None:
        s += f"; robust: {robust_report['method']}"
    return s


def _explain(estimator, f, f_u, w, names, strategy, interval, method, binding, c, ref_report):
    cost = f - f_u
    expl = (
        f"{getattr(estimator, 'name', type(estimator).__name__)} predicts objective {f:.4f} for "
        f"the recommended mixture ({strategy})."
    )
    if interval is not None:
        expl += f" 95% interval [{interval[0]:.4f}, {interval[1]:.4f}] ({method})."
    if binding:
        expl += (
            f" Binding constraints: {', '.join(binding)}; they cost {cost:+.4f} in predicted "
            f"objective versus the unconstrained optimum ({f_u:.4f})."
        )
    else:
        expl += f" No constraint binds (unconstrained optimum predicts {f_u:.4f})."
    if c.kl_weight:
        expl += f" KL pull to the prior: lambda = {c.kl_weight:g}."
    top = np.argsort(-w)[:3]
    expl += " Largest weights: " + ", ".join(f"{names[i]} {w[i]:.3f}" for i in top) + "."
    if ref_report is not None:
        expl += (
            " Against the "
            f"reference{' ' + str(ref_report['label']) if ref_report.get('label') else ''}: "
            + (
                f"predicted objective gain {ref_report['objective_gain']:+.4f}, no metric "
                "predicted worse."
                if ref_report["status"] == "improves"
                else f"NO IMPROVEMENT POSSIBLE: {ref_report['reason']}."
            )
        )
    return expl


def _explain_survival(s: dict[str, Any]) -> str:
    out = f" Predicted gain over {s['against']}: {s['predicted_gain']:+.4f}"
    if s["gain_within_interval"]:
        out += " (INSIDE the interval: not distinguishable from no gain)"
    out += "."
    if s["share_beating"] is not None:
        out += (
            f" Still predicted to beat {s['against']} under {s['share_beating']:.0%} of "
            f"{s['n_refits']} bootstrap refits."
        )
    return out


def _group_totals(w: np.ndarray, names: list[str], c: Constraints) -> dict[str, float] | None:
    """Each group's total weight (:mod:`mixopt.mixing.hierarchy`), None for flat domains."""
    out = hierarchy.group_totals(dict(zip(names, map(float, w), strict=True)), c.group_of)
    return out or None


def support_check(
    w: np.ndarray,
    predicted: float,
    X: np.ndarray | None,
    Y: Any,
    objective_weights: Any,
    names: list[str],
) -> dict[str, Any] | None:
    """How far ``w`` (predicted ``predicted``) lies outside the runs' support (module docstring)."""
    if X is None or X.shape[0] == 0:
        return None
    excess = w - X.max(axis=0)
    over = {
        names[i]: float(excess[i])
        for i in range(len(names))
        if excess[i] > EXTRAPOLATION_WEIGHT_TOL
    }
    reasons = [
        f"{d} at {w[names.index(d)]:.3f}, {e:.3f} above the largest weight any run gave it"
        for d, e in sorted(over.items(), key=lambda kv: -kv[1])
    ]
    below = None
    if Y is not None:
        Ya = np.asarray(Y, dtype=float)
        Ya = Ya[:, None] if Ya.ndim == 1 else Ya
        y = Objective.parse(objective_weights).reduce(Ya)
        if y.size:
            below = float(y.min() - predicted)
            span = float(np.ptp(y)) if y.size > 1 else 0.0
            if below > EXTRAPOLATION_LOSS_FRACTION * max(span, 1e-6):
                reasons.append(
                    f"predicted objective {predicted:.4g} is {below:.4g} "
                    f"below the best run's {y.min():.4g} "
                    f"(more than {EXTRAPOLATION_LOSS_FRACTION:.0%} of the runs' range {span:.4g})"
                )
    return {
        "flag": bool(reasons),
        "reasons": reasons,
        "max_weight_excess": float(max(excess.max(), 0.0)),
        "weight_excess": over,
        "below_best_observed": below,
    }
