"""A baseline to beat: recommend a mixture predicted no worse than a reference on every metric.

regmixer and olmix constrain their proposers against a reference mixture (the one a team
trains on today), and Ax calls these *baseline constraints* (outcome constraints relative to
a status-quo arm). With a fitted estimator predicting each objective metric ``L_j``::

    min_w  sum_j s_j L_j(w) + lambda KL(w || prior)
    s.t.   L_j(w) <= L_j(ref) + tol   for every metric j with s_j > 0,
           the mixture constraints (bounds, caps, fixed weights, group totals)

Smooth estimators: SLSQP with the metric constraints as inequalities (forward-difference
Jacobians), started from the reference, the unconstrained recommendation and the best of a
Dirichlet pool. Trees: RegMix's simulation restricted to the simulated mixtures that satisfy
every metric constraint, then the top-k average (kept only if it satisfies them too).

The report gives each metric's predicted gain ``L_j(ref) - L_j(w)`` (positive = better),
with a normal interval from bootstrap refits of the estimator when the runs are given, and
``status``: ``improves`` or ``no_improvement`` (no mixture under the constraints is predicted
to beat the reference by more than ``min_gain`` in the objective without losing on a metric;
the reference itself is then returned when it satisfies the constraints).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.stats import norm

from mixopt.mixing import hierarchy
from mixopt.mixing.objective import objective_vector
from mixopt.mixing.simplex import kl_divergence

#: smallest objective gain that counts as an improvement (relative to the reference's objective)
MIN_RELATIVE_GAIN = 1e-4


def _as_vector(mixture: Any, names: list[str], field: str = "reference.mixture") -> np.ndarray:
    if isinstance(mixture, dict):
        unknown = sorted(set(mixture) - set(names))
        if unknown:
            raise ValueError(f"{field}: unknown domain(s) {unknown}")
        v = np.array([float(mixture.get(d, 0.0)) for d in names])
    else:
        v = np.asarray(mixture, dtype=float).ravel()
    if (
        v.size != len(names)
        or not np.all(np.isfinite(v))
        or np.any(v < 0)
        or abs(v.sum() - 1) > 1e-6
    ):
        raise ValueError(
            f"{field}: a mixture over {len(names)} domains with non-negative weights summing to 1"
        )
    return v / v.sum()


def against_reference(
    estimator: Any,
    c: Any,
    names: list[str],
    w_plain: np.ndarray,
    reference: dict[str, Any],
    *,
    lo: np.ndarray,
    hi: np.ndarray,
    groups: Any,
    prior: np.ndarray,
    objective_weights: Any,
    kl_weight: float = 0.0,
    random_state: int = 0,
    n_samples: int = 100_000,
    top_k: int = 128,
    n_starts: int = 4,
    X: Any = None,
    Y: Any = None,
    n_boot: int = 20,
    **_: Any,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The best mixture predicted no worse than ``reference["mixture"]`` on any objective metric.

    ``reference``: ``{"mixture": {domain: w} | list, "tolerance": float (loss units, default 0),
    "label": str}``. ``w_plain`` is the recommendation without the reference constraint (a
    start). Returns ``(mixture, report)`` (module docstring).
    """
    tol = float(reference.get("tolerance") or 0.0)
    ref = _as_vector(reference.get("mixture"), names)
    proj = hierarchy.feasible_projection(lo, hi, groups or None)
    targets = [str(t) for t in (getattr(estimator, "targets_", None) or [])]
    P_ref = np.atleast_2d(np.asarray(estimator.predict(ref[None]), dtype=float))
    s = objective_vector(objective_weights, P_ref.shape[1])
    J = np.flatnonzero(s > 0)
    limit = P_ref[0, J] + tol
    prior = np.asarray(prior, dtype=float)

    def preds(W: np.ndarray) -> np.ndarray:
        return np.atleast_2d(np.asarray(estimator.predict(np.atleast_2d(W)), dtype=float))

    def objective(W: np.ndarray) -> np.ndarray:
        f = preds(W) @ s
        return f + kl_weight * kl_divergence(W, prior) if kl_weight else f

    def ok(W: np.ndarray, slack: float = 1e-9) -> np.ndarray:
        return np.all(preds(W)[:, J] <= limit + slack, axis=1)

    rng = np.random.default_rng(random_state)
    ref_feasible = bool(c.satisfied(ref, names))
    candidates = [proj(ref), proj(w_plain)]
    if estimator.smooth:
        candidates += _smooth_candidates(
            preds,
            objective,
            s,
            J,
            limit,
            candidates,
            prior=prior,
            kl_weight=kl_weight,
            lo=lo,
            hi=hi,
            groups=groups,
            proj=proj,
            rng=rng,
            n_starts=n_starts,
        )
    else:
        candidates += _tree_candidates(
            objective, ok, prior=prior, proj=proj, rng=rng, n_samples=n_samples, top_k=top_k
        )
    f_ref = float(objective(ref[None])[0])
    w, status, reason = _choose(
        np.vstack(candidates), ok, objective, f_ref, ref if ref_feasible else None, w_plain
    )
    P_w = preds(w[None])[0]
    gains = P_ref[0] - P_w
    lower = upper = None
    method = None
    if X is not None and Y is not None and n_boot:
        lower, upper, method = _bootstrap_gains(
            estimator, ref, w, X, Y, int(n_boot), random_state, gains
        )
    per_metric = [
        {
            "metric": targets[j] if j < len(targets) else f"t{j}",
            "weight": float(s[j]),
            "reference": float(P_ref[0, j]),
            "recommended": float(P_w[j]),
            "gain": float(gains[j]),
            "interval": None
            if lower is None or upper is None
            else [float(lower[j]), float(upper[j])],
            "constrained": bool(s[j] > 0),
            "no_worse": bool(P_w[j] <= P_ref[0, j] + tol + 1e-9) or s[j] == 0,
        }
        for j in range(P_ref.shape[1])
    ]
    report = {
        "label": reference.get("label"),
        "mixture": {d: float(x) for d, x in zip(names, ref, strict=True)},
        "tolerance": tol,
        "status": status,
        "reason": reason,
        "reference_feasible": ref_feasible,
        "reference_objective": f_ref,
        "objective_gain": float(f_ref - float(objective(w[None])[0])),
        "metrics": per_metric,
        "interval_method": method,
    }
    return np.asarray(w, dtype=float), report


