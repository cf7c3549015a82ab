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
from mixopt.mixing.base import MixingEstimator, _jsonable, get_estimator
from mixopt.mixing.constraints import Constraints
from mixopt.mixing.design import suggest_next
from mixopt.mixing.fidelity import cross_validate
from mixopt.mixing.optimize import predict_with_interval
from mixopt.mixing.optimize import recommend as _recommend


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
    **context: Any,
) -> dict[str, Any]:
    """Fit ``name`` on all runs and cross-validate it on the objective.

    Returns ``{"state", "fidelity", "timings": {"fit_s", "cv_s"}, "notes"}``; ``fidelity`` holds
    the pooled and per-fold metrics plus ``predictions`` (``run_index, actual, predicted``).
    For ``"auto"`` the fidelity is the chosen estimator's CV from the selection itself (same
    folds; slightly optimistic because it is the best of several) and ``notes`` carry the table.
    """
    X = np.asarray(X, dtype=float)
    Y = np.asarray(Y, dtype=float)
    if Y.ndim == 1:
        Y = Y[:, None]
    targets = list(targets) if targets is not None else [f"t{i}" for i in range(Y.shape[1])]
    w = _weights(objective_weights, targets, Y.shape[1])
    est = get_estimator(name, **(params or {}))
    ctx = dict(context, domains=list(domains), targets=targets)
    notes: list[str] = []
    t0 = time.perf_counter()
    if name == "auto":
        est.fit(X, Y, objective_weights=w, **ctx)
        fit_s = time.perf_counter() - t0
        cv = est.cv_
        cv_s = 0.0
        notes.append(f"auto chose {est.chosen_}; fidelity is its CV from the selection")
        notes += [f"{r['name']}: {r['status']} spearman={r.get('spearman')} mae={r.get('mae')} {r.get('reason', '')}"
                  for r in est.table_]
    else:
        est.fit(X, Y, **ctx)
        fit_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        if X.shape[0] >= 2 * max(1, est.min_runs):
            cv = cross_validate(est, X, Y, objective_weights=w, n_folds=cv_folds, random_state=random_state, **ctx)
        else:
            cv = None
            notes.append(f"too few runs for {cv_folds}-fold CV of {name} ({X.shape[0]}); fidelity not computed")
        cv_s = time.perf_counter() - t1
    return _clean({"state": est.to_state(), "fidelity": cv, "timings": {"fit_s": fit_s, "cv_s": cv_s},
                   "notes": notes})


def predict(state: dict, X: Any, objective_weights: Any = None) -> dict[str, Any]:
    """Per-target predictions, the objective and (when the estimator has one) its std."""
    est = MixingEstimator.from_state(state)
    Xq = np.atleast_2d(np.asarray(X, dtype=float))
    P = np.atleast_2d(est.predict(Xq))
    w = _weights(objective_weights, getattr(est, "targets_", None), P.shape[1])
    out: dict[str, Any] = {"predictions": P.tolist(), "objective": np.ravel(est.predict_objective(Xq, w)).tolist(),
                           "std": None, "objective_std": None}
    if hasattr(est, "predict_objective_std"):
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
    **kw: Any,
) -> dict[str, Any]:
    """Recommendation (see :func:`mixopt.mixing.optimize.recommend`) from a stored fit."""
    est = MixingEstimator.from_state(state)
    P = np.atleast_2d(est.predict(np.full((1, est.n_domains_), 1.0 / est.n_domains_)))
    w = _weights(objective_weights, getattr(est, "targets_", None), P.shape[1])
    if domains is None and getattr(est, "domains_", None) is None and hasattr(est, "estimator_"):
        domains = getattr(est.estimator_, "domains_", None)
    return _clean(_recommend(est, Constraints.from_dict(constraints), prior, w, random_state,
                             domains=domains, X=X, Y=Y, n_boot=n_boot, **kw))


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
