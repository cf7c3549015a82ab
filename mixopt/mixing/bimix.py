"""BiMix: the bivariate data mixing law (Ge et al. 2024, "BiMix: A Bivariate Data Mixing Law
for Language Model Pretraining", arXiv:2405.14908).

Per domain ``i`` the paper's law (Eq. 1 of v4) is::

    L_i(r_i, s) = A_i / r_i^{alpha_i} * (B_i / s^{beta_i} + C_i)

with ``r_i`` the proportion of domain ``i`` in the mixture and ``s`` the training steps (or
tokens). ``A_i`` and ``(B_i, C_i)`` enter only through the products ``A_i B_i`` and
``A_i C_i``: the five coefficients hold four degrees of freedom. We fix ``C_i = 1`` (so
``A_i`` is the loss at ``r_i = 1`` as ``s -> inf`` and ``B_i`` the relative reducible part)
and report ``C_i = 1`` in the fitted state.

Fitting (per target, on ``(r, s, loss)`` triples from the runs' loss curves): starts from a
grid over ``(beta, B)`` with ``log A`` and ``alpha`` solved by least squares in log space
(the law is linear in ``log A`` and ``alpha`` once ``B, beta`` are fixed), then L-BFGS-B on
a summed Huber loss of the loss residuals from the best few starts, with ``A, B > 0`` (log
parameters) and ``alpha, beta`` kept in ``[0, 5]`` / ``[1e-3, 5]``.

Optimising the proportions at a step budget ``s`` (paper Sec. 4, "minimise the sum of
per-domain losses on the simplex"): with one target per domain the objective
``sum_i w_i a_i r_i^{-alpha_i}`` (``a_i = A_i (B_i s^{-beta_i} + 1)``) has the Lagrange
solution ``r_i = (alpha_i w_i a_i / lambda)^{1 / (1 + alpha_i)}``, with ``lambda`` found by
bisection so that ``sum_i r_i = 1`` (:meth:`BiMix.optimal_mixture`).

Absent domains (``r_i = 0``) are not clipped: the law (infinite at 0) is fitted on the
triples with a positive share only, and an absent domain is modelled explicitly with the same
step dependence, ``L_i(0, s) = A0_i (B_i / s^beta_i + C_i)``, ``A0_i`` the median of
``loss / (B_i s^-beta_i + C_i)`` over the triples where the domain is absent. Without such
triples ``A0_i`` is the law at the smallest positive share seen (no extrapolation toward 0),
and ``absent_observed_`` says so. (Clipping to 1e-4 over-predicted such domains by +0.45 nats
on average on the public 5Mix runs.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar, cast

import numpy as np
from scipy.optimize import minimize

from mixopt.mixing.base import (
    InsufficientDataError,
    MixingEstimator,
    NativeTarget,
    ParamSpec,
    register,
)
from mixopt.mixing.objective import objective_vector

_STRIP = re.compile(r"^(metric/|train_|val_|valid_|eval_)+|(_val_loss|_loss|_val|_valid)+$")


def normalise_name(name: str) -> str:
    """Loose name used to match targets to domains (``metric/x_val_loss`` ~ ``train_x``,
    ``val_loss/x`` ~ ``x``): the part after the last ``/``, without the usual prefixes/suffixes."""
    return _STRIP.sub("", str(name).lower().rsplit("/", 1)[-1])


def _huber(r: np.ndarray, delta: float) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r**2, delta * (a - 0.5 * delta))


def bimix_law(r: Any, s: Any, A: Any, alpha: Any, B: Any, beta: Any, C: Any = 1.0) -> np.ndarray:
    """``A / r^alpha * (B / s^beta + C)`` (Ge et al. 2024, Eq. 1), broadcasting."""
    r, s = np.asarray(r, float), np.asarray(s, float)
    return A * r ** (-np.asarray(alpha)) * (B * s ** (-np.asarray(beta)) + C)


def _objective(theta, lr, ls, y, delta):
    la, alpha, lb, beta = theta
    u = np.exp(lb - beta * ls)  # B s^-beta
    base = np.exp(la - alpha * lr)  # A r^-alpha
    pred = base * (1.0 + u)
    res = pred - y
    psi = np.clip(res, -delta, delta)
    g = np.array(
        [
            np.sum(psi * pred),
            np.sum(psi * -pred * lr),
            np.sum(psi * base * u),
            np.sum(psi * -base * u * ls),
        ]
    )
    return float(np.sum(_huber(res, delta))), g


def fit_bimix_domain(
    r: np.ndarray, s: np.ndarray, y: np.ndarray, *, delta: float, n_refine: int = 4
) -> tuple[np.ndarray, float]:
    """Fit ``(log A, alpha, log B, beta)`` of one domain; returns ``(theta, huber)``."""
    lr, ls, ly = np.log(r), np.log(s), np.log(y)
    ls_ref = float(np.mean(ls))
    betas = np.linspace(0.02, 1.5, 30)
    log_us = np.linspace(np.log(1e-3), np.log(1e2), 30)  # u = B s_ref^-beta
    grid_b, grid_u = np.meshgrid(betas, log_us, indexing="ij")
    bb, uu = grid_b.ravel(), grid_u.ravel()
    lb = uu + bb * ls_ref
    G = np.log1p(np.exp(lb[None, :] - bb[None, :] * ls[:, None]))  # (n, S)
    # log y - G = log A - alpha log r: least squares for (log A, alpha) per start
    Z = ly[:, None] - G
    lr_m = lr.mean()
    var = np.mean((lr - lr_m) ** 2)
    Zm = Z.mean(axis=0)
    alpha = np.clip(-np.mean((lr - lr_m)[:, None] * (Z - Zm), axis=0) / max(var, 1e-18), 0.0, 5.0)
    la = Zm + alpha * lr_m
    pred = np.exp(la[None, :] - alpha[None, :] * lr[:, None] + G)
    score = _huber(pred - y[:, None], delta).sum(axis=0)
    best_f, best = np.inf, None
    for k in np.argsort(score)[: max(1, n_refine)]:
        theta0 = np.array([la[k], alpha[k], lb[k], bb[k]])
        res = minimize(
            _objective,
            theta0,
            args=(lr, ls, y, delta),
            jac=True,
            method="L-BFGS-B",
            bounds=[(None, None), (0.0, 5.0), (None, None), (1e-3, 5.0)],
            options={"maxiter": 2000, "ftol": 1e-14, "gtol": 1e-10},
        )
        if np.all(np.isfinite(res.x)) and res.fun < best_f:
            best_f, best = float(res.fun), res.x
    assert best is not None
    return best, best_f


@register("bimix")
class BiMix(MixingEstimator):
    """BiMix (Ge et al. 2024, Eq. 1): ``L_i(r_i, s) = A_i r_i^{-alpha_i} (B_i s^{-beta_i} + C_i)``.

    Fit context
    -----------
    ``curves`` : per run a list of ``(step, losses)``; ``losses`` a ``{target: loss}`` mapping
        (names as in ``targets``) or a sequence in ``Y``'s column order. Every curve point
        gives one ``(r, s, loss)`` triple per target.
    ``steps`` (or ``tokens``) : per-run scale used with ``Y`` when no curves are given (needs
        at least 2 distinct values).
    ``domains``, ``targets`` : names. Target ``i`` is BiMix's loss of the domain it maps to:
        ``target_domains[target]`` when given, else the domain with the same name, else the
        same name after stripping prefixes/suffixes such as ``metric/``, ``train_``,
        ``_val_loss``, else (no names, as many targets as domains) target ``i`` -> domain ``i``.

    Parameters
    ----------
    target_steps : float or None
        Scale at which :meth:`predict` evaluates the law; default the largest step seen.
    target_domains : dict or None
        Explicit ``{target name: domain name}`` mapping.
    delta : float, default 0.02
        Huber threshold on the loss residual (ours: the paper does not state its fitting loss).
    min_proportion : float, default 0
        Shares at or below this count as absent (modelled by ``A0_i``, see the module docstring).
    n_refine : int, default 4
        Grid starts refined with L-BFGS-B per target.

    Attributes
    ----------
    A_, alpha_, B_, beta_, C_ : (n_targets,) fitted coefficients (``C_ == 1``).
    target_domain_ : (n_targets,) domain index of each target.
    max_step_ : largest step seen in the fit.
    """

    min_runs: ClassVar[int] = 2
    #: the law has the steps in it: a target step is evaluated natively (Eq. 1)
    scale_handling: ClassVar[str] = "native_steps"
    predicts_at_steps: ClassVar[bool] = True
    param_specs: ClassVar[dict[str, ParamSpec]] = {
        "target_steps": ParamSpec(
            "float",
            "steps (or tokens) at which predict evaluates the law; "
            "null: the largest seen (the service sets it from target_scale)",
            1e-9,
            1e18,
            nullable=True,
        ),
        "target_domains": ParamSpec(
            "dict", "{target metric: domain} when names do not match", nullable=True
        ),
        "delta": ParamSpec("float", "Huber threshold on the loss residual", 1e-6, 10.0),
        "min_proportion": ParamSpec("float", "shares at or below this count as absent", 0.0, 0.5),
        "n_refine": ParamSpec("int", "grid starts refined with L-BFGS-B per target", 1, 200),
    }

    def __init__(
        self,
        *,
        target_steps: float | None = None,
        target_domains: dict[str, str] | None = None,
        delta: float = 0.02,
        min_proportion: float = 0.0,
        n_refine: int = 4,
    ) -> None:
        self.target_steps = target_steps
        self.target_domains = target_domains
        self.delta = delta
        self.min_proportion = min_proportion
        self.n_refine = n_refine

    # -- helpers -----------------------------------------------------------------------------
    def _map_targets(
        self, n_targets: int, K: int, domains: list[str] | None, targets: list[str] | None
    ) -> np.ndarray:
        if targets is None or domains is None:
            if n_targets == K and not self.target_domains:
                return np.arange(K)
            raise ValueError(
                "bimix needs `domains` and `targets` names (or as many targets as "
                "domains) to map each target to its domain"
            )
        out = []
        loose = {normalise_name(d): j for j, d in enumerate(domains)}
        for t in targets:
            if self.target_domains and t in self.target_domains:
                d = self.target_domains[t]
                if d not in domains:
                    raise ValueError(f"target_domains maps {t!r} to unknown domain {d!r}")
                out.append(domains.index(d))
            elif t in domains:
                out.append(domains.index(t))
            elif normalise_name(t) in loose:
                out.append(loose[normalise_name(t)])
            else:
                raise ValueError(f"target {t!r} matches no domain; pass target_domains")
        return np.asarray(out, dtype=int)

    @staticmethod
    def _triples(X, Y, context, targets):
        curves = context.get("curves")
        rows_r, rows_s, rows_y = [], [], []
        if curves is not None:
            if len(curves) != X.shape[0]:
                raise ValueError(f"curves has {len(curves)} runs, X has {X.shape[0]}")
            for run, curve in enumerate(curves):
                for step, losses in curve or []:
                    if isinstance(losses, Mapping):
                        if targets is None:
                            raise ValueError("curve losses given by name need `targets`")
                        vals = [float(losses.get(t, np.nan)) for t in targets]
                    else:
                        vals = [float(v) for v in np.atleast_1d(losses)]
                    rows_r.append(X[run])
                    rows_s.append(float(step))
                    rows_y.append(vals)
        else:
            scale = context.get("steps", context.get("tokens"))
            if scale is None:
                raise InsufficientDataError(
                    "bimix needs loss curves (`curves`) or per-run `steps` with at least 2 "
                    "distinct values"
                )
            scale = np.asarray(scale, dtype=float)
            rows_r, rows_s, rows_y = list(X), list(scale), list(Y)
        return np.asarray(rows_r), np.asarray(rows_s), np.asarray(rows_y, dtype=float)

    # -- contract ------------------------------------------------------------------------------
    def fit(self, X: Any, Y: Any, **context: Any) -> BiMix:
        X, Y = self._check_fit_input(X, Y)
        n, K = X.shape
        domains = list(context["domains"]) if context.get("domains") is not None else None
        targets = list(context["targets"]) if context.get("targets") is not None else None
        tmap = self._map_targets(Y.shape[1], K, domains, targets)
        R, S, L = self._triples(X, Y, context, targets)
        m = len(tmap)
        theta = np.empty((m, 4))
        hub = np.empty(m)
        A0 = np.empty(m)
        absent_seen = np.zeros(m, dtype=bool)
        for i in range(m):
            r = R[:, tmap[i]]
            valid = (S > 0) & np.isfinite(L[:, i]) & (L[:, i] > 0)
            ok = (r > self.min_proportion) & valid
            n_r, n_s = len(np.unique(r[ok])), len(np.unique(S[ok]))
            if ok.sum() < 5 or n_r < 2 or n_s < 2:
                name = targets[i] if targets else i
                raise InsufficientDataError(
                    f"bimix needs, per target, at least 5 (proportion, step, loss) points with "
                    f">= 2 distinct proportions of its domain (> {self.min_proportion}) and >= 2 "
                    f"distinct steps; target {name!r} has {int(ok.sum())} points, {n_r} "
                    f"proportions, {n_s} steps"
                )
            theta[i], hub[i] = fit_bimix_domain(
                r[ok], S[ok], L[ok, i], delta=float(self.delta), n_refine=int(self.n_refine)
            )
            la, al, lb, be = theta[i]
            absent = (r <= self.min_proportion) & valid
            if absent.any():
                A0[i] = float(np.median(L[absent, i] / (np.exp(lb) * S[absent] ** (-be) + 1.0)))
                absent_seen[i] = True
            else:
                A0[i] = float(np.exp(la) * r[ok].min() ** (-al))
        self.A_ = np.exp(theta[:, 0])
        self.alpha_ = theta[:, 1]
        self.B_ = np.exp(theta[:, 2])
        self.beta_ = theta[:, 3]
        self.C_ = np.ones(m)
        self.A0_ = A0
        self.absent_observed_ = absent_seen
        self.huber_ = hub
        self.target_domain_ = tmap
        self.max_step_ = float(S[S > 0].max())
        self.domains_, self.targets_ = domains, targets
        self.n_domains_ = K
        return self

    @classmethod
    def native_target(
        cls, target_scale: dict[str, Any] | None, model_params: Any
    ) -> NativeTarget | None:
        """A target in steps at the runs' one model size is answered by the law itself
        (Eq. 1 at ``s = train_steps``); a target in tokens, or another size, is not."""
        if not target_scale or not target_scale.get("train_steps"):
            return None
        raw = np.asarray(model_params if model_params is not None else [], dtype=float).ravel()
        sizes = sorted({float(v) for v in raw if np.isfinite(v)})
        tp = target_scale.get("model_params")
        if len(sizes) > 1 or (tp is not None and sizes and not np.isclose(float(tp), sizes[0])):
            return None
        steps = float(target_scale["train_steps"])
        scale = {
            "model_params": sizes[0] if len(sizes) == 1 else None,
            "train_steps": steps,
            "train_tokens": None,
        }
        chain = [
            {
                "law": cls.name,
                "form": "L_i(r_i, s) = A_i / r_i^a_i (B_i / s^b_i + C_i)",
                "note": (
                    f"BiMix evaluates at the target step {steps:g} natively (Ge et al. 2024, Eq. 1)"
                ),
            }
        ]
        return NativeTarget(
            params={"target_steps": steps},
            scale=scale,
            chain=chain,
            cross_scale_reason="extrapolation untested: BiMix's step extrapolation is its own law",
        )

    def law_summary(self) -> dict[str, Any] | None:
        return {
            "form": "A_i / r_i^a_i (B_i / s^b_i + C_i)",
            "A": self.A_.tolist(),
            "alpha": self.alpha_.tolist(),
            "B": self.B_.tolist(),
            "beta": self.beta_.tolist(),
        }

    def _steps(self, steps: float | None) -> float:
        if steps is not None:
            return float(steps)
        return float(self.target_steps) if self.target_steps is not None else self.max_step_

    def predict(self, X: Any, steps: float | np.ndarray | None = None) -> np.ndarray:
        """Losses ``(n, n_targets)`` at ``steps`` (default ``target_steps``, else max seen)."""
        self.check_is_fitted()
        X = np.atleast_2d(np.asarray(X, dtype=float))
        if X.shape[1] != self.n_domains_:
            raise ValueError(f"X has {X.shape[1]} domains, the fit has {self.n_domains_}")
        at = steps if steps is None or not np.isscalar(steps) else float(cast(float, steps))
        s = np.asarray(self._steps(at) if at is None or isinstance(at, float) else at, dtype=float)
        s = s[:, None] if s.ndim == 1 else s
        r = X[:, self.target_domain_]
        absent = r <= self.min_proportion
        with np.errstate(divide="ignore"):
            law = bimix_law(
                np.where(absent, 1.0, r),
                s,
                self.A_[None],
                self.alpha_[None],
                self.B_[None],
                self.beta_[None],
                self.C_[None],
            )
        zero = self.A0_[None] * (self.B_[None] * s ** (-self.beta_[None]) + self.C_[None])
        return np.where(absent, zero, law)

    def predict_runs(self, X: Any, **context: Any) -> np.ndarray:
        """Each run at its own step (``steps``, else its curve's last step): cross-validation
        compares like with like, not the target step with the runs' final losses."""
        steps = context.get("steps")
        curves = context.get("curves")
        X = np.atleast_2d(np.asarray(X, dtype=float))
        if curves is not None and len(curves) == X.shape[0] and all(curves):
            s = np.array([max(float(p[0]) for p in c) for c in curves])
        elif (
            steps is not None
            and len(steps) == X.shape[0]
            and np.all(np.isfinite(np.asarray(steps, float)))
        ):
            s = np.asarray(steps, dtype=float)
        else:
            return self.predict(X)
        return self.predict(X, steps=s)

    def optimal_mixture(self, steps: float | None = None, weights: Any = None) -> np.ndarray:
        """Proportions minimising ``sum_i w_i L_i`` at ``steps`` on the simplex (paper Sec. 4).

        Domains no target maps to get 0. With several targets on one domain the problem is
        solved numerically (SLSQP); otherwise by the closed-form Lagrange condition.
        """
        self.check_is_fitted()
        m, K = len(self.A_), self.n_domains_
        w = objective_vector(weights, m)
        s = self._steps(steps)
        a = w * self.A_ * (self.B_ * s ** (-self.beta_) + self.C_)
        dom = self.target_domain_
        r = np.zeros(K)
        if len(np.unique(dom)) == m:
            al = self.alpha_
            active = (al > 1e-12) & (a > 0)
            if not active.any():
                r[dom] = 1.0 / m
                return r

            def total(log_lam: float) -> float:
                return float(
                    np.sum(np.exp((np.log(al[active] * a[active]) - log_lam) / (1.0 + al[active])))
                )

            lo, hi = -50.0, 50.0
            while total(lo) < 1:
                lo -= 50.0
            while total(hi) > 1:
                hi += 50.0
            for _ in range(200):
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if total(mid) > 1 else (lo, mid)
            lam = 0.5 * (lo + hi)
            r[dom[active]] = np.exp((np.log(al[active] * a[active]) - lam) / (1.0 + al[active]))
            return r / r.sum()
        used = np.unique(dom)
        eps = max(float(self.min_proportion), 1e-6)

        def f(x):
            rr = np.zeros(K)
            rr[used] = x
            return float(np.sum(a * np.clip(rr[dom], eps, None) ** (-self.alpha_)))

        x0 = np.full(len(used), 1.0 / len(used))
        res = minimize(
            f,
            x0,
            method="SLSQP",
            bounds=[(eps, 1.0)] * len(used),
            constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1.0}],
        )
        r[used] = np.clip(res.x, 0, None)
        return r / r.sum()

    # -- persistence -----------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "n_domains": self.n_domains_,
            "A": self.A_.tolist(),
            "alpha": self.alpha_.tolist(),
            "B": self.B_.tolist(),
            "beta": self.beta_.tolist(),
            "C": self.C_.tolist(),
            "huber": self.huber_.tolist(),
            "target_domain": self.target_domain_.tolist(),
            "A0": self.A0_.tolist(),
            "absent_observed": [bool(b) for b in self.absent_observed_],
            "max_step": self.max_step_,
            "domains": self.domains_,
            "targets": self.targets_,
        }

    def _load(self, state: dict[str, Any]) -> None:
        self.n_domains_ = int(state["n_domains"])
        for k in ("A", "alpha", "B", "beta", "C", "huber"):
            setattr(self, k + "_", np.asarray(state[k], dtype=float))
        self.target_domain_ = np.asarray(state["target_domain"], dtype=int)
        # states saved before absent domains were modelled: the law at the old 1e-4 clip
        self.A0_ = np.asarray(state.get("A0", self.A_ * 1e-4 ** (-self.alpha_)), dtype=float)
        self.absent_observed_ = np.asarray(
            state.get("absent_observed", [False] * len(self.A_)), dtype=bool
        )
        self.max_step_ = float(state["max_step"])
        self.domains_, self.targets_ = state.get("domains"), state.get("targets")
