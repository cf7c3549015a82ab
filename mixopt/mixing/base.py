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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Self, cast

import numpy as np

from mixopt.mixing.objective import Objective


@dataclass(frozen=True)
class ParamSpec:
    """Documentation and validation of one estimator hyper-parameter.

    ``kind`` is ``int``, ``float``, ``bool``, ``str``, ``str_list`` or ``dict``; ``low``/``high``
    bound numbers (inclusive), ``choices`` strings; ``nullable`` allows ``None``. The default
    is read from ``__init__``'s signature, so documentation and code cannot drift.
    """

    kind: str
    doc: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    nullable: bool = False

    def describe(self, default: Any) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.kind,
            "default": _jsonable(default),
            "meaning": self.doc,
            "nullable": self.nullable,
        }
        if self.low is not None or self.high is not None:
            out["range"] = [self.low, self.high]
        if self.choices is not None:
            out["choices"] = list(self.choices)
        return out

    def check(self, name: str, value: Any) -> str | None:
        """The reason ``value`` is refused, or ``None`` when it is valid."""
        if value is None:
            return None if self.nullable else f"{name}: must not be null"
        checker = _KIND_CHECKS.get("number" if self.kind in ("int", "float") else self.kind)
        return checker(self, name, value) if checker is not None else None


def _check_number(spec: ParamSpec, name: str, value: Any) -> str | None:
    ok_type = isinstance(value, int) if spec.kind == "int" else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        return (
            f"{name}: must be {'an integer' if spec.kind == 'int' else 'a number'}, got {value!r}"
        )
    if not np.isfinite(float(value)):
        return f"{name}: must be finite"
    if spec.low is not None and value < spec.low:
        return f"{name}: must be >= {spec.low:g}, got {value!r}"
    if spec.high is not None and value > spec.high:
        return f"{name}: must be <= {spec.high:g}, got {value!r}"
    return None


def _check_bool(spec: ParamSpec, name: str, value: Any) -> str | None:
    return None if isinstance(value, bool) else f"{name}: must be true or false, got {value!r}"


def _check_str(spec: ParamSpec, name: str, value: Any) -> str | None:
    if not isinstance(value, str):
        return f"{name}: must be a string, got {value!r}"
    if spec.choices is not None and value not in spec.choices:
        return f"{name}: must be one of {list(spec.choices)}, got {value!r}"
    return None


def _check_str_list(spec: ParamSpec, name: str, value: Any) -> str | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return f"{name}: must be a list of strings"
    if spec.choices is not None and (bad := sorted(set(value) - set(spec.choices))):
        return f"{name}: unknown value(s) {bad}; choose from {list(spec.choices)}"
    return None


def _check_dict(spec: ParamSpec, name: str, value: Any) -> str | None:
    return None if isinstance(value, dict) else f"{name}: must be an object"


#: the check of each ParamSpec kind (``int`` and ``float`` share ``number``)
_KIND_CHECKS: dict[str, Callable[[ParamSpec, str, Any], str | None]] = {
    "number": _check_number,
    "bool": _check_bool,
    "str": _check_str,
    "str_list": _check_str_list,
    "dict": _check_dict,
}


