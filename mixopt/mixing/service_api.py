"""The facade the service's worker tasks call: pure functions, JSON-able in and out.

Nothing here touches a database or a broker; a task loads runs, calls one of these and stores
the returned dict. Undefined metrics are ``None`` (never NaN) so the results are strict JSON.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from mixopt.mixing import baselines
from mixopt.mixing.base import ESTIMATORS, MixingEstimator, _jsonable, get_estimator
from mixopt.mixing.constraints import Constraints
from mixopt.mixing.design import suggest_next
from mixopt.mixing.fidelity import cross_validate, fidelity_metrics
from mixopt.mixing.nested import ScaleError, cross_scale_validate, describe_scale, prepare_at_scale
from mixopt.mixing.optimize import predict_with_interval
from mixopt.mixing.optimize import recommend as _recommend
from mixopt.mixing.trust import assess
from mixopt.progress import ProgressFn, report, scaled

__all__ = ["ScaleError", "estimator_catalogue", "fit_estimator", "predict", "recommend", "validate_params",
           "RECOMMEND_OPTIONS"]

#: folds of auto's selection inside each outer fold of its nested CV
NESTED_INNER_FOLDS = 3

#: options of a recommendation (validated like estimator parameters)
RECOMMEND_OPTIONS = {
    "n_samples": ("int", 1000, 1_000_000, "trees: Dirichlet samples simulated (paper: 100,000)"),
    "top_k": ("int", 1, 100_000, "trees: best samples averaged (paper: 128)"),
    "refine": ("bool", None, None, "trees: local refinement around the top-k average (off: the paper's answer)"),
    "n_starts": ("int", 1, 64, "smooth estimators: SLSQP starts"),
    "trust_region": ("float", 0.0, 1.0, "keep each weight at most this much above the largest weight a run gave it"),
}


def estimator_catalogue() -> list[dict[str, Any]]:
    """Every registered estimator with its documented parameters (``GET /v1/estimators``)."""
    out = []
    for name in sorted(ESTIMATORS):
        cls = ESTIMATORS[name]
        doc = (cls.__doc__ or "").strip().splitlines()
        out.append({"name": name, "summary": doc[0] if doc else "", "min_runs": int(cls.min_runs),
                    "min_runs_rule": "K + 2 distinct mixtures (K domains)" if cls.required_runs(1) != cls.min_runs
                    else f"{cls.min_runs}", "smooth": bool(cls.smooth) if isinstance(cls.smooth, bool) else None,
                    "params": cls.describe_params()})
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


def _weights(objective_weights: Any, targets: list[str] | None, n_targets: int) -> np.ndarray | None:
    if objective_weights is None:
        return None
    if isinstance(objective_weights, dict):
        if targets is None:
            raise ValueError("objective_weights given by name need target names")
        unknown = sorted(set(objective_weights) - set(targets))
        if unknown:
            raise ValueError(f"objective_weights: unknown target(s) {unknown}")
        return np.array([float(objective_weights.get(t, 0.0)) for t in targets])
    w = np.asarray(objective_weights, dtype=float).ravel()
    if w.size != n_targets:
        raise ValueError(f"objective_weights has {w.size} entries for {n_targets} targets")
    return w


def _bimix_native(name: str, target_scale: dict | None, context: dict) -> bool:
    """BiMix evaluates at the target step itself: one model size, a target in steps."""
    if name != "bimix" or not target_scale or not target_scale.get("train_steps"):
        return False
    sizes = {float(v) for v in np.asarray(context.get("model_params") if context.get("model_params") is not None
                                          else [], dtype=float) if np.isfinite(v)}
    tp = target_scale.get("model_params")
    return len(sizes) <= 1 and (tp is None or not sizes or np.isclose(float(tp), next(iter(sizes))))


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
    (the nested pipeline) before the estimator is fitted on the extrapolated losses; BiMix
    evaluates at a target step natively. Runs of several scales without a target raise
    :class:`ScaleError`.

    Fidelity: same-scale CV with folds grouped by mixture (``auto``: nested CV, the selection
    inside each fold, with the fit's ``cv_folds``/``random_state``); ``cross_scale``: "fit on
    the smaller, predict the largest" when the runs span sizes or budgets (``auto`` then
    selects on it if the target lies beyond the runs), else a plain "untested".

    Returns ``{"state", "fidelity", "timings", "notes", "scale", "scaling": {"chain",
    "cross_scale", "extrapolated", "training"}, "trusted", "trust_reasons"}``. ``progress``
    gets the fraction done and may raise :class:`mixopt.progress.Cancelled`.
    """
    X = np.asarray(X, dtype=float)
    Y = np.asarray(Y, dtype=float)
    if Y.ndim == 1:
        Y = Y[:, None]
    targets = list(targets) if targets is not None else [f"t{i}" for i in range(Y.shape[1])]
    w = _weights(objective_weights, targets, Y.shape[1])
    wv = w if w is not None else np.full(Y.shape[1], 1.0 / Y.shape[1])
    params = dict(params or {})
    if name == "auto":
        params.setdefault("cv_folds", int(cv_folds))
        params.setdefault("random_state", int(random_state))
    notes: list[str] = []
    t0 = time.perf_counter()
    scale_ctx = {k: context.get(k) for k in ("model_params", "steps", "tokens", "curves")}
    native = _bimix_native(name, target_scale, context)
    if native:
        params.setdefault("target_steps", float(target_scale["train_steps"]))
        scale = {"model_params": _one(context.get("model_params")), "train_steps": float(target_scale["train_steps"]),
                 "train_tokens": None}
        chain = [{"law": "bimix", "form": "L_i(r_i, s) = A_i / r_i^a_i (B_i / s^b_i + C_i)",
                  "note": f"BiMix evaluates at the target step {scale['train_steps']:g} natively (Ge et al. 2024, Eq. 1)"}]
        Xf, Yf, groups, fctx, extrapolated = X, Y, None, {k: v for k, v in scale_ctx.items() if v is not None}, True
    else:
        prep = prepare_at_scale(X, Y, targets=targets, target_scale=target_scale, random_state=random_state,
                                progress=scaled(progress, 0.0, 0.3), **_scale_kw(scale_ctx))
        scale, chain, extrapolated = prep.scale, list(prep.chain), prep.extrapolated
        Xf, Yf, groups = prep.X, prep.Y, prep.groups
        fctx = {k: v for k, v in prep.context.items() if v is not None}
        notes += prep.notes
        if extrapolated:
            notes.append(f"answers at {describe_scale(scale)}: the estimator is fitted on {Xf.shape[0]} "
                         "mixtures' losses extrapolated by the scaling laws")
    if context.get("token_counts") is not None:
        fctx["token_counts"] = context["token_counts"]
    ctx = dict(fctx, domains=list(domains), targets=targets)
    est = get_estimator(name, **params)

    # cross-scale validation on the raw runs ("fit on the smaller, predict the largest")
    cross: dict[str, Any] = {"status": "untested", "reason": "extrapolation untested: runs have one scale"}
    cache: dict = {}
    cross_fn = None
    raw_sizes = {float(v) for v in _finite(context.get("model_params"))}
    raw_budgets = {float(v) for v in _finite(context.get("steps"))} or {float(v) for v in _finite(context.get("tokens"))}
    has_curves = bool(context.get("curves")) and any(context.get("curves") or [])
    if not native and (len(raw_sizes) > 1 or len(raw_budgets) > 1 or (extrapolated and has_curves)):
        def cross_fn(candidate: MixingEstimator) -> dict[str, Any]:
            def fp(Xc, Yc):
                e = candidate.clone().fit(Xc, Yc, domains=list(domains), targets=targets)
                return lambda Z: e.predict_objective(Z, wv)
            try:
                return cross_scale_validate(fp, X, Y, targets=targets, objective_weights=wv,
                                            random_state=random_state, _prepared=cache, **_scale_kw(scale_ctx))
            except (ValueError, np.linalg.LinAlgError) as exc:
                return {"status": "untested", "reason": f"extrapolation untested: {exc}"}

    report(progress, 0.3, f"fitting {name}")
    if name == "auto":
        fit_ctx = dict(ctx, objective_weights=w, groups=groups, progress=scaled(progress, 0.3, 0.6))
        if extrapolated and cross_fn is not None:
            fit_ctx["cross_scale_fn"] = cross_fn
        est.fit(Xf, Yf, **fit_ctx)
    else:
        est.fit(Xf, Yf, **ctx)
    fit_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    report(progress, 0.6, "cross-validating")
    need = 2 * max(1, type(est).required_runs(Xf.shape[1]) if name != "auto" else 2)
    if Xf.shape[0] >= need or (name == "auto" and Xf.shape[0] >= 4):
        try:
            # auto: nested CV, the whole selection inside each outer fold; the inner selection
            # uses at most NESTED_INNER_FOLDS folds to bound the cost (outer: cv_folds)
            cv_est = est.clone().set_params(cv_folds=min(int(cv_folds), NESTED_INNER_FOLDS)) if name == "auto" else est
            cv = cross_validate(cv_est, Xf, Yf, objective_weights=w, n_folds=cv_folds, random_state=random_state,
                                groups=groups, progress=scaled(progress, 0.6, 0.9), **ctx)
            if name == "auto":
                cv["nested"] = True
                notes.append(f"auto chose {est.chosen_} by {'cross-scale' if est.criterion_ != 'cv' else 'CV'} "
                             "Spearman; its fidelity is a nested CV (the selection inside each outer fold)")
        except (ValueError, np.linalg.LinAlgError) as exc:
            cv = None
            notes.append(f"cross-validation failed: {exc}")
    else:
        cv = None
        notes.append(f"too few runs for {cv_folds}-fold CV of {name} ({Xf.shape[0]}, needs {need}); "
                     "fidelity not computed")
    if name == "auto":
        notes += [f"{r['name']}: {r['status']} spearman={r.get('spearman')} mae={r.get('mae')} {r.get('reason', '')}"
                  for r in est.table_]
    cv_s = time.perf_counter() - t1
    report(progress, 0.9, "cross-scale validation")
    if name == "auto" and est.criterion_ == "cross_scale":
        row = next(r for r in est.table_ if r["name"] == est.chosen_)
        cross = dict(row["cross_scale"], selection=True,
                     note="the chosen estimator's cross-scale score is also its selection score (optimistic)")
    elif cross_fn is not None:
        cross = cross_fn(est.estimator_ if name == "auto" else est)
    elif native:
        cross = {"status": "untested", "reason": "extrapolation untested: BiMix's step extrapolation is its own law"}
    train_pred = np.ravel(est.predict_objective(Xf, w))
    y_obs = Yf @ wv
    fm = fidelity_metrics(y_obs, train_pred) if np.all(np.isfinite(train_pred)) else {"mae": None}
    chain.append({"law": name if name != "auto" else f"auto -> {est.chosen_}",
                  "on": f"{Xf.shape[0]} {'extrapolated mixtures' if extrapolated and not native else 'runs'}",
                  "fit_mae": fm.get("mae"), "cv_mae": (cv or {}).get("pooled", {}).get("mae"),
                  "params": _law_summary(est)})
    trusted, reasons = assess(est, cv, y_obs, train_pred, cross)
    report(progress, 1.0, "fitted")
    scaling = {"chain": chain, "cross_scale": cross, "extrapolated": bool(extrapolated),
               "training": {"X": Xf.tolist(), "Y": Yf.tolist()} if extrapolated and not native else None}
    return _clean({"state": est.to_state(), "fidelity": cv, "timings": {"fit_s": fit_s, "cv_s": cv_s},
                   "notes": notes, "scale": scale, "scaling": scaling, "trusted": trusted,
                   "trust_reasons": reasons})


