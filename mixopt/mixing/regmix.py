"""RegMix regressors (Liu et al. 2024, "RegMix: Data Mixture as Regression for Language Model
Pre-training", ICLR 2025; reference code ``sail-sg/regmix``).

RegMix treats the mixture as a feature vector and one validation loss as the regression
target (paper Sec. 2, Eq. 1: ``L = f(w)``, ``w`` the domain weights). Two regressors are
registered here, one model per target column of ``Y``:

* ``"regmix_lgbm"``: LightGBM with the settings of ``regression_fitting/regression.ipynb``:
  ``boosting_type="gbdt"``, ``objective="regression"``, 1000 iterations, ``learning_rate=0.01``,
  ``seed=42``, ``num_leaves=31``. Two defaults differ from the notebook, measured on the 512
  public runs (5-fold grouped CV Spearman): the notebook's early stopping (3 rounds on a held-out
  eighth) costs rank correlation (1B rho 0.946 vs 0.967 without it) and is off by default
  (``early_stopping_rounds=3`` restores it); LightGBM's default ``min_child_samples=20`` gives a
  constant model at <= 32 runs (CV rho -0.25 at 32 runs vs 0.80 with 2), so by default it is
  adapted to the number of runs, ``clip(n // 16, 2, 20)`` (20 from 320 runs on; rho at 64 runs
  0.91 vs 0.78 with 20, at 128 runs 0.957 vs 0.946).
  When ``lightgbm`` is not importable, scikit-learn's ``HistGradientBoostingRegressor`` with the
  same rounds / learning rate / leaves / min leaf size is used instead.
* ``"regmix_linear"``: ordinary least squares on the weights (the paper's linear baseline).

Persistence (JSON only, never pickles)
--------------------------------------
LightGBM boosters are stored as the text of ``Booster.model_to_string()`` (truncated to the
best iteration) inside the JSON state and rebuilt with ``lightgbm.Booster(model_str=...)``;
predictions after a round trip are identical. The HistGradientBoosting fallback has no stable
text format, so its state stores the training data and the effective hyper-parameters, and
``_load`` refits it; the fit is deterministic (fixed ``random_state``, no early stopping, no
subsampling), so the reloaded model predicts identically on the same scikit-learn version.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from mixopt.mixing.base import MixingEstimator, ParamSpec, register

try:  # pragma: no cover - import guard
    import lightgbm as lgb
except Exception:  # pragma: no cover - exercised only without lightgbm
    lgb = None  # type: ignore[assignment]  # optional dependency: the sklearn backend is used

#: settings of the reference notebook (``regression_fitting/regression.ipynb``)
PAPER_LGBM = {
    "boosting_type": "gbdt",
    "objective": "regression",
    "n_estimators": 1000,
    "learning_rate": 0.01,
    "seed": 42,
    "early_stopping_rounds": 3,
}


def adapted_min_child_samples(n: int) -> int:
    """Default ``min_child_samples`` for ``n`` training runs: ``clip(n // 16, 2, 20)``."""
    return int(min(20, max(2, n // 16)))


def _check_predict_input(est: MixingEstimator, X: Any) -> np.ndarray:
    est.check_is_fitted()
    X = np.atleast_2d(np.asarray(X, dtype=float))
    if X.shape[1] != est.n_domains_:
        raise ValueError(f"X has {X.shape[1]} domains, the fit has {est.n_domains_}")
    return X


def _names(context: dict[str, Any], key: str) -> list[str] | None:
    v = context.get(key)
    return [str(x) for x in v] if v is not None else None


@register("regmix_lgbm")
class RegMixLGBM(MixingEstimator):
    """RegMix's gradient-boosted regressor (Liu et al. 2024, Sec. 2.3 and App. "Regression").

    Parameters
    ----------
    n_estimators : int, default 1000
        Boosting rounds (paper: ``num_iterations=1000``). Lower it in unit tests.
    learning_rate : float, default 0.01
        Paper: ``1e-2``.
    num_leaves : int, default 31
        LightGBM default (the paper leaves it unset).
    min_child_samples : int or None, default None
        ``min_data_in_leaf``; None adapts it to the runs, ``clip(n // 16, 2, 20)`` (LightGBM's
        20 leaves a constant model at small n).
    early_stopping_rounds : int or None, default None
        Paper: ``lgb.early_stopping(stopping_rounds=3)`` on the validation l2 loss; off by
        default (it costs rank correlation, see the module docstring).
    validation_fraction : float, default 0.125
        Share of the training runs held out (seeded) for early stopping; 0 or too few runs
        (fewer than 2 held out) disables early stopping and trains on all runs.
    random_state : int, default 42
        Paper: ``seed=42``; also seeds the validation split.
    n_jobs : int, default 1
        LightGBM threads (1 keeps fits deterministic and light on shared machines).
    backend : {"auto", "lightgbm", "sklearn"}, default "auto"
        "auto" uses LightGBM when importable, else scikit-learn's HistGradientBoosting.

    Attributes
    ----------
    models_ : list of LightGBM boosters (or HistGradientBoostingRegressor), one per target.
    best_iterations_ : list of int, rounds kept per target.
    backend_ : the backend used.
    """

    min_runs: ClassVar[int] = 4
    smooth: ClassVar[bool] = False
    param_specs: ClassVar[dict[str, ParamSpec]] = {
        "n_estimators": ParamSpec("int", "boosting rounds (paper: 1000)", 1, 100_000),
        "learning_rate": ParamSpec("float", "shrinkage (paper: 0.01)", 1e-6, 1.0),
        "num_leaves": ParamSpec("int", "leaves per tree (LightGBM default 31)", 2, 4096),
        "min_child_samples": ParamSpec(
            "int",
            "min runs per leaf; null adapts it: clip(n // 16, 2, 20)",
            1,
            100_000,
            nullable=True,
        ),
        "early_stopping_rounds": ParamSpec(
            "int",
            "early stopping on a held-out share (paper: 3); null: off",
            1,
            10_000,
            nullable=True,
        ),
        "validation_fraction": ParamSpec(
            "float", "share of runs held out for early stopping", 0.0, 0.9
        ),
        "random_state": ParamSpec(
            "int", "LightGBM seed (paper: 42), also seeds the validation split", 0, 2**31 - 1
        ),
        "n_jobs": ParamSpec("int", "LightGBM threads", 1, 256),
        "backend": ParamSpec(
            "str",
            "auto: LightGBM when importable, else scikit-learn",
            choices=("auto", "lightgbm", "sklearn"),
        ),
    }

    def __init__(
        self,
        *,
        n_estimators: int = 1000,
        learning_rate: float = 0.01,
        num_leaves: int = 31,
        min_child_samples: int | None = None,
        early_stopping_rounds: int | None = None,
        validation_fraction: float = 0.125,
        random_state: int = 42,
        n_jobs: int = 1,
        backend: str = "auto",
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.backend = backend

    def _backend(self) -> str:
        if self.backend not in ("auto", "lightgbm", "sklearn"):
            raise ValueError(
                f"backend must be 'auto', 'lightgbm' or 'sklearn', got {self.backend!r}"
            )
        if self.backend == "lightgbm" and lgb is None:
            raise ImportError("backend='lightgbm' but lightgbm is not importable")
        if self.backend == "auto":
            return "lightgbm" if lgb is not None else "sklearn"
        return self.backend

    def _split(self, n: int) -> tuple[np.ndarray, np.ndarray | None]:
        frac = float(self.validation_fraction or 0.0)
        n_val = int(round(frac * n))
        if not self.early_stopping_rounds or n_val < 2 or n - n_val < 2:
            return np.arange(n), None
        perm = np.random.default_rng(self.random_state).permutation(n)
        return np.sort(perm[n_val:]), np.sort(perm[:n_val])

    def _min_child(self, n: int) -> int:
        if self.min_child_samples is None:
            return adapted_min_child_samples(n)
        return int(self.min_child_samples)

    def _lgb_params(self, n: int) -> dict[str, Any]:
        return {
            "boosting_type": "gbdt",
            "objective": "regression",
            "metric": "l2",
            "learning_rate": float(self.learning_rate),
            "num_leaves": int(self.num_leaves),
            "min_data_in_leaf": self._min_child(n),
            "seed": int(self.random_state),
            "num_threads": int(self.n_jobs),
            "deterministic": True,
            "verbosity": -1,
        }

    def _hgb(self, n: int):
        from sklearn.ensemble import HistGradientBoostingRegressor

        return HistGradientBoostingRegressor(
            max_iter=int(self.n_estimators),
            learning_rate=float(self.learning_rate),
            max_leaf_nodes=int(self.num_leaves),
            min_samples_leaf=self._min_child(n),
            early_stopping=False,
            random_state=int(self.random_state),
        )

    def fit(self, X: Any, Y: Any, **context: Any) -> RegMixLGBM:
        X, Y = self._check_fit_input(X, Y)
        backend = self._backend()
        tr, va = self._split(X.shape[0])
        models, best = [], []
        for i in range(Y.shape[1]):
            y = Y[:, i]
            if backend == "lightgbm":
                ds_params = {"verbosity": -1, "min_data_in_bin": 1}
                dtrain = lgb.Dataset(X[tr], y[tr], params=ds_params)
                kw: dict[str, Any] = {}
                if va is not None:
                    dval = lgb.Dataset(X[va], y[va], reference=dtrain, params=ds_params)
                    kw = {
                        "valid_sets": [dval],
                        "callbacks": [
                            lgb.early_stopping(int(self.early_stopping_rounds or 0), verbose=False)
                        ],
                    }  # set: _split
                booster = lgb.train(
                    self._lgb_params(len(tr)), dtrain, num_boost_round=int(self.n_estimators), **kw
                )
                it = (
                    booster.best_iteration
                    if va is not None and booster.best_iteration > 0
                    else booster.current_iteration()
                )
                # keep only the rounds that are used, so the stored text is the model
                booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=it))
                models.append(booster)
                best.append(int(it))
            else:
                m = self._hgb(X.shape[0]).fit(X, y)
                models.append(m)
                best.append(int(self.n_estimators))
        self.models_, self.best_iterations_, self.backend_ = models, best, backend
        self.train_X_: np.ndarray | None = X if backend == "sklearn" else None
        self.train_Y_: np.ndarray | None = Y if backend == "sklearn" else None
        self.n_domains_ = X.shape[1]
        self.domains_ = _names(context, "domains")
        self.targets_ = _names(context, "targets")
        return self

    def predict(self, X: Any) -> np.ndarray:
        X = _check_predict_input(self, X)
        return np.column_stack([m.predict(X) for m in self.models_])

    def _state(self) -> dict[str, Any]:
        st: dict[str, Any] = {
            "backend": self.backend_,
            "n_domains": self.n_domains_,
            "best_iterations": list(self.best_iterations_),
            "domains": self.domains_,
            "targets": self.targets_,
        }
        if self.backend_ == "lightgbm":
            st["models"] = [m.model_to_string() for m in self.models_]
        else:
            st["train_X"] = np.asarray(self.train_X_).tolist()
            st["train_Y"] = np.asarray(self.train_Y_).tolist()
        return st

    def _load(self, state: dict[str, Any]) -> None:
        self.backend_ = state["backend"]
        self.n_domains_ = int(state["n_domains"])
        self.best_iterations_ = [int(b) for b in state["best_iterations"]]
        self.domains_, self.targets_ = state.get("domains"), state.get("targets")
        if self.backend_ == "lightgbm":
            if lgb is None:
                raise ImportError(
                    "this state holds LightGBM boosters but lightgbm is not importable"
                )
            self.models_ = [lgb.Booster(model_str=s) for s in state["models"]]
            self.train_X_ = self.train_Y_ = None
        else:  # deterministic refit of the HistGradientBoosting fallback
            X = np.asarray(state["train_X"], dtype=float)
            Y = np.asarray(state["train_Y"], dtype=float)
            self.train_X_, self.train_Y_ = X, Y
            self.models_ = [self._hgb(X.shape[0]).fit(X, Y[:, i]) for i in range(Y.shape[1])]


@register("regmix_linear")
class RegMixLinear(MixingEstimator):
    """RegMix's linear regression baseline (Liu et al. 2024, Sec. 2.3): ``L_i(w) = b_i + a_i . w``.

    Ordinary least squares per target (``numpy.linalg.lstsq``, minimum-norm solution when the
    design is rank deficient, e.g. because the weights sum to 1 or a domain is always 0).

    Parameters
    ----------
    fit_intercept : bool, default True

    Attributes
    ----------
    coef_ : (n_targets, n_domains). intercept_ : (n_targets,).
    """

    min_runs: ClassVar[int] = 2
    smooth: ClassVar[bool] = True
    param_specs: ClassVar[dict[str, ParamSpec]] = {
        "fit_intercept": ParamSpec(
            "bool", "fit an intercept (on the simplex it is absorbed otherwise)"
        ),
    }

    def __init__(self, *, fit_intercept: bool = True) -> None:
        self.fit_intercept = fit_intercept

    def fit(self, X: Any, Y: Any, **context: Any) -> RegMixLinear:
        X, Y = self._check_fit_input(X, Y)
        if self.fit_intercept:
            xm, ym = X.mean(axis=0), Y.mean(axis=0)
            coef, *_ = np.linalg.lstsq(X - xm, Y - ym, rcond=None)
            self.coef_ = coef.T
            self.intercept_ = ym - xm @ coef
        else:
            coef, *_ = np.linalg.lstsq(X, Y, rcond=None)
            self.coef_ = coef.T
            self.intercept_ = np.zeros(Y.shape[1])
        self.n_domains_ = X.shape[1]
        self.domains_ = _names(context, "domains")
        self.targets_ = _names(context, "targets")
        return self

    def predict(self, X: Any) -> np.ndarray:
        X = _check_predict_input(self, X)
        return X @ self.coef_.T + self.intercept_[None, :]

    def _state(self) -> dict[str, Any]:
        return {
            "n_domains": self.n_domains_,
            "coef": self.coef_.tolist(),
            "intercept": self.intercept_.tolist(),
            "domains": self.domains_,
            "targets": self.targets_,
        }

    def _load(self, state: dict[str, Any]) -> None:
        self.n_domains_ = int(state["n_domains"])
        self.intercept_ = np.asarray(state["intercept"], dtype=float)
        self.coef_ = np.asarray(state["coef"], dtype=float).reshape(
            len(self.intercept_), self.n_domains_
        )
        self.domains_, self.targets_ = state.get("domains"), state.get("targets")
