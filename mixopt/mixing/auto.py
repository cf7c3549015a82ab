"""``"auto"``: fit every applicable registered estimator, score each by cross-validated
fidelity on the objective (Spearman, ties broken by MAE) and keep the one that should transfer.

Criterion: when the runs span sizes or budgets and the target lies beyond them, and the caller
can measure it (fit context ``cross_scale_fn``: candidate -> "fit on the smaller scales,
predict the largest" metrics, see :func:`mixopt.mixing.nested.cross_scale_validate`), the best
cross-scale Spearman (ties: its MAE). Otherwise (runs of one scale, the RegMix case, or an
extrapolation that cannot be tested) a single-scale rule on same-scale CV (folds grouped by
mixture): "law_first" (default) keeps the structured law (:data:`STRUCTURED`) unless another
candidate's CV Spearman is higher by more than :data:`LAW_MARGIN`; "cv" keeps the best CV.
Why: at the runs' own scale flexible estimators win by fitting what does not transfer (RegMix
1M -> 1B, issue 23: the GP's 1M CV 0.99 but 1B rank 0.92-0.96, the mixing law's 0.99), while
on the Data Mixing Laws sizes the law is far behind in CV and behind at the larger size too;
the margin separates the two (``bench/auto_rule.py``, pooled over every setting). The fit's
notes say which rule applied and why (:meth:`AutoEstimator.selection_summary`).

The fidelity ``auto`` reports is not its winner's selection score (the best of several, so
optimistic: 0.529 reported where nested CV gave 0.170 on one set) but a nested CV: the whole
choice repeated inside each outer fold. With the fit context ``nested_cv`` (the pipeline)
:meth:`AutoEstimator.fit` computes it from shared fits (its inner folds are the other outer
folds: one fit per pair of folds serves two outer folds, and the outer prediction of the
candidate chosen inside a fold is its plain CV fit, already made) and keeps it in
``nested_cv_``; :func:`mixopt.mixing.fidelity.cross_validate` on an ``auto`` estimator still
repeats the selection inside each fold. Every candidate x fold fit runs on :func:`fit_threads`
threads, with progress per stage.

The ranking table (every candidate's CV metrics, or why it was skipped) is kept in
``table_`` and in the JSON state, so a user sees why an estimator was chosen. Candidates
whose requirements are not met (too few runs, no loss curves for BiMix, ...) raise
:class:`InsufficientDataError` or ``ValueError`` during CV and are recorded as skipped.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Collection
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, ClassVar

import numpy as np

from mixopt.mixing.base import ESTIMATORS, MixingEstimator, ParamSpec, get_estimator, register
from mixopt.mixing.fidelity import (
    cv_result,
    fidelity_metrics,
    group_kfold_indices,
    mixture_groups,
    slice_context,
)
from mixopt.mixing.objective import objective_vector
from mixopt.mixing.trust import RANK_ALPHA, rank_p_value
from mixopt.progress import ProgressFn, report, scaled

#: candidates with a CV MAE above this multiple of the best candidate's are ranked last
MAE_GUARD = 5.0
#: folds of auto's selection inside each outer fold of its nested CV when it is run by
#: :func:`mixopt.mixing.fidelity.cross_validate` (the pipeline uses :attr:`nested_cv_` instead)
NESTED_INNER_FOLDS = 3
#: structured laws (a parametric form per domain, Ye et al. 2024 Eq. 1; Ge et al. 2024 Eq. 1):
#: they carry their shape to another scale, where flexible regressors (GP, trees) revert to
#: what the runs' own scale taught them
STRUCTURED = ("mixing_law", "bimix")
#: single-scale rules (see :func:`choose`): "law_first" (the structured law unless a flexible
#: candidate beats its CV Spearman by more than ``law_margin``) or "cv" (best CV Spearman)
SINGLE_SCALE_RULES = ("law_first", "cv")
#: law_first's margin, from the pooled evidence of ``bench/auto_rule.py`` (every Data Mixing
#: Laws size -> larger size, and RegMix 1M -> 1B): every setting stays within 0.01 of its best
#: single estimator for margins in (0.054, 0.26), and nowhere outside it: below, RegMix's 64
#: runs keep the GP (CV 0.948 vs the law's 0.894; 1B: 0.917 vs 0.989); above, 5Mix keeps its
#: law (CV 0.70 vs the GP's 0.96; 410M: 0.49 vs 0.89). 0.15 is the middle of that interval.
LAW_MARGIN = 0.15
#: what auto keeps when its CV cannot tell the candidates apart (no candidate's CV Spearman is
#: significantly above 0 on the distinct mixtures held out): the first candidate, scored or
#: fitted on every run when the CV's folds were too small for it, in the order of their pooled
#: leave-largest-out Spearman in ``bench/transfer.py``. Runs with one
#: target: gp 0.906, regmix_lgbm 0.682, law_gp 0.638, mixing_law 0.519, regmix_linear 0.496 (gp
#: also has the lowest mean relative error, 0.85% vs 1.78-2.53%, and ranks best from one size:
#: 0.917 vs 0.50-0.74)
UNVALIDATED_ORDER = ("gp", "regmix_lgbm", "law_gp", "mixing_law", "regmix_linear")
#: the same for runs with several targets (per-domain losses combined by the objective), judged
#: on ``--targets per_domain``, where every candidate is fitted per validation domain as Ye et al.
#: 2024 fit their laws: law_gp 0.914, mixing_law 0.898, gp 0.833, regmix_lgbm 0.711,
#: regmix_linear 0.466 (fit on one size, rank a larger one, ``bench/auto_rule.py --targets
#: per_domain``: law_gp at least gp's on 6 of the 7 cases, 2Mix's 5 mixtures the exception)
UNVALIDATED_ORDER_PER_DOMAIN = ("law_gp", "mixing_law", "gp", "regmix_lgbm", "regmix_linear")


def unvalidated_order(n_targets: int = 1) -> tuple[str, ...]:
    """The preference :func:`choose` falls back on when no candidate validated:
    :data:`UNVALIDATED_ORDER` for one target, :data:`UNVALIDATED_ORDER_PER_DOMAIN` for several."""
    return UNVALIDATED_ORDER if n_targets <= 1 else UNVALIDATED_ORDER_PER_DOMAIN


def _unvalidated(
    ok: list[dict[str, Any]],
    best: dict[str, Any],
    criterion: str,
    n: int | None,
    n_targets: int = 1,
    fittable: Collection[str] = (),
) -> dict[str, Any] | None:
    """The first candidate of :func:`unvalidated_order` that was scored or is in ``fittable``
    (not scored, but fitted on every run), with the reason, when the best score on ``n``
    distinct mixtures is not significantly above 0; else None."""
    if n is None:
        return None
    s_best = _metric(best, "spearman", criterion)
    p = rank_p_value(s_best, n) if s_best is not None else None
    if p is not None and p <= RANK_ALPHA:
        return None
    scored = {r["name"]: r for r in ok}
    name = next((c for c in unvalidated_order(n_targets) if c in scored or c in fittable), None)
    if name is None:
        return None
    shown = "n/a" if s_best is None else f"{s_best:.3f}"
    why = (
        f"no candidate validated: the best Spearman ({best['name']}, {shown}) on {n} "
        f"distinct mixtures is not significantly above 0 (one-sided {RANK_ALPHA:g}); keeps "
        f"{name}, the estimator that transfers best pooled over bench/transfer.py "
        f"({'one target' if n_targets <= 1 else f'{n_targets} targets fitted one by one'})"
    )
    if name not in scored:
        why += (
            f"; the CV could not score {name} (see its row: a law needs K + 2 runs in every "
            "training fold) but it fits every run: kept unscored"
        )
    return {"name": name, "why": why}


def fit_threads() -> int:
    """Threads auto fits its candidates with: the cores this process may use, at most the
    ``OMP_NUM_THREADS`` the process was given (a worker pool process gets cores // concurrency)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cap = os.environ.get("OMP_NUM_THREADS", "")
    n = int(cores or 1)
    if cap.isdigit() and int(cap) > 0:
        n = min(n, int(cap))
    return max(1, n)


def _metric(row: dict[str, Any], key: str, criterion: str) -> Any:
    return row[key] if criterion == "cv" else row["cross_scale"][key]


def rank(rows: list[dict[str, Any]], criterion: str = "cv") -> list[dict[str, Any]]:
    """``rows`` (status ``ok``) best first by Spearman (ties: MAE); a candidate whose MAE is
    more than ``MAE_GUARD`` times the best one's ranks last, whatever its rank correlation
    (with few runs a law can order held-out runs by luck while predicting absurd losses).
    Sets ``rank`` and ``guarded`` on each row."""
    maes = [m for r in rows if (m := _metric(r, "mae", criterion)) is not None and np.isfinite(m)]
    best_mae = min(maes) if maes else None
    for r in rows:
        m = _metric(r, "mae", criterion)
        r["guarded"] = bool(
            best_mae is not None and (m is None or not np.isfinite(m) or m > MAE_GUARD * best_mae)
        )

    def key(r: dict[str, Any]) -> tuple:
        s = _metric(r, "spearman", criterion)
        m = _metric(r, "mae", criterion)
        return (r["guarded"], -(s if s is not None else -np.inf), m if m is not None else np.inf)

    out = sorted(rows, key=key)
    for i, r in enumerate(out, 1):
        r["rank"] = i
    return out


def choose(
    rows: list[dict[str, Any]],
    rule: str = "cv",
    criterion: str = "cv",
    margin: float = LAW_MARGIN,
    n: int | None = None,
    n_targets: int = 1,
    fittable: Collection[str] = (),
) -> dict[str, Any]:
    """The candidate a rule keeps from scored ``rows`` (``{name, status, spearman, mae}``).

    ``{"name", "rule", "why"}``: "cv" keeps the best by :func:`rank`; "law_first" keeps the
    best structured law (:data:`STRUCTURED`) unless the best candidate's Spearman exceeds the
    law's by more than ``margin``, or the law is guarded out (MAE) or unscored. The margin is
    not fitted to one setting: see :data:`LAW_MARGIN`. With ``n`` (the distinct mixtures the
    scores were measured on), when even the best Spearman is not significantly above 0
    (one-sided, :data:`~mixopt.mixing.trust.RANK_ALPHA`, the trust test), the scores cannot
    tell the candidates apart and the first candidate of :func:`unvalidated_order` for
    ``n_targets`` (the targets the candidates were fitted on) that was scored, or that is in
    ``fittable`` (too few runs per fold to score it, but it fits every run), is kept; the
    answer then has ``"unvalidated": True``.
    """
    if rule not in SINGLE_SCALE_RULES:
        raise ValueError(f"auto: unknown rule {rule!r}; known: {list(SINGLE_SCALE_RULES)}")
    ok = rank([r for r in rows if r.get("status") == "ok"], criterion)
    if not ok:
        raise ValueError("auto: no candidate to choose from")
    best = ok[0]
    fallback = _unvalidated(ok, best, criterion, n, n_targets, fittable)
    if fallback is not None:
        return {"name": fallback["name"], "rule": rule, "why": fallback["why"], "unvalidated": True}
    out = {"name": best["name"], "rule": rule, "why": "best Spearman"}
    if rule == "cv" or best["name"] in STRUCTURED:
        return out
    laws = [r for r in ok if r["name"] in STRUCTURED and not r["guarded"]]
    s_law = _metric(laws[0], "spearman", criterion) if laws else None
    if s_law is None:
        out["why"] = "best Spearman (no structured law among the scored candidates)"
        return out
    s_best = _metric(best, "spearman", criterion)
    gap = (s_best if s_best is not None else -np.inf) - s_law
    if gap > margin:
        out["why"] = (
            f"best Spearman: {best['name']} beats the law {laws[0]['name']} by {gap:.3f} "
            f"> margin {margin:g}"
        )
        return out
    name = laws[0]["name"]
    return {
        "name": name,
        "rule": rule,
        "why": (
            f"structured law first: {best['name']} beats {name} by only {gap:.3f} "
            f"(<= margin {margin:g}) in Spearman at the runs' scale, where flexible estimators "
            "win without transferring (bench/auto_rule.py)"
        ),
    }


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
    rule : {"law_first", "cv"}, default "law_first"
        How a CV choice is made (runs of one scale): see :func:`choose`.
    law_margin : float, default :data:`LAW_MARGIN`
        law_first: the CV Spearman another candidate must beat the structured law by.

    Attributes
    ----------
    chosen_ : name of the kept estimator. estimator_ : the kept estimator, refit on all runs.
    table_ : list of ``{name, status, spearman, mae, ..., fit_s, reason}`` rows, best first.
    cv_ : the chosen estimator's full CV result (pooled/fold metrics, predictions).
    criterion_, rule_, why_ : how the choice was made, in words for the fit's notes.
    nested_cv_ : with the context ``nested_cv``, the nested CV result (``cv_``'s shape, plus
        ``chosen_per_fold``); else None.
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
        "rule": ParamSpec(
            "str",
            "how runs of one scale choose: law_first (the structured law unless another "
            "candidate's CV Spearman is higher by more than law_margin) or cv (best CV)",
            choices=SINGLE_SCALE_RULES,
        ),
        "law_margin": ParamSpec(
            "float", "law_first: the CV Spearman a flexible candidate must win by", 0.0, 2.0
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
        rule: str = "law_first",
        law_margin: float = LAW_MARGIN,
    ) -> None:
        self.candidates = candidates
        self.candidate_params = candidate_params
        self.cv_folds = cv_folds
        self.random_state = random_state
        self.criterion = criterion
        self.rule = rule
        self.law_margin = law_margin

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
        out = {
            "objective_weights": objective_weights,
            "groups": groups,
            "progress": progress,
            "nested_cv": True,
        }
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
        how = (
            "cross-scale Spearman (the runs span scales: fit on the smaller, predict the largest)"
            if self.criterion_ != "cv"
            else f"rule {self.rule_}: {self.why_}"
        )
        return (
            f"auto chose {self.chosen_} by {how}; its fidelity is a nested CV (the selection "
            "inside each outer fold)"
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

    def _params_of(self, name: str) -> dict[str, Any]:
        return dict((self.candidate_params or {}).get(name, {}))

    def fit(self, X: Any, Y: Any, **context: Any) -> AutoEstimator:
        """Every candidate's K-fold CV (one fit per fold, candidates and folds on
        :func:`fit_threads` threads), the choice (:func:`choose`, or cross-scale), and, when the
        context asks ``nested_cv`` (the pipeline), the nested CV from shared fits: for outer
        fold f the selection's inner CV holds out each other fold g from a fit on the runs
        outside f and g, so one fit per pair of folds serves both outer folds, and the outer
        prediction of the candidate chosen inside f is its fit without fold f, already made."""
        X, Y = self._check_fit_input(X, Y)
        weights = context.pop("objective_weights", None)
        cross_fn = context.pop("cross_scale_fn", None)
        progress = context.pop("progress", None)
        groups = context.pop("groups", None)
        want_nested = bool(context.pop("nested_cv", False))
        if self.rule not in SINGLE_SCALE_RULES:
            raise ValueError(f"auto: unknown rule {self.rule!r}; known: {list(SINGLE_SCALE_RULES)}")
        y = Y @ objective_vector(weights, Y.shape[1])
        groups = mixture_groups(X) if groups is None else np.asarray(groups).ravel()
        split = group_kfold_indices(groups, self.cv_folds, self.random_state)
        fold_of = np.empty(X.shape[0], dtype=int)
        for f, te in enumerate(split):
            fold_of[te] = f
        names = self._names()
        if self.candidates is None and context.get("experts") is None:
            # MDE estimators (mixopt.mixing.mde) are candidates only when experts are given
            names = [n for n in names if not getattr(ESTIMATORS[n], "needs_experts", False)]
        report(progress, 0.0, f"auto: {len(split)}-fold CV of {len(names)} candidates")
        single = self._fold_fits(
            X,
            Y,
            weights,
            context,
            split,
            [(f,) for f in range(len(split))],
            names,
            scaled(progress, 0.0, 0.45),
            "CV",
        )
        rows, results, preds = self._cv_rows(names, single, y, fold_of, groups, split)
        ok = [r for r in rows if r["status"] == "ok"]
        if not ok:
            raise ValueError(
                "auto: no candidate estimator could be fitted: "
                + "; ".join(f"{r['name']}: {r['reason']}" for r in rows)
            )
        self.criterion_ = self._criterion(ok, cross_fn, progress)
        n_held = (
            len(np.unique(groups)) if self.criterion_ == "cv" else int(ok[0]["cross_scale"]["n"])
        )
        rule = self.rule if self.criterion_ == "cv" else "cv"

        def pick_from(fittable: Collection[str] = ()) -> dict[str, Any]:
            return choose(
                ok,
                rule,
                self.criterion_,
                self.law_margin,
                n=n_held,
                n_targets=Y.shape[1],
                fittable=fittable,
            )

        pick = pick_from()
        unscored = (
            self._fittable_unscored(X, Y, context, rows, pick["name"])
            if pick.get("unvalidated") and self.criterion_ == "cv"
            else None
        )
        if unscored is not None:
            pick = pick_from({unscored[0]})
        if cross_fn is not None and self.criterion_ == "cv":
            untested: dict[str, Any] = next(
                (r["cross_scale"] for r in ok if r.get("cross_scale", {}).get("status") != "ok"),
                {},
            )
            pick["why"] += (
                "; the runs' extrapolation could not be tested, so the single-scale rule "
                f"applies ({untested.get('reason') or 'cross-scale check off'})"
            )
        self.chosen_, self.rule_, self.why_ = pick["name"], pick["rule"], pick["why"]
        if self.chosen_ in results:
            self.cv_ = results[self.chosen_]
        else:  # kept unscored: its row says why the CV skipped it
            row = next(r for r in rows if r["name"] == self.chosen_)
            self.cv_ = {"status": "unscored", "reason": row["reason"]}
            row["reason"] = f"chosen ({rule}): {pick['why']} [CV: {row['reason']}]"
        self._annotate(ok, pick)
        self.table_ = rank(ok, self.criterion_) + [r for r in rows if r["status"] != "ok"]
        for r in self.table_:
            r.pop("guarded", None)
        self.nested_cv_ = None
        if want_nested:
            self.nested_cv_ = self._nested(
                X,
                Y,
                y,
                weights,
                context,
                split,
                fold_of,
                groups,
                ok,
                single,
                results,
                preds,
                scaled(progress, 0.5, 0.95),
            )
        if unscored is not None and unscored[0] == self.chosen_:
            self.estimator_ = unscored[1]
        else:
            report(progress, 0.95, f"auto: refitting {self.chosen_} on every run")
            self.estimator_ = get_estimator(self.chosen_, **self._params_of(self.chosen_))
            self.estimator_.fit(X, Y, **context)
        self.n_domains_ = X.shape[1]
        report(progress, 1.0, f"auto chose {self.chosen_}")
        return self

    def _fold_fits(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        weights: Any,
        context: dict[str, Any],
        split: list[np.ndarray],
        outs: list[tuple[int, ...]],
        names: list[str],
        progress: ProgressFn | None,
        stage: str,
    ) -> dict[tuple[Any, ...], Any]:
        """``{(candidate, held-out folds): objective predicted for the held-out runs (in
        index order) by a fit on the other runs}``, or the exception the fit raised."""
        n = X.shape[0]
        w = objective_vector(weights, Y.shape[1])

        def task(name: str, out: tuple[int, ...]) -> np.ndarray:
            te = np.sort(np.concatenate([split[f] for f in out]))
            tr = np.setdiff1d(np.arange(n), te)
            est = get_estimator(name, **self._params_of(name))
            est.fit(X[tr], Y[tr], **slice_context(context, tr, n))
            P = np.atleast_2d(est.predict_runs(X[te], **slice_context(context, te, n)))
            return np.ravel(P @ w)

        jobs = [(name, out) for name in names for out in outs]
        return run_tasks(task, jobs, progress, f"auto: {stage}")

    def _cv_rows(
        self,
        names: list[str],
        single: dict[tuple[str, tuple[int, ...]], Any],
        y: np.ndarray,
        fold_of: np.ndarray,
        groups: np.ndarray,
        split: list[np.ndarray],
    ) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], dict[str, np.ndarray]]:
        rows, results, preds = [], {}, {}
        for name in names:
            outs = [single[(name, (f,))][0] for f in range(len(split))]
            err = next((o for o in outs if isinstance(o, Exception)), None)
            secs = float(sum(single[(name, (f,))][1] for f in range(len(split))))
            if err is not None:
                rows.append({"name": name, "status": "skipped", "reason": str(err), "fit_s": secs})
                continue
            pred = np.empty(y.size)
            for f, te in enumerate(split):
                pred[te] = outs[f]
            cv = cv_result(y, pred, fold_of, groups)
            m = cv["pooled"]
            rows.append(
                {
                    "name": name,
                    "status": "ok",
                    **{k: m[k] for k in ("spearman", "pearson", "mae", "r2", "regret")},
                    "fit_s": secs,
                    "reason": "",
                }
            )
            results[name], preds[name] = cv, pred
        return rows, results, preds

    def _fittable_unscored(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        context: dict[str, Any],
        rows: list[dict[str, Any]],
        default: str,
    ) -> tuple[str, MixingEstimator] | None:
        """The first candidate before ``default`` in :func:`unvalidated_order` that the CV
        could not score (a law on training folds of fewer than K + 2 runs) but that fits every
        run, with its fit on every run; None when there is none."""
        skipped = {r["name"] for r in rows if r["status"] != "ok"}
        order = unvalidated_order(Y.shape[1])
        before = order[: order.index(default)] if default in order else order
        for name in (c for c in before if c in skipped):
            est = get_estimator(name, **self._params_of(name))
            try:
                est.fit(X, Y, **context)
            except (ValueError, np.linalg.LinAlgError):
                continue
            return name, est
        return None

    def _criterion(
        self, ok: list[dict[str, Any]], cross_fn: Any, progress: ProgressFn | None
    ) -> str:
        """ "cross_scale" when the runs span scales and every candidate's extrapolation could
        be tested (fit on the smaller, predict the largest), else "cv"."""
        criterion = "cv"
        if cross_fn is not None and self.criterion in ("auto", "cross_scale"):
            report(progress, 0.45, "auto: fit on the smaller scales, predict the largest")
            for r in ok:
                cs = cross_fn(get_estimator(r["name"], **self._params_of(r["name"])))
                r["cross_scale"] = {
                    k: cs.get(k)
                    for k in ("status", "n", "spearman", "mae", "mean_rel_error", "reason")
                }
            if all(r["cross_scale"]["status"] == "ok" for r in ok):
                criterion = "cross_scale"
        if self.criterion == "cross_scale" and criterion != "cross_scale":
            raise ValueError(
                "auto: criterion cross_scale, but the extrapolation cannot be tested on these "
                "runs: " + "; ".join(str(r.get("cross_scale", {}).get("reason")) for r in ok[:1])
            )
        return criterion

    def _annotate(self, ok: list[dict[str, Any]], pick: dict[str, Any]) -> None:
        label = "CV" if self.criterion_ == "cv" else "cross-scale"
        for r in ok:
            if r["guarded"]:
                r["reason"] = (
                    f"{label} MAE more than {MAE_GUARD:g}x the best candidate's: predictions not "
                    "trusted"
                )
            elif r["name"] == pick["name"]:
                r["reason"] = f"chosen ({pick['rule']}): {pick['why']}"
            else:
                r["reason"] = f"not chosen: lower {label} Spearman (ties: higher MAE) or rule"

    def _nested(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        y: np.ndarray,
        weights: Any,
        context: dict[str, Any],
        split: list[np.ndarray],
        fold_of: np.ndarray,
        groups: np.ndarray,
        ok: list[dict[str, Any]],
        single: dict[tuple[str, tuple[int, ...]], Any],
        results: dict[str, dict[str, Any]],
        preds: dict[str, np.ndarray],
        progress: ProgressFn | None,
    ) -> dict[str, Any] | None:
        """The selection repeated inside each outer fold (see :meth:`fit`). Cross-scale
        selection does not look at same-scale CV, so its nested CV is the chosen one's CV."""
        k = len(split)
        names = [r["name"] for r in ok]
        if self.criterion_ != "cv":
            out = dict(self.cv_, chosen_per_fold=[self.chosen_] * k)
            out["inner"] = "none: the choice is cross-scale, independent of these folds"
            return out
        if len(names) == 1:
            return dict(results[names[0]], chosen_per_fold=names * k, inner="one candidate")
        pairs: list[tuple[int, ...]] = [(f, g) for f in range(k) for g in range(f + 1, k)]
        pair = self._fold_fits(X, Y, weights, context, split, pairs, names, progress, "nested CV")
        nested = np.empty(y.size)
        chosen = []
        for f in range(k):
            inner_rows = []
            idx = np.sort(np.concatenate([split[g] for g in range(k) if g != f]))
            for name in names:
                p = np.empty(y.size)
                failed = False
                for g in range(k):
                    if g == f:
                        continue
                    a, b = min(f, g), max(f, g)
                    res = pair[(name, (a, b))][0]
                    if isinstance(res, Exception):
                        failed = True
                        break
                    te = np.sort(np.concatenate([split[a], split[b]]))
                    p[split[g]] = res[np.isin(te, split[g])]
                if failed:
                    continue
                m = fidelity_metrics(y[idx], p[idx])
                inner_rows.append({"name": name, "status": "ok", **m})
            if not inner_rows:
                return None
            n_inner = len(np.unique(groups[idx]))
            win = choose(
                inner_rows, self.rule, "cv", self.law_margin, n=n_inner, n_targets=Y.shape[1]
            )["name"]
            chosen.append(win)
            nested[split[f]] = preds[win][split[f]]
        out = cv_result(y, nested, fold_of, groups)
        out["chosen_per_fold"] = chosen
        out["inner"] = f"{k - 1} folds (the other outer folds), one fit per pair of folds"
        return out

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
            "rule": self.rule_,
            "why": self.why_,
            "cv": cv,
            "chosen_state": self.estimator_.to_state(),
        }

    def _load(self, state: dict[str, Any]) -> None:
        self.n_domains_ = int(state["n_domains"])
        self.chosen_ = state["chosen"]
        self.table_ = state["table"]
        self.cv_ = state["cv"]
        self.criterion_ = state.get("criterion", "cv")
        # fits stored before the single-scale rules chose by best CV (or cross-scale) Spearman
        self.rule_ = state.get("rule", "cv")
        self.why_ = state.get("why", "best Spearman")
        self.nested_cv_ = None
        self.estimator_ = MixingEstimator.from_state(state["chosen_state"])