def _finite(v: Any) -> list[float]:
    if v is None:
        return []
    a = np.asarray([np.nan if x is None else x for x in np.asarray(v, dtype=object).ravel()], dtype=float)
    return [float(x) for x in a if np.isfinite(x)]


def _one(v: Any) -> float | None:
    vals = sorted(set(_finite(v)))
    return vals[0] if len(vals) == 1 else None


def _scale_kw(ctx: dict) -> dict:
    return {"model_params": ctx.get("model_params"), "steps": ctx.get("steps"), "tokens": ctx.get("tokens"),
            "curves": ctx.get("curves")}


def _law_summary(est: MixingEstimator) -> dict[str, Any] | None:
    """The final law's parameters for the chain (mixing law: c and t; others: by reference)."""
    inner = getattr(est, "estimator_", est)
    inner = getattr(inner, "law_", inner)
    if hasattr(inner, "log_c_") and hasattr(inner, "t_"):
        return {"form": "L_i(r) = c_i + exp(t_i . r)", "c": np.exp(inner.log_c_).tolist(), "t": inner.t_.tolist(),
                "at_bound": [bool(b) for b in getattr(inner, "at_bound_", [])]}
    if hasattr(inner, "A_") and hasattr(inner, "alpha_"):
        return {"form": "A_i / r_i^a_i (B_i / s^b_i + C_i)", "A": inner.A_.tolist(), "alpha": inner.alpha_.tolist(),
                "B": inner.B_.tolist(), "beta": inner.beta_.tolist()}
    return None


