"""Gaussian-process regression of losses on the mixture simplex.

Model
-----
Per target ``i``: ``L_i(w) ~ GP(m_i, k)`` on warped, standardised inputs ``z = s(phi(w))``,
with the kernel (Rasmussen & Williams 2006, Eq. 4.14 Matern nu = 5/2 with ARD length scales)::

    k(z, z') = c * Matern_{5/2}(z, z'; l_1..l_K) + sigma_n^2 * [z == z']

``phi`` is an input warp: ``"log"`` (``log(w + eps)``, the coordinates in which the data mixing
law of Ye et al. 2024, Eq. 3, and BiMix's power law in ``r_i`` (Ge et al. 2024, Eq. 1) are
smooth), ``"sqrt"``, ``"identity"``, or ``"auto"``: fit every warp and keep the one with the
largest log marginal likelihood (R&W Eq. 5.8) on the training runs (model selection on the
training data only). ``normalize_y=True`` standardises each target. Hyper-parameters
(``theta = log(c, l_1..l_K, sigma_n^2)``) maximise the log marginal likelihood with L-BFGS-B
and ``n_restarts`` random restarts (scikit-learn ``GaussianProcessRegressor``). For speed with
many runs, the hyper-parameters are optimised on a seeded subsample of at most
``max_opt_runs`` runs; the posterior is then conditioned on all runs.

Hyper-parameter priors
----------------------
``hyper_prior="none"`` (the default) maximises the marginal likelihood alone. On a few tens of
runs in several dimensions that fit often interpolates: the fitted noise sd on
``bench/rounds_synthetic.py``'s swarms is a median 0.0001 nats at 16 runs for a true seed noise
of 0.005-0.02. ``hyper_prior="dim_scaled"`` maximises the log posterior instead (MAP-II) with the
priors of BoTorch's GP defaults: on each ARD length scale (in the standardised inputs) the
dimension-scaled log-normal of Hvarfner, Hellsten & Nardi 2024 ("Vanilla Bayesian Optimization
Performs Great in High Dimensions", Sec. 4: ``log l ~ N(sqrt(2) + log(d) / 2, 3)``), and on the
noise variance (in standardised outputs) ``Gamma(1.1, rate 0.05)``, which keeps it off zero; the
warp is then chosen by the log posterior. The swarm in rounds (:mod:`mixopt.mixing.rounds`) uses
it by default (README, "Swarms in rounds", for the figures). The estimator's default stays
``"none"``: judged on ``bench/transfer.py --quick`` with ``dim_scaled`` as the default, the
leave-largest-out error pooled went 0.85% -> 1.49% (3Mix 70M+160M -> 410M 1.05% -> 3.00%,
Spearman 0.858 -> 0.363: 6 distinct training mixtures, where the length-scale prior smooths
away what the data show; 5Mix -> 410M 0.20% -> 0.20%, -> 1B 1.31% -> 1.28%), single-scale
transfer pooled 0.917 -> 0.813, RegMix 64-run CV 0.934 -> 0.936.

Uncertainty
-----------
``predict(X, return_std=True)`` returns ``(mean, std)``, both ``(n, n_targets)``;
``predict_std(X)`` the std alone; ``predict_objective_std(X, weights)`` the std of the weighted
objective assuming independent targets (``sqrt(sum_i w_i^2 s_i^2)``). ``std`` is the posterior
std of the latent function plus the fitted noise (a predictive std for a new run).

Persistence
-----------
The JSON state holds the training mixtures and losses, the warp, the input standardisation
and the optimised ``kernel_.theta`` per target. ``_load`` rebuilds each kernel with
``clone_with_theta`` and conditions a GP on the stored data with ``optimizer=None``: the same
linear algebra as the original fit, so predictions are identical.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numpy as np
from scipy.optimize import minimize
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

from mixopt.mixing.base import MixingEstimator, ParamSpec, register
from mixopt.mixing.objective import objective_vector

WARPS = ("log", "sqrt", "identity")


HYPER_PRIORS = ("none", "dim_scaled")
NOISE_PRIOR = (1.1, 0.05)  # Gamma(concentration, rate) on the standardised noise variance


def _log_prior(d: int):
    """``theta -> (log p(theta), gradient)`` for ``theta = log(c, l_1..l_d, sigma_n^2)``:
    ``log l_j ~ N(sqrt(2) + log(d) / 2, 3)`` (Hvarfner et al. 2024) and ``sigma_n^2 ~
    Gamma(1.1, 0.05)`` (written in ``t = log sigma_n^2``: ``1.1 t - 0.05 e^t``); ``c`` flat."""
    mu, var = np.sqrt(2.0) + 0.5 * np.log(d), 3.0
    a, b = NOISE_PRIOR

    def log_prior(theta: np.ndarray) -> tuple[float, np.ndarray]:
        t = np.asarray(theta, dtype=float)
        grad = np.zeros_like(t)
        ls = t[1 : 1 + d]
        grad[1 : 1 + d] = -(ls - mu) / var
        grad[-1] = a - b * np.exp(t[-1])
        value = -float(((ls - mu) ** 2).sum()) / (2 * var) + a * t[-1] - b * float(np.exp(t[-1]))
        return value, grad

    return log_prior


def _map_optimiser(log_prior):
    """An ``optimizer`` for scikit-learn's GP that minimises ``-(log marginal likelihood + log
    prior)`` with L-BFGS-B (its own default minimises the first term alone)."""

    def optimise(obj_func, initial_theta, bounds):
        def f(theta):
            value, grad = obj_func(theta, eval_gradient=True)
            lp, glp = log_prior(theta)
            return value - lp, grad - glp

        res = minimize(f, initial_theta, jac=True, method="L-BFGS-B", bounds=bounds)
        return res.x, float(res.fun)

    return optimise


def warp_inputs(X: np.ndarray, warp: str, eps: float) -> np.ndarray:
    """Apply the input warp ``phi`` elementwise."""
    if warp == "log":
        return np.log(np.clip(X, 0.0, None) + eps)
    if warp == "sqrt":
        return np.sqrt(np.clip(X, 0.0, None))
    if warp == "identity":
        return X
    raise ValueError(f"unknown warp {warp!r}; choose from {WARPS} or 'auto'")


@register("gp")
class GaussianProcessMixing(MixingEstimator):
    """Gaussian process on the simplex (ARD Matern 5/2 + white noise), one GP per target.

    Parameters
    ----------
    warp : {"log", "sqrt", "identity", "auto"}, default "auto"
        Input warp; "auto" picks the largest log marginal likelihood on the training runs.
    eps : float, default 1e-3
        Offset of the log warp (5x RegMix's smallest swarm weight 2e-4, so absent and rare
        domains stay distinguishable without an infinite distance).
    nu : float, default 2.5
        Matern smoothness.
    n_restarts : int, default 0
        Extra random restarts of the marginal-likelihood optimiser.
    max_opt_runs : int, default 128
        Hyper-parameters are optimised on at most this many (seeded, random) runs.
    random_state : int, default 0

    Attributes
    ----------
    warp_ : chosen warp. theta_ : (n_targets, n_hyper) optimised ``kernel_.theta``.
    log_marginal_likelihood_ : (n_targets,) on the optimisation runs.
    warp_scores_ : {warp: summed log marginal likelihood} when ``warp="auto"``.
    """

    min_runs: ClassVar[int] = 2
    smooth: ClassVar[bool] = True
    param_specs: ClassVar[dict[str, ParamSpec]] = {
        "warp": ParamSpec(
            "str",
            "input warp; auto picks the largest log marginal likelihood",
            choices=("auto", *WARPS),
        ),
        "eps": ParamSpec("float", "offset of the log warp", 1e-9, 1.0),
        "nu": ParamSpec(
            "float", "Matern smoothness (0.5, 1.5, 2.5 or inf are the closed forms)", 0.5, 1e9
        ),
        "n_restarts": ParamSpec(
            "int", "extra random restarts of the marginal-likelihood optimiser", 0, 100
        ),
        "max_opt_runs": ParamSpec(
            "int", "hyper-parameters optimised on at most this many runs", 2, 100_000
        ),
        "random_state": ParamSpec("int", "seed (subsample and restarts)", 0, 2**31 - 1),
        "hyper_prior": ParamSpec(
            "str",
            "none: maximum marginal likelihood; dim_scaled: MAP with a dimension-scaled "
            "log-normal prior on length scales and a Gamma prior on the noise",
            choices=HYPER_PRIORS,
        ),
    }

    def __init__(
        self,
        *,
        warp: str = "auto",
        eps: float = 1e-3,
        nu: float = 2.5,
        n_restarts: int = 0,
        max_opt_runs: int = 128,
        random_state: int = 0,
        hyper_prior: str = "none",
    ) -> None:
        self.hyper_prior = hyper_prior
        self.warp = warp
        self.eps = eps
        self.nu = nu
        self.n_restarts = n_restarts
        self.max_opt_runs = max_opt_runs
        self.random_state = random_state

    # -- internals ---------------------------------------------------------------------
    def _kernel(self, K: int):
        return ConstantKernel(1.0, (1e-3, 1e3)) * Matern(
            length_scale=np.full(K, np.sqrt(K)), length_scale_bounds=(1e-2, 1e3), nu=float(self.nu)
        ) + WhiteKernel(1e-2, (1e-6, 1.0))

    def _standardise(self, Z: np.ndarray, fit: bool) -> np.ndarray:
        if fit:
            self.z_mean_ = Z.mean(axis=0)
            sd = Z.std(axis=0)
            self.z_scale_ = np.where(sd > 1e-12, sd, 1.0)
        return (Z - self.z_mean_) / self.z_scale_

    def _condition(
        self, Z: np.ndarray, y: np.ndarray, theta: np.ndarray
    ) -> GaussianProcessRegressor:
        kernel = self._kernel(Z.shape[1]).clone_with_theta(np.asarray(theta, dtype=float))
        return GaussianProcessRegressor(kernel, normalize_y=True, optimizer=None).fit(Z, y)

    def _optimise(self, Z: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
        """The hyper-parameters and their score: the log marginal likelihood, plus the log
        prior density with ``hyper_prior="dim_scaled"`` (module docstring)."""
        if self.hyper_prior not in HYPER_PRIORS:
            raise ValueError(f"hyper_prior must be one of {list(HYPER_PRIORS)}")
        prior = _log_prior(Z.shape[1]) if self.hyper_prior == "dim_scaled" else None
        gp = GaussianProcessRegressor(
            self._kernel(Z.shape[1]),
            normalize_y=True,
            n_restarts_optimizer=int(self.n_restarts),
            random_state=seed,
            **({"optimizer": _map_optimiser(prior)} if prior else {}),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gp.fit(Z, y)
        theta = gp.kernel_.theta.copy()
        if prior is None:
            return theta, float(gp.log_marginal_likelihood_value_)
        # scikit-learn stores minus the optimiser's objective: here the log posterior
        return theta, float(gp.log_marginal_likelihood(theta)) + prior(theta)[0]

    # -- contract ----------------------------------------------------------------------
    def fit(self, X: Any, Y: Any, **context: Any) -> GaussianProcessMixing:
        X, Y = self._check_fit_input(X, Y)
        n, K = X.shape
        rng = np.random.default_rng(self.random_state)
        sub = (
            np.sort(rng.choice(n, int(self.max_opt_runs), replace=False))
            if n > int(self.max_opt_runs)
            else np.arange(n)
        )
        warps = list(WARPS) if self.warp == "auto" else [self.warp]
        best = None
        scores: dict[str, float] = {}
        for w in warps:
            Z = warp_inputs(X, w, float(self.eps))
            mean, sd = Z.mean(axis=0), Z.std(axis=0)
            Zs = (Z - mean) / np.where(sd > 1e-12, sd, 1.0)
            thetas, lmls = [], []
            for i in range(Y.shape[1]):
                th, lml = self._optimise(Zs[sub], Y[sub, i], seed=int(self.random_state) + i)
                thetas.append(th)
                lmls.append(lml)
            scores[w] = float(np.sum(lmls))
            if best is None or scores[w] > best[0]:
                best = (scores[w], w, np.array(thetas), np.array(lmls))
        assert best is not None
        _, self.warp_, self.theta_, self.log_marginal_likelihood_ = best
        self.warp_scores_ = scores if self.warp == "auto" else None
        Zs = self._standardise(warp_inputs(X, self.warp_, float(self.eps)), fit=True)
        self.gps_ = [self._condition(Zs, Y[:, i], self.theta_[i]) for i in range(Y.shape[1])]
        self.X_train_, self.Y_train_ = X, Y
        self.n_domains_ = K
        self.domains_ = (
            [str(d) for d in context["domains"]] if context.get("domains") is not None else None
        )
        self.targets_ = (
            [str(t) for t in context["targets"]] if context.get("targets") is not None else None
        )
        return self

    def _z(self, X: Any) -> np.ndarray:
        self.check_is_fitted()
        X = np.atleast_2d(np.asarray(X, dtype=float))
        if X.shape[1] != self.n_domains_:
            raise ValueError(f"X has {X.shape[1]} domains, the fit has {self.n_domains_}")
        return self._standardise(warp_inputs(X, self.warp_, float(self.eps)), fit=False)

    def predict(self, X: Any, return_std: bool = False):
        """Posterior mean ``(n, n_targets)``; with ``return_std`` also the predictive std."""
        Z = self._z(X)
        if not return_std:
            return np.column_stack([gp.predict(Z) for gp in self.gps_])
        out = [gp.predict(Z, return_std=True) for gp in self.gps_]
        return np.column_stack([m for m, _ in out]), np.column_stack([s for _, s in out])

    def refit_prototype(self) -> MixingEstimator:
        """An unfitted copy for bootstrap refits (:func:`mixopt.mixing.robust.bootstrap_refits`)
        that keeps the input warp this fit chose by marginal likelihood: one hyper-parameter
        search per refit instead of three (0.7 s instead of 2.8 s on 512 runs x 17 domains)."""
        warp = getattr(self, "warp_", None)
        return self.clone().set_params(warp=warp) if warp else self.clone()

    def predict_std(self, X: Any) -> np.ndarray:
        return self.predict(X, return_std=True)[1]

    def predict_objective_std(self, X: Any, weights: Any = None) -> np.ndarray:
        """Std of ``sum_i w_i L_i`` (targets treated as independent)."""
        S = self.predict_std(X)
        w = objective_vector(weights, S.shape[1])
        return np.sqrt((S**2) @ (w**2))

    # -- persistence -------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "n_domains": self.n_domains_,
            "warp": self.warp_,
            "theta": self.theta_.tolist(),
            "log_marginal_likelihood": self.log_marginal_likelihood_.tolist(),
            "warp_scores": self.warp_scores_,
            "z_mean": self.z_mean_.tolist(),
            "z_scale": self.z_scale_.tolist(),
            "X": self.X_train_.tolist(),
            "Y": self.Y_train_.tolist(),
            "domains": self.domains_,
            "targets": self.targets_,
        }

    def _load(self, state: dict[str, Any]) -> None:
        self.n_domains_ = int(state["n_domains"])
        self.warp_ = state["warp"]
        self.theta_ = np.atleast_2d(np.asarray(state["theta"], dtype=float))
        self.log_marginal_likelihood_ = np.asarray(state["log_marginal_likelihood"], dtype=float)
        self.warp_scores_ = state.get("warp_scores")
        self.z_mean_ = np.asarray(state["z_mean"], dtype=float)
        self.z_scale_ = np.asarray(state["z_scale"], dtype=float)
        self.X_train_ = np.asarray(state["X"], dtype=float).reshape(-1, self.n_domains_)
        self.Y_train_ = np.asarray(state["Y"], dtype=float).reshape(self.X_train_.shape[0], -1)
        self.domains_, self.targets_ = state.get("domains"), state.get("targets")
        Zs = self._standardise(warp_inputs(self.X_train_, self.warp_, float(self.eps)), fit=False)
        self.gps_ = [
            self._condition(Zs, self.Y_train_[:, i], self.theta_[i])
            for i in range(self.Y_train_.shape[1])
        ]