def run_tasks(
    task: Callable[..., np.ndarray],
    jobs: list[tuple[Any, ...]],
    progress: ProgressFn | None,
    stage: str,
) -> dict[tuple[Any, ...], Any]:
    """``{job: task(*job)}`` on :func:`fit_threads` threads (serially with one), progress
    reported after each job from the calling thread (so a :class:`~mixopt.progress.Cancelled`
    it raises cancels the jobs not yet started). A job that raises ``ValueError`` (an
    :class:`~mixopt.mixing.base.InsufficientDataError` too), ``ImportError`` or ``LinAlgError``
    maps to that exception. Each value is ``(result or exception, seconds)``."""
    out: dict[tuple[Any, ...], Any] = {}

    def timed(job: tuple[Any, ...]) -> Any:
        t0 = time.perf_counter()
        try:
            res: Any = task(*job)
        except (ValueError, ImportError, np.linalg.LinAlgError) as exc:
            res = exc
        return res, time.perf_counter() - t0

    n_threads = min(fit_threads(), max(1, len(jobs)))
    if n_threads > 1:
        # one BLAS thread per fit while the fits share the cores: n threads each running an
        # n-thread BLAS oversubscribe them (OpenBLAS's busy waits made auto 2-3x slower)
        with _blas_threads(1):
            return _run_threaded(timed, jobs, n_threads, progress, stage)
    for i, job in enumerate(jobs):
        report(progress, i / max(1, len(jobs)), f"{stage}: {job[0]} {i + 1}/{len(jobs)}")
        out[job] = timed(job)
    report(progress, 1.0, f"{stage} done")
    return out


def _blas_threads(n: int) -> contextlib.AbstractContextManager:
    try:
        from threadpoolctl import threadpool_limits  # scikit-learn's dependency
    except ImportError:  # pragma: no cover - the science extra brings it
        return contextlib.nullcontext()
    return threadpool_limits(limits=n, user_api="blas")


def _run_threaded(
    timed: Callable[[tuple[Any, ...]], Any],
    jobs: list[tuple[Any, ...]],
    n_threads: int,
    progress: ProgressFn | None,
    stage: str,
) -> dict[tuple[Any, ...], Any]:
    out: dict[tuple[Any, ...], Any] = {}
    with ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="auto") as pool:
        futures: dict[Future, tuple[Any, ...]] = {pool.submit(timed, j): j for j in jobs}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    out[futures[fut]] = fut.result()
                report(
                    progress,
                    len(out) / len(jobs),
                    f"{stage}: {len(out)}/{len(jobs)} fits ({n_threads} threads)",
                )
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
    return out