def _smooth_candidates(
    preds: Callable,
    objective: Callable,
    s: np.ndarray,
    J: np.ndarray,
    limit: np.ndarray,
    starts0: list[np.ndarray],
    *,
    prior: np.ndarray,
    kl_weight: float,
    lo: np.ndarray,
    hi: np.ndarray,
    groups: Any,
    proj: Callable,
    rng: np.random.Generator,
    n_starts: int,
) -> list[np.ndarray]:
    """SLSQP with every constrained metric ``L_j(w) <= limit_j`` as an inequality (forward-
    difference Jacobians), from ``starts0`` and the best of a Dirichlet pool."""
    K = lo.size
    pool = proj(rng.dirichlet(np.maximum(prior, 1e-3) * K, size=256))
    fp = objective(pool)
    starts = starts0 + [pool[i] for i in np.argsort(fp)[: max(1, n_starts - 2)]]
    h = 1e-6

    def batch(x):
        pts = np.clip(np.vstack([x] + [x + h * e for e in np.eye(K)]), 0.0, None)
        return pts, preds(pts)

    def fun_and_grad(x):
        pts, Pp = batch(x)
        f = Pp @ s
        if kl_weight:
            f = f + kl_weight * kl_divergence(pts, prior)
        return float(f[0]), (f[1:] - f[0]) / h

    cons: list[dict[str, Any]] = [
        {"type": "eq", "fun": lambda x: x.sum() - 1.0, "jac": lambda x: np.ones_like(x)}
    ]
    for k, j in enumerate(J):
        cons.append(
            {
                "type": "ineq",
                "fun": lambda x, j=j, k=k: limit[k] - preds(np.clip(x, 0, None))[0, j],
                "jac": lambda x, j=j: -(batch(x)[1][1:, j] - batch(x)[1][0, j]) / h,
            }
        )
    if groups:
        cons += hierarchy.scipy_constraints(groups, np.ones(K, dtype=bool), np.zeros(K))
    out = []
    for st in starts:
        res = minimize(
            fun_and_grad,
            st,
            jac=True,
            method="SLSQP",
            bounds=list(zip(lo, hi, strict=True)),
            constraints=cons,
            options={"maxiter": 200, "ftol": 1e-10},
        )
        out.append(proj(res.x))
    return out