def predict(state: dict, X: Any, objective_weights: Any = None, steps: float | None = None) -> dict[str, Any]:
    """Per-target predictions, the objective and (when the estimator has one) its std.
    ``steps``: BiMix only, the step to evaluate at (its law is in steps)."""
    est = MixingEstimator.from_state(state)
    Xq = np.atleast_2d(np.asarray(X, dtype=float))
    if steps is not None:
        if state.get("estimator") != "bimix":
            raise ValueError("steps: only BiMix evaluates at another step")
        P = np.atleast_2d(est.predict(Xq, steps=float(steps)))
    else:
        P = np.atleast_2d(est.predict(Xq))
    w = _weights(objective_weights, getattr(est, "targets_", None), P.shape[1])
    wv = w if w is not None else np.full(P.shape[1], 1.0 / P.shape[1])
    out: dict[str, Any] = {"predictions": P.tolist(), "objective": (P @ wv).tolist(),
                           "std": None, "objective_std": None}
    if hasattr(est, "predict_objective_std") and steps is None:
        out["std"] = est.predict_std(Xq).tolist()
        out["objective_std"] = np.ravel(est.predict_objective_std(Xq, w)).tolist()
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
    **kw: Any,
) -> dict[str, Any]:
    """Recommendation (see :func:`mixopt.mixing.optimize.recommend`) from a stored fit.

    ``scaling`` is the fit's (``fit_estimator``'s ``scaling``): when the fit answers at a target
    scale through the scaling laws, the bootstrap and the support checks use the extrapolated
    losses the estimator was fitted on, not the proxies' own. ``kw``: ``trust_region``,
    ``n_samples``, ``top_k``, ``refine``, ``n_starts``. Bootstraps refit the chosen estimator
    only (for ``auto``, the one it kept). ``progress`` may raise ``Cancelled``.
    """
    training = (scaling or {}).get("training")
    if training:
        X, Y = training["X"], training["Y"]
    est = MixingEstimator.from_state(state)
    P = np.atleast_2d(est.predict(np.full((1, est.n_domains_), 1.0 / est.n_domains_)))
    w = _weights(objective_weights, getattr(est, "targets_", None), P.shape[1])
    if domains is None and getattr(est, "domains_", None) is None and hasattr(est, "estimator_"):
        domains = getattr(est.estimator_, "domains_", None)
    kw = {k: v for k, v in kw.items() if v is not None}
    return _clean(_recommend(est, Constraints.from_dict(constraints), prior, w, random_state,
                             domains=domains, X=X, Y=Y, n_boot=n_boot, progress=progress, **kw))


def predict_interval(state: dict, X: Any, objective_weights: Any = None, X_train: Any = None,
                     Y_train: Any = None, n_boot: int = 20) -> dict[str, Any]:
    est = MixingEstimator.from_state(state)
    return _clean(predict_with_interval(est, X, objective_weights=objective_weights, X_train=X_train,
                                        Y_train=Y_train, n_boot=n_boot))


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
    out = suggest_next(int(count), X, y, constraints=c, prior=prior, random_state=random_state, domains=list(domains))
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
    if c.target_tokens is not None and epochs is not None and np.isscalar(epochs):
        out["temperature"] = baselines.temperature_mixture(counts, 2.0, c.target_tokens, float(epochs))
        out["unimax"] = baselines.unimax_mixture(counts, c.target_tokens, float(epochs))
    return {k: np.asarray(v, dtype=float).tolist() for k, v in out.items()}