@dataclass(frozen=True)
class NativeTarget:
    """How an estimator whose law has the training steps in it answers at a target step itself,
    without the nested extrapolation (:meth:`MixingEstimator.native_target`).

    ``params``: hyper-parameters the pipeline sets unless the caller did; ``scale``: the scale
    the fit answers at; ``chain``: the laws applied, for the fit's report;
    ``cross_scale_reason``: why no cross-scale validation is run.
    """

    params: dict[str, Any]
    scale: dict[str, Any]
    chain: list[dict[str, Any]]
    cross_scale_reason: str


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
    #: documented hyper-parameters (``GET /v1/estimators``); every ``__init__`` keyword has one
    param_specs: ClassVar[dict[str, ParamSpec]] = {}

    # learned by ``fit`` (declared for the type checker; absent until fitted)
    n_domains_: int
    domains_: list[str] | None
    targets_: list[str] | None

    # -- capabilities the pipeline reads (mixopt.mixing.pipeline): declared, never tested by name
    #: how a fit answers at a scale other than its runs': ``"nested"`` (the runs' losses are
    #: first extrapolated by the steps and size laws, Ye et al. 2024 Sec. 4, and the estimator
    #: is fitted on them) or ``"native_steps"`` (the law has the training steps in it and
    #: evaluates at a target step itself, :meth:`native_target`; BiMix, Ge et al. 2024 Eq. 1)
    scale_handling: ClassVar[str] = "nested"
    #: how the pipeline measures fidelity: ``"cv"`` (K-fold grouped by mixture) or
    #: ``"nested_cv"`` (the estimator selects inside ``fit``: the selection is repeated inside
    #: each outer fold, :meth:`cv_estimator` sets the inner folds)
    fidelity_protocol: ClassVar[str] = "cv"
    #: True when ``fit`` selects among estimators: it takes the fit's CV settings
    #: (:meth:`pipeline_params`) and the context of :meth:`selection_context`
    selects_estimator: ClassVar[bool] = False
    #: True when ``predict(X, steps=s)`` evaluates the law at another training step
    predicts_at_steps: ClassVar[bool] = False

    @classmethod
    def required_runs(cls, n_domains: int) -> int:
        """Distinct mixtures ``fit`` needs for ``n_domains`` domains (default ``min_runs``)."""
        return int(cls.min_runs)

    @classmethod
    def cv_runs_needed(cls, n_domains: int) -> int:
        """Runs the pipeline's cross-validation needs: two folds' worth of ``required_runs``."""
        return 2 * max(1, cls.required_runs(n_domains))

    @classmethod
    def pipeline_params(
        cls, params: dict[str, Any], *, cv_folds: int, random_state: int
    ) -> dict[str, Any]:
        """Hyper-parameters the pipeline fits with, given the fit's CV settings (default:
        ``params`` unchanged; a selecting estimator takes the folds and seed)."""
        return dict(params)

    @classmethod
    def native_target(
        cls, target_scale: dict[str, Any] | None, model_params: Any
    ) -> NativeTarget | None:
        """How the estimator answers at ``target_scale`` by itself, or None when the nested
        pipeline must extrapolate first (``scale_handling == "nested"``: always None)."""
        return None

    def selection_context(
        self, *, objective_weights: Any, groups: Any, progress: Any, cross_scale_fn: Any
    ) -> dict[str, Any]:
        """Extra fit context a selecting estimator uses (default: none)."""
        return {}

    def cv_estimator(self, cv_folds: int) -> MixingEstimator:
        """The estimator the pipeline cross-validates (a selecting one: with fewer inner folds)."""
        return self

    def final_estimator(self) -> MixingEstimator:
        """The estimator that answers (a selecting one: the one it kept)."""
        return self

    def law_label(self) -> str:
        """The law's name in the fit's chain of laws."""
        return self.name

    def law_summary(self) -> dict[str, Any] | None:
        """The fitted law's parameters for the fit's report (None: not a closed-form law)."""
        return None

    def selection_summary(self) -> str | None:
        """One line on what a selecting estimator chose and how (None otherwise)."""
        return None

    def selection_notes(self) -> list[str]:
        """One note per candidate a selecting estimator tried (empty otherwise)."""
        return []

    def selected_cross_scale(self) -> dict[str, Any] | None:
        """A selecting estimator's cross-scale score of its choice when it selected on it."""
        return None

    @classmethod
    def describe_params(cls) -> dict[str, dict[str, Any]]:
        """Each hyper-parameter's type, default, meaning and range."""
        sig = inspect.signature(cls.__init__)
        out = {}
        for name in cls._param_names():
            spec = cls.param_specs.get(name, ParamSpec("any", "(undocumented)", nullable=True))
            out[name] = spec.describe(sig.parameters[name].default)
        return out

    @classmethod
    def validate_params(cls, params: dict[str, Any] | None) -> list[str]:
        """Reasons why ``params`` are refused (unknown names, wrong types, out of range)."""
        errors = []
        known = cls._param_names()
        for k, v in (params or {}).items():
            if k not in known:
                errors.append(f"{k}: unknown parameter of {cls.name}; known: {known}")
                continue
            spec = cls.param_specs.get(k)
            if spec is not None and (why := spec.check(k, v)) is not None:
                errors.append(why)
        return errors

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

    def predict_runs(self, X: np.ndarray, **context: Any) -> np.ndarray:
        """Predictions for runs described by ``context`` (their own scale); held-out runs in
        cross-validation are scored with this. Default: :meth:`predict` (scale-free)."""
        return self.predict(X)

    def predict_objective(self, X: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Weighted sum of predicted losses over targets (default: their mean)."""
        return Objective.parse(weights).reduce(self.predict(X))

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
        return {
            "estimator": self.name,
            "params": _jsonable(self.get_params()),
            "fitted": _jsonable(self._state()),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        klass = ESTIMATORS[state["estimator"]] if cls is MixingEstimator else cls
        est = klass(**state["params"])
        est._load(state["fitted"])
        return cast(Self, est)  # the registered class named by the state (a MixingEstimator)

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
        need = self.required_runs(X.shape[1])
        if X.shape[0] < need:
            raise InsufficientDataError(f"{self.name} needs at least {need} runs, got {X.shape[0]}")
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
