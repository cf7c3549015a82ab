"""Recommend a mixture from a fitted estimator under constraints.

Two strategies, chosen by ``estimator.smooth``:

* smooth estimators (laws, linear, GP): olmix's proposer (``allenai/olmix``)::

      min_w  f(w) + lambda * KL(w || prior)   s.t.  lo <= w <= hi,  sum w = 1,  fixed w_i

  ``f`` the predicted objective ``sum_i s_i L_i(w)``. Solved with SLSQP from several starts
  (the prior, the middle of the feasible box, the best of a Dirichlet pool) on the free
  domains; gradients by batched forward differences.
* trees (RegMix, Liu et al. 2024, Sec. 2.4): simulate ``n_samples`` (paper: 100,000) mixtures
  from ``Dirichlet(prior)`` around the token prior, project them onto the feasible set,
  predict, and average the ``top_k`` (paper: 128) best. That average is the answer by default,
  as in the paper; ``refine=True`` adds a local refinement (Dirichlet draws concentrated at the
  average, kept only if the predicted objective improves). Measured on the public runs the
  refinement exploits the trees (seed-to-seed L1 variability of the mixture 0.061 -> 0.111),
  hence opt-in.

Every returned mixture is projected onto the feasible set (:mod:`mixopt.mixing.constraints`).

Support of the data: a recommendation is flagged as an *extrapolation* when a weight exceeds
the largest weight any run gave that domain by more than ``EXTRAPOLATION_WEIGHT_TOL`` (0.02), or
when the predicted objective is below the best observed one by more than
``EXTRAPOLATION_LOSS_FRACTION`` (25%) of the observed range; the distances are reported. A
weight beyond :func:`mixopt.mixing.robust.support_bound` (``SUPPORT_FACTOR`` times the largest
weight a run gave that domain, plus ``SUPPORT_TOL``) is refused
(:class:`~mixopt.mixing.robust.OffSupportError`) unless ``allow_extrapolation=True``.
``trust_region=d`` keeps the optimiser near the data: each weight at most ``d`` above the largest
weight the runs gave that domain (the search is then bounded, and not refused).

Surviving refitting (:mod:`mixopt.mixing.robust`): every recommendation with the fit's runs and
``n_boot > 0`` reports ``survival``, the share of bootstrap refits still predicting it better
than the reference (or the prior: the natural mixture in the service) and whether the predicted
gain lies inside the interval; ``robust=True`` recommends the average of the refits' argmins.

Layers: the solver is :mod:`mixopt.mixing.solve` (:func:`~mixopt.mixing.solve.recommend_one`
and the strategies above), a phase plan :mod:`mixopt.mixing.staged`; :func:`recommend` here
dispatches between them and is the one entry point callers use.

Intervals bootstrap the chosen estimator only (for ``auto``, the estimator it kept), never the
whole selection.
"""

from __future__ import annotations

from typing import Any

from mixopt.mixing.base import MixingEstimator
from mixopt.mixing.constraints import Constraints
from mixopt.mixing.simplex import kl_divergence
from mixopt.mixing.solve import (
    EXTRAPOLATION_LOSS_FRACTION,
    EXTRAPOLATION_WEIGHT_TOL,
    PAPER_N_SAMPLES,
    PAPER_TOP_K,
    domain_names,
    find_optimum,
    predict_with_interval,
    recommend_one,
    support_check,
)
from mixopt.mixing.staged import recommend_staged
from mixopt.progress import ProgressFn

__all__ = [
    "EXTRAPOLATION_LOSS_FRACTION",
    "EXTRAPOLATION_WEIGHT_TOL",
    "PAPER_N_SAMPLES",
    "PAPER_TOP_K",
    "find_optimum",
    "kl_divergence",
    "predict_with_interval",
    "recommend",
    "support_check",
]


def recommend(
    estimator: MixingEstimator,
    constraints: Constraints | dict | None = None,
    prior: Any = None,
    objective_weights: Any = None,
    random_state: int = 0,
    *,
    domains: list[str] | None = None,
    X: Any = None,
    Y: Any = None,
    n_boot: int = 20,
    n_samples: int = PAPER_N_SAMPLES,
    top_k: int = PAPER_TOP_K,
    n_starts: int = 4,
    refine: bool = False,
    trust_region: float | None = None,
    reference: dict[str, Any] | None = None,
    phases: list[dict[str, Any]] | None = None,
    robust: bool | None = None,
    allow_extrapolation: bool = False,
    prior_label: str = "prior",
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Best mixture under ``constraints`` according to a fitted ``estimator``.

    Without ``phases``: :func:`mixopt.mixing.solve.recommend_one` (its docstring lists the
    parameters and the returned dict). With ``phases``: a staged recommendation
    (:func:`mixopt.mixing.staged.recommend_staged`); the result is the first phase's, with
    ``staged`` holding every phase.
    """
    kw: dict[str, Any] = dict(
        X=X,
        Y=Y,
        n_boot=n_boot,
        n_samples=n_samples,
        top_k=top_k,
        n_starts=n_starts,
        refine=refine,
        trust_region=trust_region,
        reference=reference,
        robust=robust,
        allow_extrapolation=allow_extrapolation,
        prior_label=prior_label,
    )
    if not phases:
        return recommend_one(
            estimator,
            constraints,
            prior,
            objective_weights,
            random_state,
            domains=domains,
            progress=progress,
            **kw,
        )
    estimator.check_is_fitted()
    c = constraints if isinstance(constraints, Constraints) else Constraints.from_dict(constraints)
    names = domain_names(estimator, domains)
    staged = recommend_staged(
        estimator,
        phases,
        c,
        domains=names,
        random_state=random_state,
        prior=prior,
        objective_names=True,
        objective_weights=objective_weights,
        **kw,
    )
    first = staged.pop("first")
    return dict(first, staged=staged)