def _tree_candidates(
    objective: Callable,
    ok: Callable,
    *,
    prior: np.ndarray,
    proj: Callable,
    rng: np.random.Generator,
    n_samples: int,
    top_k: int,
) -> list[np.ndarray]:
    """RegMix's simulation restricted to the draws that satisfy every metric constraint: the
    top-k average and the best draw."""
    S = proj(rng.dirichlet(np.maximum(prior, 1e-6), size=int(n_samples)))
    good = ok(S)
    if not good.any():
        return []
    Sg = S[good]
    f = objective(Sg)
    k = min(int(top_k), Sg.shape[0])
    return [proj(Sg[np.argsort(f)[:k]].mean(axis=0)), Sg[int(np.argmin(f))]]


def _choose(
    C: np.ndarray,
    ok: Callable,
    objective: Callable,
    f_ref: float,
    ref_if_feasible: np.ndarray | None,
    w_plain: np.ndarray,
) -> tuple[np.ndarray, str, str | None]:
    """The best candidate that satisfies the metric constraints, or (no improvement) the
    reference when it satisfies the mixture constraints, else the plain recommendation."""
    feasible = ok(C)
    status, reason = "improves", None
    w: np.ndarray | None = None
    f_w = np.inf
    if feasible.any():
        fC = np.where(feasible, objective(C), np.inf)
        w = C[int(np.argmin(fC))]
        f_w = float(fC.min())
    min_gain = MIN_RELATIVE_GAIN * max(abs(f_ref), 1e-12)
    if w is None or f_ref - f_w <= min_gain:
        status = "no_improvement"
        reason = (
            "no mixture under the constraints is predicted to beat the reference"
            + (f" by more than {min_gain:.3g} in the objective" if w is not None else "")
            + " without a worse predicted loss on some metric"
        )
        if ref_if_feasible is not None:
            w = ref_if_feasible
        elif w is None:
            w = np.asarray(w_plain, dtype=float)
            reason += (
                "; the reference breaks the mixture constraints and no constrained mixture matches "
                "it, so the recommendation below ignores the reference"
            )
    return w, status, reason


def _bootstrap_gains(estimator, ref, w, X, Y, n_boot, random_state, gains):
    Xt = np.asarray(X, dtype=float)
    Yt = np.asarray(Y, dtype=float)
    Yt = Yt[:, None] if Yt.ndim == 1 else Yt
    chosen = estimator.final_estimator()
    rng = np.random.default_rng(random_state)
    out = []
    ctx = {
        k: getattr(chosen, a)
        for k, a in (("domains", "domains_"), ("targets", "targets_"))
        if getattr(chosen, a, None) is not None
    }
    for _ in range(n_boot):
        idx = rng.integers(0, Xt.shape[0], Xt.shape[0])
        try:
            e = chosen.clone().fit(Xt[idx], Yt[idx], **ctx)
        except ValueError:
            continue
        P = np.atleast_2d(np.asarray(e.predict(np.vstack([ref, w])), dtype=float))
        out.append(P[0] - P[1])
    if len(out) < 2:
        return None, None, None
    sd = np.array(out).std(axis=0, ddof=1)
    z = float(norm.ppf(0.975))
    return gains - z * sd, gains + z * sd, f"bootstrap({len(out)}) of the gain, normal"
