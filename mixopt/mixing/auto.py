"""``"auto"``: fit every applicable registered estimator, rank them by cross-validated
fidelity on the objective (Spearman, ties broken by MAE) and keep the best.

Criterion: same-scale CV (folds grouped by mixture) when the answer is at the runs' scale;
when the target lies beyond the runs and the caller can measure it (fit context
``cross_scale_fn``: candidate -> "fit on the smaller scales, predict the largest" metrics, see
:func:`mixopt.mixing.nested.cross_scale_validate`), candidates are ranked by that cross-scale
Spearman instead (ties: its MAE): on the public RegMix runs the GP has the best 1M CV but the
mixing law ranks the 1B runs better.

The fidelity ``auto`` reports is not its winner's selection score (the best of several, so
optimistic: 0.529 reported where nested CV gave 0.170 on one set): the service runs a nested
CV, the whole selection inside each outer fold (:func:`mixopt.mixing.fidelity.cross_validate`
on an ``auto`` estimator does exactly that).

The ranking table (every candidate's CV metrics, or why it was skipped) is kept in
``table_`` and in the JSON state, so a user sees why an estimator was chosen. Candidates
whose requirements are not met (too few runs, no loss curves for BiMix, ...) raise
:class:`InsufficientDataError` or ``ValueError`` during CV and are recorded as skipped.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np

from mixopt.mixing.base import ESTIMATORS, MixingEstimator, ParamSpec, get_estimator, register
from mixopt.mixing.fidelity import cross_validate
from mixopt.progress import report, scaled

#: candidates with a CV MAE above this multiple of the best candidate's are ranked last
MAE_GUARD = 5.0
#: folds of auto's selection inside each outer fold of its nested CV (the pipeline's)
NESTED_INNER_FOLDS = 3


@register("auto")
class AutoEstimator(MixingEstimator):
    """Model selection by k-fold CV fidelity.

    Parameters
    ----------
    candidates : list of str or None
        Estimator names to try; default every registered estimator except ``"auto"``.
    candidate_params : dict or None
        ``{name: {param: value}}`` passed to each candidate.
    cv_folds : int, default 5
    random_state : int, default 0
        Seed of the CV split (the same split for every candidate).
    criterion : {"auto", "cv", "cross_scale"}, default "auto"
        "auto": cross-scale when the fit context gives ``cross_scale_fn`` and it answers, else CV.

    Attributes
    ----------
    chosen_ : name of the kept estimator. estimator_ : the kept estimator, refit on all runs.
    table_ : list of ``{name, status, spearman, mae, ..., fit_s, reason}`` rows, best first.
    cv_ : the chosen estimator's full CV result (pooled/fold metrics, predictions).
    """

    min_runs: ClassVar[int] = 3
    #: the selection runs inside fit, so the pipeline repeats it in each outer fold
    fidelity_protocol: ClassVar[str] = "nested_cv"
    selects_estimator: ClassVar[bool] = True
    param_specs: ClassVar[dict[str, ParamSpec]] = {
        "candidates": ParamSpec(
            "str_list", "estimators to try; null: every registered one", nullable=True
        ),
        "candidate_params": ParamSpec(
            "dict", "{estimator: {param: value}} for the candidates", nullable=True
        ),
        "cv_folds": ParamSpec(
            "int", "folds of the selection CV (the service sets the fit's cv_folds)", 2, 20
        ),
        "random_state": ParamSpec(
            "int", "seed of the CV split (the service sets the fit's random_state)", 0, 2**31 - 1
        ),
        "criterion": ParamSpec(
            "str",
            "auto: cross-scale when the target lies beyond the runs, else CV",
            choices=("auto", "cv", "cross_scale"),
        ),
    }

    def __init__(
        self,
        *,
        candidates: list[str] | None = None,
        candidate_params: dict[str, dict[str, Any]] | None = None,
        cv_folds: int = 5,
        random_state: int = 0,
        criterion: str = "auto",
    ) -> None:
        self.candidates = candidates
        self.candidate_params = candidate_params
        self.cv_folds = cv_folds
        self.random_state = random_state
        self.criterion = criterion

    @classmethod
    def validate_params(cls, params: dict[str, Any] | None) -> list[str]:
        errors = super().validate_params(params)
        params = params or {}
        known = sorted(n for n in ESTIMATORS if n != "auto")
        for name in params.get("candidates") or []:
            if isinstance(name, str) and name not in known:
                errors.append(f"candidates: unknown estimator {name!r}; known: {known}")
        cp = params.get("candidate_params") or {}
        if isinstance(cp, dict):
            for name, sub in cp.items():
                if name not in known:
                    errors.append(f"candidate_params: unknown estimator {name!r}; known: {known}")
                elif not isinstance(sub, dict):
                    errors.append(f"candidate_params.{name}: must be an object")
                else:
                    errors += [
                        f"candidate_params.{name}.{e}"
                        for e in ESTIMATORS[name].validate_params(sub)
                    ]
        return errors

    @property
    def smooth(self) -> bool:  # type: ignore[override]
        est = getattr(self, "estimator_", None)
        return bool(est.smooth) if est is not None else True

    # -- the pipeline's capabilities (see MixingEstimator) --------------------------------
    @classmethod
    def cv_runs_needed(cls, n_domains: int) -> int:
        """Two outer folds of two runs: every candidate checks its own minimum inside."""
        return 4

    @classmethod
    def pipeline_params(
        cls, params: dict[str, Any], *, cv_folds: int, random_state: int
    ) -> dict[str, Any]:
        """The selection uses the fit's folds and seed unless the caller set them."""
        out = dict(params)
        out.setdefault("cv_folds", int(cv_folds))
        out.setdefault("random_state", int(random_state))
        return out

    def selection_context(
        self, *, objective_weights: Any, groups: Any, progress: Any, cross_scale_fn: Any
    ) -> dict[str, Any]:
        out = {"objective_weights": objective_weights, "groups": groups, "progress": progress}
        if cross_scale_fn is not None:
            out["cross_scale_fn"] = cross_scale_fn
        return out

    def cv_estimator(self, cv_folds: int) -> MixingEstimator:
        """A copy whose inner selection uses at most ``NESTED_INNER_FOLDS`` folds (the outer
        CV has ``cv_folds``): bounds the cost of the nested CV."""
        return self.clone().set_params(cv_folds=min(int(cv_folds), NESTED_INNER_FOLDS))

    def final_estimator(self) -> MixingEstimator:
        return self.estimator_

    def law_label(self) -> str:
        return f"auto -> {self.chosen_}"

    def law_summary(self) -> dict[str, Any] | None:
        return self.estimator_.law_summary()

    def selection_summary(self) -> str | None:
        return (
            f"auto chose {self.chosen_} by {'cross-scale' if self.criterion_ != 'cv' else 'CV'} "
            "Spearman; its fidelity is a nested CV (the selection inside each outer fold)"
        )

    def selection_notes(self) -> list[str]:
        return [
            f"{r['name']}: {r['status']} spearman={r.get('spearman')} mae={r.get('mae')} "
            f"{r.get('reason', '')}"
            for r in self.table_
        ]

    def selected_cross_scale(self) -> dict[str, Any] | None:
        if self.criterion_ != "cross_scale":
            return None
        row = next(r for r in self.table_ if r["name"] == self.chosen_)
        return dict(
            row["cross_scale"],
            selection=True,
            note=(
                "the chosen estimator's cross-scale score is also its selection score (optimistic)"
            ),
        )

    def _names(self) -> list[str]:
        names = (
            self.candidates
            if self.candidates is not None
            else sorted(n for n in ESTIMATORS if n != "auto")
        )
        return [n for n in names if n != "auto"]

    def fit(self, X: Any, Y: Any, **context: Any) -> AutoEstimator:
        X, Y = self._check_fit_input(X, Y)
        weights = context.pop("objective_weights", None)
        cross_fn = context.pop("cross_scale_fn", None)
        progress = context.pop("progress", None)
        groups = context.pop("groups", None)
        rows: list[dict[str, Any]] = []
        results: dict[str, dict[str, Any]] = {}
        names = self._names()
        for ci, name in enumerate(names):
            report(progress, ci / len(names), f"auto: cross-validating {name}")
            params = (self.candidate_params or {}).get(name, {})
            est = get_estimator(name, **params)
            t0 = time.perf_counter()
            try:
                cv = cross_validate(
                    est,
                    X,
                    Y,
                    objective_weights=weights,
                    n_folds=self.cv_folds,
                    random_state=self.random_state,
                    groups=groups,
                    progress=scaled(progress, ci / len(names), (ci + 1) / len(names)),
                    **context,
                )
            except (
                ValueError,
                ImportError,
                np.linalg.LinAlgError,
            ) as exc:  # InsufficientDataError is a ValueError
                rows.append(
                    {
                        "name": name,
                        "status": "skipped",
                        "reason": str(exc),
                        "fit_s": time.perf_counter() - t0,
                    }
                )
                continue
            m = cv["pooled"]
            rows.append(
                {
                    "name": name,
                    "status": "ok",
                    "spearman": m["spearman"],
                    "pearson": m["pearson"],
                    "mae": m["mae"],
                    "r2": m["r2"],
                    "regret": m["regret"],
                    "fit_s": time.perf_counter() - t0,
                    "reason": "",
                }
            )
            results[name] = cv
        ok = [r for r in rows if r["status"] == "ok"]
        if not ok:
            raise ValueError(
                "auto: no candidate estimator could be fitted: "
                + "; ".join(f"{r['name']}: {r['reason']}" for r in rows)
            )

        # a candidate whose CV error is far above the best one's ranks last whatever its rank
        # correlation: with few runs a law can order held-out runs by luck while predicting
        # absurd losses (a recommendation from it would be meaningless)
        self.criterion_ = "cv"
        if cross_fn is not None and self.criterion in ("auto", "cross_scale"):
            for r in ok:
                cs = cross_fn(
                    get_estimator(r["name"], **(self.candidate_params or {}).get(r["name"], {}))
                )
                r["cross_scale"] = {
                    k: cs.get(k) for k in ("status", "spearman", "mae", "mean_rel_error", "reason")
                }
            if all(r["cross_scale"]["status"] == "ok" for r in ok):
                self.criterion_ = "cross_scale"
        if self.criterion == "cross_scale" and self.criterion_ != "cross_scale":
            raise ValueError(
                "auto: criterion cross_scale, but the extrapolation cannot be tested on these "
                "runs: " + "; ".join(str(r.get("cross_scale", {}).get("reason")) for r in ok[:1])
            )
        label = "CV" if self.criterion_ == "cv" else "cross-scale"

        def metric(r, k):
            return r[k] if self.criterion_ == "cv" else r["cross_scale"][k]

        maes = [
            metric(r, "mae")
            for r in ok
            if metric(r, "mae") is not None and np.isfinite(metric(r, "mae"))
        ]
        best_mae = min(maes) if maes else None

        def unreliable(r) -> bool:
            m = metric(r, "mae")
            return best_mae is not None and (
                m is None or not np.isfinite(m) or m > MAE_GUARD * best_mae
            )

        def key(r):
            s = metric(r, "spearman")
            m = metric(r, "mae")
            return (
                unreliable(r),
                -(s if s is not None else -np.inf),
                m if m is not None else np.inf,
            )

        ok.sort(key=key)
        for rank, r in enumerate(ok, 1):
            r["rank"] = rank
            if unreliable(r):
                r["reason"] = (
                    f"{label} MAE more than {MAE_GUARD:g}x the best candidate's: predictions not "
                    "trusted"
                )
            else:
                r["reason"] = (
                    f"chosen: best {label} Spearman"
                    if rank == 1
                    else f"lower {label} Spearman (ties: higher MAE)"
                )
        self.table_ = ok + [r for r in rows if r["status"] != "ok"]
        self.chosen_ = ok[0]["name"]
        self.cv_ = results[self.chosen_]
        self.estimator_ = get_estimator(
            self.chosen_, **(self.candidate_params or {}).get(self.chosen_, {})
        )
        self.estimator_.fit(X, Y, **context)
        self.n_domains_ = X.shape[1]
        report(progress, 1.0, f"auto chose {self.chosen_}")
        return self

    def predict(self, X: Any, **kw: Any) -> np.ndarray:
        self.check_is_fitted()
        return self.estimator_.predict(X, **kw)

    def predict_runs(self, X: Any, **context: Any) -> np.ndarray:
        self.check_is_fitted()
        return self.estimator_.predict_runs(X, **context)

    def __getattr__(self, item: str):
        # delegate optional capabilities (predict_std, predict_objective_std) to the chosen one
        if item in ("predict_std", "predict_objective_std") and "estimator_" in self.__dict__:
            return getattr(self.__dict__["estimator_"], item)
        raise AttributeError(item)

    def _state(self) -> dict[str, Any]:
        cv = {k: v for k, v in self.cv_.items()}
        return {
            "n_domains": self.n_domains_,
            "chosen": self.chosen_,
            "table": self.table_,
            "criterion": self.criterion_,
            "cv": cv,
            "chosen_state": self.estimator_.to_state(),
        }

    def _load(self, state: dict[str, Any]) -> None:
        self.n_domains_ = int(state["n_domains"])
        self.chosen_ = state["chosen"]
        self.table_ = state["table"]
        self.cv_ = state["cv"]
        self.criterion_ = state.get("criterion", "cv")
        self.estimator_ = MixingEstimator.from_state(state["chosen_state"])
