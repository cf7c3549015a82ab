"""``"auto"``: fit every applicable registered estimator, rank them by cross-validated
fidelity on the objective (Spearman, ties broken by MAE) and keep the best.

The ranking table (every candidate's CV metrics, or why it was skipped) is kept in
``table_`` and in the JSON state, so a user sees why an estimator was chosen. Candidates
whose requirements are not met (too few runs, no loss curves for BiMix, ...) raise
:class:`InsufficientDataError` or ``ValueError`` during CV and are recorded as skipped.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np

from mixopt.mixing.base import ESTIMATORS, MixingEstimator, get_estimator, register
from mixopt.mixing.fidelity import cross_validate

#: candidates with a CV MAE above this multiple of the best candidate's are ranked last
MAE_GUARD = 5.0


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

    Attributes
    ----------
    chosen_ : name of the kept estimator. estimator_ : the kept estimator, refit on all runs.
    table_ : list of ``{name, status, spearman, mae, ..., fit_s, reason}`` rows, best first.
    cv_ : the chosen estimator's full CV result (pooled/fold metrics, predictions).
    """

    min_runs: ClassVar[int] = 3

    def __init__(
        self,
        *,
        candidates: list[str] | None = None,
        candidate_params: dict[str, dict[str, Any]] | None = None,
        cv_folds: int = 5,
        random_state: int = 0,
    ) -> None:
        self.candidates = candidates
        self.candidate_params = candidate_params
        self.cv_folds = cv_folds
        self.random_state = random_state

    @property
    def smooth(self) -> bool:  # type: ignore[override]
        est = getattr(self, "estimator_", None)
        return bool(est.smooth) if est is not None else True

    def _names(self) -> list[str]:
        names = self.candidates if self.candidates is not None else sorted(n for n in ESTIMATORS if n != "auto")
        return [n for n in names if n != "auto"]

    def fit(self, X: Any, Y: Any, **context: Any) -> AutoEstimator:
        X, Y = self._check_fit_input(X, Y)
        weights = context.pop("objective_weights", None)
        rows, results = [], {}
        for name in self._names():
            params = (self.candidate_params or {}).get(name, {})
            est = get_estimator(name, **params)
            t0 = time.perf_counter()
            try:
                cv = cross_validate(est, X, Y, objective_weights=weights, n_folds=self.cv_folds,
                                    random_state=self.random_state, **context)
            except (ValueError, ImportError, np.linalg.LinAlgError) as exc:  # InsufficientDataError is a ValueError
                rows.append({"name": name, "status": "skipped", "reason": str(exc),
                             "fit_s": time.perf_counter() - t0})
                continue
            m = cv["pooled"]
            rows.append({"name": name, "status": "ok", "spearman": m["spearman"], "pearson": m["pearson"],
                         "mae": m["mae"], "r2": m["r2"], "regret": m["regret"],
                         "fit_s": time.perf_counter() - t0, "reason": ""})
            results[name] = cv
        ok = [r for r in rows if r["status"] == "ok"]
        if not ok:
            raise ValueError("auto: no candidate estimator could be fitted: "
                             + "; ".join(f"{r['name']}: {r['reason']}" for r in rows))

        # a candidate whose CV error is far above the best one's ranks last whatever its rank
        # correlation: with few runs a law can order held-out runs by luck while predicting
        # absurd losses (a recommendation from it would be meaningless)
        maes = [r["mae"] for r in ok if r["mae"] is not None and np.isfinite(r["mae"])]
        best_mae = min(maes) if maes else None

        def unreliable(r) -> bool:
            return best_mae is not None and (r["mae"] is None or not np.isfinite(r["mae"])
                                             or r["mae"] > MAE_GUARD * best_mae)

        def key(r):
            s = r["spearman"] if r["spearman"] is not None else -np.inf
            return (unreliable(r), -s, r["mae"] if r["mae"] is not None else np.inf)

        ok.sort(key=key)
        for rank, r in enumerate(ok, 1):
            r["rank"] = rank
            if unreliable(r):
                r["reason"] = f"CV MAE more than {MAE_GUARD:g}x the best candidate's: predictions not trusted"
            else:
                r["reason"] = "chosen: best CV Spearman" if rank == 1 else "lower CV Spearman (ties: higher MAE)"
        self.table_ = ok + [r for r in rows if r["status"] != "ok"]
        self.chosen_ = ok[0]["name"]
        self.cv_ = results[self.chosen_]
        self.estimator_ = get_estimator(self.chosen_, **(self.candidate_params or {}).get(self.chosen_, {}))
        self.estimator_.fit(X, Y, **context)
        self.n_domains_ = X.shape[1]
        return self

    def predict(self, X: Any, **kw: Any) -> np.ndarray:
        self.check_is_fitted()
        return self.estimator_.predict(X, **kw)

    def __getattr__(self, item: str):
        # delegate optional capabilities (predict_std, predict_objective_std) to the chosen one
        if item in ("predict_std", "predict_objective_std") and "estimator_" in self.__dict__:
            return getattr(self.__dict__["estimator_"], item)
        raise AttributeError(item)

    def _state(self) -> dict[str, Any]:
        cv = {k: v for k, v in self.cv_.items()}
        return {"n_domains": self.n_domains_, "chosen": self.chosen_, "table": self.table_,
                "cv": cv, "chosen_state": self.estimator_.to_state()}

    def _load(self, state: dict[str, Any]) -> None:
        self.n_domains_ = int(state["n_domains"])
        self.chosen_ = state["chosen"]
        self.table_ = state["table"]
        self.cv_ = state["cv"]
        self.estimator_ = MixingEstimator.from_state(state["chosen_state"])
