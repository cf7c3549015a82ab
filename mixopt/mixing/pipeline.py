"""The science's front door: pure functions, JSON-able in and out.

Fit an estimator at a scale with cross-validation and a trust verdict, predict, recommend,
suggest the next runs, the training-free baselines, and the estimator catalogue. Nothing here
touches a database or a broker: a caller (a worker task, a notebook) loads runs, calls one of
these and keeps the returned dict. Undefined metrics are ``None`` (never NaN), so the results
are strict JSON.

Estimators differ in how they reach a target scale, how their fidelity is measured and
whether they select among others; each declares it (the capabilities of
:class:`~mixopt.mixing.base.MixingEstimator`: ``scale_handling``, ``fidelity_protocol``,
``selects_estimator``, ``predicts_at_steps`` and the hooks beside them), so nothing here
tests an estimator's name.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mixopt.mixing import baselines
from mixopt.mixing.base import ESTIMATORS, MixingEstimator, _jsonable, get_estimator
from mixopt.mixing.constraints import Constraints
from mixopt.mixing.design import suggest_next
from mixopt.mixing.fidelity import cross_validate, fidelity_metrics
from mixopt.mixing.mde import attach_experts
from mixopt.mixing.nested import (
    ScaleError,
    chain_interval,
    chain_sd,
    cross_scale_validate,
    describe_scale,
    prepare_at_scale,
)
from mixopt.mixing.objective import Objective
from mixopt.mixing.optimize import predict_with_interval
from mixopt.mixing.optimize import recommend as _recommend
from mixopt.mixing.trust import assess
from mixopt.progress import ProgressFn, report, scaled

__all__ = [
    "RECOMMEND_OPTIONS",
    "ScaleError",
    "baseline_mixtures",
    "estimator_catalogue",
    "fit_estimator",
    "predict",
    "predict_interval",
    "recommend",
    "suggest",
    "validate_params",
]

#: options of a recommendation (validated like estimator parameters)
RECOMMEND_OPTIONS = {
    "n_samples": ("int", 1000, 1_000_000, "trees: Dirichlet samples simulated (paper: 100,000)"),
    "top_k": ("int", 1, 100_000, "trees: best samples averaged (paper: 128)"),
    "refine": (
        "bool",
        None,
        None,
        "trees: local refinement around the top-k average (off: the paper's answer)",
    ),
    "n_starts": ("int", 1, 64, "smooth estimators: SLSQP starts"),
    "trust_region": (
        "float",
        0.0,
        1.0,
        "keep each weight at most this much above the largest weight a run gave it",
    ),
    "robust": ("bool", None, None, "recommend the average of the bootstrap refits' argmins"),
    "allow_extrapolation": (
        "bool",
        None,
        None,
        "accept weights beyond the runs' support (refused otherwise)",
    ),
}

_SCALE_KEYS = ("model_params", "steps", "tokens", "curves")


def estimator_catalogue() -> list[dict[str, Any]]:
    """Every registered estimator with its documented parameters (``GET /v1/estimators``)."""
    out = []
    for name in sorted(ESTIMATORS):
        cls = ESTIMATORS[name]
        doc = (cls.__doc__ or "").strip().splitlines()
        rule = (
            "K + 2 distinct mixtures (K domains)"
            if cls.required_runs(1) != cls.min_runs
            else f"{cls.min_runs}"
        )
        out.append(
            {
                "name": name,
                "summary": doc[0] if doc else "",
                "min_runs": int(cls.min_runs),
                "min_runs_rule": rule,
                "smooth": bool(cls.smooth) if isinstance(cls.smooth, bool) else None,
                "params": cls.describe_params(),
            }
        )
    return out


def validate_params(name: str, params: dict | None) -> list[str]:
    """Reasons why ``params`` of estimator ``name`` are refused (empty when valid)."""
    if name not in ESTIMATORS:
        return [f"unknown estimator {name!r}; available: {sorted(ESTIMATORS)}"]
    return ESTIMATORS[name].validate_params(params)


def _clean(obj: Any) -> Any:
    obj = _jsonable(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def _finite(v: Any) -> list[float]:
    if v is None:
        return []
    a = np.asarray(
        [np.nan if x is None else x for x in np.asarray(v, dtype=object).ravel()], dtype=float
    )
    return [float(x) for x in a if np.isfinite(x)]


def _scale_kw(ctx: dict) -> dict:
    return {k: ctx.get(k) for k in _SCALE_KEYS}


# -- fit ---------------------------------------------------------------------------------------
@dataclass
class _Prepared:
    """The data the estimator is fitted on, at the scale it answers at."""

    X: np.ndarray
    Y: np.ndarray
    groups: Any
    context: dict[str, Any]
    scale: dict[str, Any]
    chain: list[dict[str, Any]]
    extrapolated: bool
    native: bool
    cross_scale_reason: str | None = None
    notes: list[str] = field(default_factory=list)


def _prepare(
    cls: type[MixingEstimator],
    params: dict[str, Any],
    X: np.ndarray,
    Y: np.ndarray,
    targets: list[str],
    target_scale: dict | None,
    random_state: int,
    progress: ProgressFn | None,
    context: dict[str, Any],
) -> _Prepared:
    """Reach the answering scale: natively (``scale_handling == "native_steps"``) or through
    the nested steps and size laws (:func:`~mixopt.mixing.nested.prepare_at_scale`)."""
    scale_ctx = {k: context.get(k) for k in _SCALE_KEYS}
    native = None
    if cls.scale_handling == "native_steps":
        native = cls.native_target(target_scale, context.get("model_params"))
    if native is not None:
        for k, v in native.params.items():
            params.setdefault(k, v)
        return _Prepared(
            X,
            Y,
            None,
            {k: v for k, v in scale_ctx.items() if v is not None},
            dict(native.scale),
            list(native.chain),
            True,
            True,
            native.cross_scale_reason,
        )
    prep = prepare_at_scale(
        X,
        Y,
        targets=targets,
        target_scale=target_scale,
        random_state=random_state,
        progress=scaled(progress, 0.0, 0.3),
        **_scale_kw(scale_ctx),
    )
    notes = list(prep.notes)
    if prep.extrapolated:
        notes.append(
            f"answers at {describe_scale(prep.scale)}: the estimator is fitted on "
            f"{prep.X.shape[0]} mixtures' losses extrapolated by the scaling laws"
        )
    return _Prepared(
        prep.X,
        prep.Y,
        prep.groups,
        {k: v for k, v in prep.context.items() if v is not None},
        prep.scale,
        list(prep.chain),
        prep.extrapolated,
        False,
        notes=notes,
    )


def _cross_scale_fn(
    prep: _Prepared,
    X: np.ndarray,
    Y: np.ndarray,
    *,
    domains: list[str],
    targets: list[str],
    wv: np.ndarray,
    random_state: int,
    context: dict[str, Any],
) -> Callable[[MixingEstimator], dict[str, Any]] | None:
    """ "Fit on the smaller, predict the largest" on the raw runs, when they span sizes or
    budgets (or the fit extrapolates from curves); None when there is nothing to test."""
    raw_sizes = set(_finite(context.get("model_params")))
    raw_budgets = set(_finite(context.get("steps"))) or set(_finite(context.get("tokens")))
    has_curves = bool(context.get("curves")) and any(context.get("curves") or [])
    spans = len(raw_sizes) > 1 or len(raw_budgets) > 1 or (prep.extrapolated and has_curves)
    if prep.native or not spans:
        return None
    cache: dict = {}

    def cross_fn(candidate: MixingEstimator) -> dict[str, Any]:
        def fit_predict(Xc: np.ndarray, Yc: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
            e = candidate.clone().fit(Xc, Yc, domains=list(domains), targets=targets)
            return lambda Z: e.predict_objective(Z, wv)

        try:
            return cross_scale_validate(
                fit_predict,
                X,
                Y,
                targets=targets,
                objective_weights=wv,
                random_state=random_state,
                _prepared=cache,
                **_scale_kw(context),
            )
        except (ValueError, np.linalg.LinAlgError) as exc:
            return {"status": "untested", "reason": f"extrapolation untested: {exc}"}

    return cross_fn


def _cross_validate(
    est: MixingEstimator,
    prep: _Prepared,
    ctx: dict[str, Any],
    w: np.ndarray | None,
    cv_folds: int,
    random_state: int,
    progress: ProgressFn | None,
    notes: list[str],
) -> dict[str, Any] | None:
    """Same-scale CV grouped by mixture (``nested_cv``: the selection inside each fold; a
    selecting estimator that computed it from its own fits, with this fit's folds and seed,
    hands it over as ``nested_cv_`` instead of being refitted in every fold)."""
    own = getattr(est, "nested_cv_", None)
    params = est.get_params()
    if (
        own is not None
        and params.get("cv_folds") == cv_folds
        and params.get("random_state") == random_state
    ):
        cv = dict(own, nested=True)
        summary = est.selection_summary()
        if summary:
            notes.append(summary)
        return cv
    n = prep.X.shape[0]
    need = type(est).cv_runs_needed(prep.X.shape[1])
    if n < need:
        notes.append(
            f"too few runs for {cv_folds}-fold CV of {est.name} ({n}, needs {need}); "
            "fidelity not computed"
        )
        return None
    try:
        cv = cross_validate(
            est.cv_estimator(cv_folds),
            prep.X,
            prep.Y,
            objective_weights=w,
            n_folds=cv_folds,
            random_state=random_state,
            groups=prep.groups,
            progress=scaled(progress, 0.6, 0.9),
            **ctx,
        )
    except (ValueError, np.linalg.LinAlgError) as exc:
        notes.append(f"cross-validation failed: {exc}")
        return None
    if est.fidelity_protocol == "nested_cv":
        cv["nested"] = True
        summary = est.selection_summary()
        if summary:
            notes.append(summary)
    return cv


def _cross_scale(
    est: MixingEstimator,
    prep: _Prepared,
    cross_fn: Callable[[MixingEstimator], dict[str, Any]] | None,
) -> dict[str, Any]:
    selected = est.selected_cross_scale()
    if selected is not None:
        return selected
    if cross_fn is not None:
        return cross_fn(est.final_estimator())
    if prep.cross_scale_reason:
        return {"status": "untested", "reason": prep.cross_scale_reason}
    return {"status": "untested", "reason": "extrapolation untested: runs have one scale"}


def fit_estimator(
    name: str,
    params: dict | None,
    X: Any,
    Y: Any,
    *,
    domains: list[str],
    targets: list[str] | None = None,
    objective_weights: Any = None,
    cv_folds: int = 5,
    random_state: int = 0,
    target_scale: dict | None = None,
    progress: ProgressFn | None = None,
    **context: Any,
) -> dict[str, Any]:
    """Fit ``name`` to answer at a scale, cross-validate it and say how far to trust it.

    The scale (:mod:`mixopt.mixing.nested`): the runs' own when they share one and no
    ``target_scale`` is given; else ``target_scale``, reached through the steps and size laws
    (the nested pipeline) before the estimator is fitted on the extrapolated losses; an
    estimator with ``scale_handling = "native_steps"`` (BiMix) evaluates at a target step
    natively. Runs of several scales without a target raise :class:`ScaleError`.

    Fidelity: same-scale CV with folds grouped by mixture (``fidelity_protocol = "nested_cv"``,
    ``auto``: the selection inside each fold, with the fit's ``cv_folds``/``random_state``);
    ``cross_scale``: "fit on the smaller, predict the largest" when the runs span sizes or
    budgets (a selecting estimator then selects on it if the target lies beyond the runs),
    else a plain "untested".

    Returns ``{"state", "fidelity", "timings", "notes", "scale", "scaling": {"chain",
    "cross_scale", "extrapolated", "training"}, "trusted", "trust_reasons"}``. ``progress``
    gets the fraction done and may raise :class:`mixopt.progress.Cancelled`.
    """
    X = np.asarray(X, dtype=float)
    Y = np.asarray(Y, dtype=float)
    if Y.ndim == 1:
        Y = Y[:, None]
    targets = list(targets) if targets is not None else [f"t{i}" for i in range(Y.shape[1])]
    objective = Objective.parse(objective_weights, targets=targets, n_targets=Y.shape[1])
    w, wv = objective.explicit, objective.vector(Y.shape[1])
    if name not in ESTIMATORS:
        raise KeyError(f"unknown estimator {name!r}; known: {sorted(ESTIMATORS)}")
    cls = ESTIMATORS[name]
    params = cls.pipeline_params(
        dict(params or {}), cv_folds=int(cv_folds), random_state=int(random_state)
    )
    t0 = time.perf_counter()
    prep = _prepare(cls, params, X, Y, targets, target_scale, random_state, progress, context)
    notes = prep.notes
    fctx = dict(prep.context)
    if context.get("token_counts") is not None:
        fctx["token_counts"] = context["token_counts"]
    if context.get("experts") is not None:  # MDE estimators (mixopt.mixing.mde)
        fctx["experts"] = context["experts"]
    ctx = dict(fctx, domains=list(domains), targets=targets)
    est = get_estimator(name, **params)
    cross_fn = _cross_scale_fn(
        prep,
        X,
        Y,
        domains=domains,
        targets=targets,
        wv=wv,
        random_state=random_state,
        context=context,
    )

    report(progress, 0.3, f"fitting {name}")
    extra = est.selection_context(
        objective_weights=w,
        groups=prep.groups,
        progress=scaled(progress, 0.3, 0.6),
        cross_scale_fn=cross_fn if prep.extrapolated else None,
    )
    est.fit(prep.X, prep.Y, **ctx, **extra)
    fit_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    report(progress, 0.6, "cross-validating")
    cv = _cross_validate(est, prep, ctx, w, cv_folds, random_state, progress, notes)
    notes += est.selection_notes()
    cv_s = time.perf_counter() - t1
    report(progress, 0.9, "cross-scale validation")
    cross = _cross_scale(est, prep, cross_fn)
    train_pred = np.ravel(est.predict_objective(prep.X, w))
    y_obs = prep.Y @ wv
    fm = fidelity_metrics(y_obs, train_pred) if np.all(np.isfinite(train_pred)) else {"mae": None}
    on = "extrapolated mixtures" if prep.extrapolated and not prep.native else "runs"
    prep.chain.append(
        {
            "law": est.law_label(),
            "on": f"{prep.X.shape[0]} {on}",
            "fit_mae": fm.get("mae"),
            "cv_mae": (cv or {}).get("pooled", {}).get("mae"),
            "params": est.law_summary(),
        }
    )
    trusted, reasons = assess(est, cv, y_obs, train_pred, cross, caveats=_caveats(X, prep))
    report(progress, 1.0, "fitted")
    training = (
        {"X": prep.X.tolist(), "Y": prep.Y.tolist()}
        if prep.extrapolated and not prep.native
        else None
    )
    scaling = {
        "chain": prep.chain,
        "cross_scale": cross,
        "extrapolated": bool(prep.extrapolated),
        "training": training,
    }
    return _clean(
        {
            "state": est.to_state(),
            "fidelity": cv,
            "timings": {"fit_s": fit_s, "cv_s": cv_s},
            "notes": notes,
            "scale": prep.scale,
            "scaling": scaling,
            "trusted": trusted,
            "trust_reasons": reasons,
        }
    )


def _caveats(X: np.ndarray, prep: _Prepared) -> list[str]:
    """What the scaling laws did to the runs, for the trust reasons: distinct mixtures left out,
    mixtures run at one size whose size effect is borrowed from the others."""
    if not prep.extrapolated or prep.native or X.shape[0] == 0:
        return []
    of = int(np.unique(np.round(X, 9), axis=0).shape[0])
    out = []
    if of > prep.X.shape[0]:
        out.append(
            f"{of - prep.X.shape[0]} of {of} mixtures were left out by the scaling laws: the "
            f"fit answers for the other {prep.X.shape[0]}"
        )
    one = sum(int(e.get("n_one_size") or 0) for e in prep.chain if e.get("law") == "size")
    if one:
        out.append(
            f"{one} of {of} mixtures were run at one model size only: their losses at the "
            "target borrow the size effect of the others"
        )
    return out


# -- use a fit ---------------------------------------------------------------------------------
def predict(
    state: dict,
    X: Any,
    objective_weights: Any = None,
    steps: float | None = None,
    experts: Any = None,
) -> dict[str, Any]:
    """Per-target predictions, the objective and (when the estimator has one) its std.
    ``steps``: estimators whose law is in steps only (``predicts_at_steps``: BiMix), the step
    to evaluate at. ``experts``: the :class:`~mixopt.mixing.mde.ExpertProbs` an MDE fit was
    made with (ignored by other estimators)."""
    est = attach_experts(MixingEstimator.from_state(state), experts)
    Xq = np.atleast_2d(np.asarray(X, dtype=float))
    if steps is not None:
        if not est.predicts_at_steps:
            raise ValueError("steps: only BiMix evaluates at another step")
        P = np.atleast_2d(est.predict(Xq, steps=float(steps)))  # type: ignore[call-arg]
    else:
        P = np.atleast_2d(est.predict(Xq))
    objective = Objective.parse(
        objective_weights, targets=getattr(est, "targets_", None), n_targets=P.shape[1]
    )
    out: dict[str, Any] = {
        "predictions": P.tolist(),
        "objective": objective.reduce(P).tolist(),
        "std": None,
        "objective_std": None,
    }
    if hasattr(est, "predict_objective_std") and steps is None:
        out["std"] = est.predict_std(Xq).tolist()  # type: ignore[attr-defined]  # with predict_objective_std
        out["objective_std"] = np.ravel(est.predict_objective_std(Xq, objective.explicit)).tolist()
    return _clean(out)


def recommend(
    state: dict,
    constraints: dict | None,
    prior: Any = None,
    objective_weights: Any = None,
    X: Any = None,
    Y: Any = None,
    n_boot: int = 20,
    random_state: int = 0,
    domains: list[str] | None = None,
    scaling: dict | None = None,
    progress: ProgressFn | None = None,
    fidelity: dict | None = None,
    experts: Any = None,
    **kw: Any,
) -> dict[str, Any]:
    """Recommendation (see :func:`mixopt.mixing.optimize.recommend`) from a stored fit
    (``experts``: the :class:`~mixopt.mixing.mde.ExpertProbs` of an MDE fit).

    ``scaling`` is the fit's (``fit_estimator``'s ``scaling``): when the fit answers at a target
    scale through the scaling laws, the bootstrap and the support checks use the extrapolated
    losses the estimator was fitted on, not the proxies' own, and the recommendation's interval
    is the whole chain's (:func:`chain_estimator_sd`, ``interval_method: "chain"``) from the
    fit's ``fidelity``: the estimator's bootstrap interval alone knows nothing of the laws'
    error. ``kw``: ``trust_region``,
    ``n_samples``, ``top_k``, ``refine``, ``n_starts``, ``robust``, ``allow_extrapolation``,
    ``prior_label`` (and ``reference``, ``phases``); an off-support recommendation raises
    :class:`~mixopt.mixing.robust.OffSupportError`.
    Bootstraps refit the chosen estimator only (for ``auto``, the one it kept). ``progress``
    may raise ``Cancelled``.
    """
    training = (scaling or {}).get("training")
    if training:
        X, Y = training["X"], training["Y"]
    est = attach_experts(MixingEstimator.from_state(state), experts)
    P = np.atleast_2d(est.predict(np.full((1, est.n_domains_), 1.0 / est.n_domains_)))
    w = Objective.parse(
        objective_weights, targets=getattr(est, "targets_", None), n_targets=P.shape[1]
    ).explicit
    if domains is None and getattr(est, "domains_", None) is None:
        domains = getattr(est.final_estimator(), "domains_", None)
    kw = {k: v for k, v in kw.items() if v is not None}
    rec = _recommend(
        est,
        Constraints.from_dict(constraints),
        prior,
        w,
        random_state,
        domains=domains,
        X=X,
        Y=Y,
        n_boot=n_boot,
        progress=progress,
        **kw,
    )
    rel = chain_sd(scaling)
    if rel is not None and rec.get("predicted_objective") is not None:
        level = 0.95  # the level of the estimator's own interval (predict_with_interval)
        own = rec.get("std") or 0.0  # the GP posterior's or the bootstrap refits' sd
        lo, hi, sd = chain_interval(
            [rec["predicted_objective"]], rel, chain_estimator_sd(own, fidelity), level
        )
        rec.update(
            interval=[float(lo[0]), float(hi[0])],
            interval_method="chain",
            interval_level=level,
            std=float(sd[0]),
            estimator_std=own,
        )
    return _clean(rec)


def chain_estimator_sd(own_sd: Any, fidelity: dict | None) -> Any:
    """The estimator's error at a target scale: the larger of its own sd (posterior or
    bootstrap) and its measured CV error (``fidelity``'s pooled MAE as a normal sd,
    ``sqrt(pi/2) x MAE``). A posterior fitted on extrapolated losses knows nothing of the
    error of the laws that made them."""
    own = np.asarray(own_sd if own_sd is not None else 0.0, dtype=float)
    mae = ((fidelity or {}).get("pooled") or {}).get("mae")
    return np.maximum(own, math.sqrt(math.pi / 2) * float(mae)) if mae else own


def predict_interval(
    state: dict,
    X: Any,
    objective_weights: Any = None,
    X_train: Any = None,
    Y_train: Any = None,
    n_boot: int = 20,
    *,
    scaling: dict | None = None,
    fidelity: dict | None = None,
    level: float = 0.95,
    experts: Any = None,
) -> dict[str, Any]:
    """Predicted objective with an interval (:func:`mixopt.mixing.solve.predict_with_interval`).

    A fit that answers at a target scale through the scaling laws (its ``scaling`` given) gets
    the interval of the whole chain (:func:`mixopt.mixing.nested.chain_interval`): the laws'
    relative sd (``chain_rel_sd``) and the estimator's own error in quadrature, the latter the
    larger of its posterior sd (or the bootstrap sd of refits on ``X_train``/``Y_train``) and
    its CV error (``fidelity``'s pooled MAE as a sd, ``sqrt(pi/2) x MAE``); ``method`` is
    ``"chain"``. Calibrated on ``bench/transfer.py`` (leave the largest size out).
    """
    est = attach_experts(MixingEstimator.from_state(state), experts)
    out = predict_with_interval(
        est,
        X,
        objective_weights=objective_weights,
        X_train=X_train,
        Y_train=Y_train,
        n_boot=n_boot,
        level=level,
    )
    rel = chain_sd(scaling)
    if rel is not None:
        own = np.asarray(out["std"], dtype=float) if out.get("std") is not None else 0.0
        lo, hi, sd = chain_interval(out["mean"], rel, chain_estimator_sd(own, fidelity), level)
        out.update(lower=lo.tolist(), upper=hi.tolist(), std=sd.tolist(), method="chain")
        out["level"] = level
    return _clean(out)


def suggest(
    count: int,
    *,
    domains: list[str],
    prior: Any,
    constraints: dict | None = None,
    X: Any = None,
    y: Any = None,
    random_state: int = 0,
) -> list[list[float]]:
    """Next mixtures to run: a RegMix swarm without runs, GP expected improvement with runs."""
    c = Constraints.from_dict(constraints) if constraints else None
    if isinstance(prior, dict):
        prior = [float(prior.get(d, 0.0)) for d in domains]
    out = suggest_next(
        int(count),
        X,
        y,
        constraints=c,
        prior=prior,
        random_state=random_state,
        domains=list(domains),
    )
    return np.asarray(out, dtype=float).tolist()


def baseline_mixtures(token_counts: Any, constraints: dict | None = None) -> dict[str, list[float]]:
    """Training-free baselines (natural, uniform, temperature, UniMax) from
    :mod:`mixopt.mixing.baselines`; the epoch-capped ones need ``target_tokens`` and
    ``max_epochs`` in ``constraints`` (UniMax is left out without them)."""
    c = Constraints.from_dict(constraints)
    if isinstance(token_counts, dict):
        counts = np.array(list(token_counts.values()), dtype=float)
    else:
        counts = np.asarray(token_counts, dtype=float)
    out = {
        "natural": baselines.natural_mixture(counts),
        "uniform": baselines.uniform_mixture(counts.size),
        "temperature": baselines.temperature_mixture(counts, 2.0),
    }
    epochs = c.max_epochs
    if c.target_tokens is not None and isinstance(epochs, (int, float, np.number)):
        out["temperature"] = baselines.temperature_mixture(
            counts, 2.0, c.target_tokens, float(epochs)
        )
        out["unimax"] = baselines.unimax_mixture(counts, c.target_tokens, float(epochs))
    return {k: np.asarray(v, dtype=float).tolist() for k, v in out.items()}
