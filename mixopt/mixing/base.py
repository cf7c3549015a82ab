"""The estimator contract shared by every offline mixing estimator.

Follows scikit-learn's conventions (see ../shared/STYLE.md):

* ``__init__`` only stores keyword hyper-parameters (no validation, no work);
* ``fit(X, Y, **context)`` validates, learns attributes ending in ``_`` and returns ``self``;
* ``predict(X)`` checks the estimator is fitted and returns predicted losses;
* randomness only through ``random_state``;
* fitted state round-trips through JSON (``to_state`` / ``from_state``), never pickles.

Shapes
------
``X``: ``(n_runs, n_domains)`` mixtures on the simplex, in the caller's domain order (the
estimator stores ``domains_`` when given). ``Y``: ``(n_runs, n_targets)`` losses, one column
per evaluation metric (a 1-D ``y`` is treated as one target). ``predict`` returns
``(n_mixtures, n_targets)``; ``predict_objective(X, weights)`` the weighted sum over targets.

Optional fit context (keyword arguments an estimator may use or ignore):
``steps``/``tokens``/``params`` (per-run scale, shape ``(n_runs,)``), ``curves`` (per-run list
of ``(step, losses)``), ``domains``, ``targets``, ``token_counts``.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import numpy as np


class NotFittedError(RuntimeError):
    """Raised when ``predict`` is called before ``fit``."""


class InsufficientDataError(ValueError):
    """Raised by ``fit`` when there are too few runs; the message says how many are needed."""


ESTIMATORS: dict[str, type[MixingEstimator]] = {}


def register(name: str):
    """Class decorator: make an estimator available by name (Optuna-style registry)."""

    def deco(cls: type[MixingEstimator]) -> type[MixingEstimator]:
        cls.name = name
        ESTIMATORS[name] = cls
        return cls

    return deco


def get_estimator(name: str, **params: Any) -> MixingEstimator:
    if name not in ESTIMATORS:
        raise KeyError(f"unknown estimator {name!r}; known: {sorted(ESTIMATORS)}")
    return ESTIMATORS[name](**params)


class MixingEstimator:
    """Base class. Subclasses implement ``fit``, ``predict`` and the ``_state``/``_load`` pair."""

    name: ClassVar[str] = "base"
    #: smallest number of runs ``fit`` accepts (checked by ``_check_fit_input``)
    min_runs: ClassVar[int] = 1
    #: True when ``predict`` is smooth in X (so recommendations use a gradient optimiser)
    smooth: ClassVar[bool] = True

    # -- scikit-learn style parameter handling -------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        return [p.name for p in sig.parameters.values() if p.name != "self" and p.kind in kinds]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params: Any) -> MixingEstimator:
        for k, v in params.items():
            if k not in self._param_names():
                raise ValueError(f"invalid parameter {k!r} for {type(self).__name__}")
            setattr(self, k, v)
        return self

    def clone(self) -> MixingEstimator:
        return type(self)(**self.get_params())

    # -- contract ----------------------------------------------------------------------
    def fit(self, X: np.ndarray, Y: np.ndarray, **context: Any) -> MixingEstimator:
        raise NotImplementedError

    def predict(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict_objective(self, X: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Weighted sum of predicted losses over targets (default: their mean)."""
        P = np.atleast_2d(self.predict(X))
        if weights is None:
            weights = np.full(P.shape[1], 1.0 / P.shape[1])
        return P @ np.asarray(weights, dtype=float)

    def is_fitted(self) -> bool:
        return hasattr(self, "n_domains_")

    def check_is_fitted(self) -> None:
        if not self.is_fitted():
            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit first")

    # -- JSON persistence ----------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        """Learned attributes as JSON-able values (lists, floats, dicts)."""
        raise NotImplementedError

    def _load(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def to_state(self) -> dict[str, Any]:
        self.check_is_fitted()
        return {"estimator": self.name, "params": _jsonable(self.get_params()), "fitted": _jsonable(self._state())}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> MixingEstimator:
        klass = ESTIMATORS[state["estimator"]] if cls is MixingEstimator else cls
        est = klass(**state["params"])
        est._load(state["fitted"])
        return est

    # -- helpers -----------------------------------------------------------------------
    def _check_fit_input(self, X: Any, Y: Any) -> tuple[np.ndarray, np.ndarray]:
        X = np.asarray(X, dtype=float)
        Y = np.asarray(Y, dtype=float)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (runs x domains), got shape {X.shape}")
        if Y.ndim == 1:
            Y = Y[:, None]
        if Y.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} runs but Y has {Y.shape[0]}")
        if not np.all(np.isfinite(X)) or not np.all(np.isfinite(Y)):
            raise ValueError("X and Y must be finite")
        if np.any(X < 0):
            raise ValueError("mixture weights must be >= 0")
        if X.shape[0] < self.min_runs:
            raise InsufficientDataError(
                f"{self.name} needs at least {self.min_runs} runs, got {X.shape[0]}"
            )
        return X, Y


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
