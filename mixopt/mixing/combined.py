"""``"law_gp"``: a Gaussian process whose prior mean is the fitted data mixing law.

The two strengths measured on the public runs (issue 11): the GP ranks same-scale runs best
(it interpolates what the law misses), the mixing law (Ye et al. 2024, Eq. 3) transfers best
across scale and away from the runs (a parametric form). Here the law is fitted first,
``L_i(r) = c_i + exp(t_i . r)``, then a GP (:mod:`mixopt.mixing.gp`, Matern 5/2 ARD + noise)
models the residuals ``y - L_i(r)`` (Rasmussen & Williams 2006, Sec. 2.7, "explicit basis
functions" with the basis fixed by the law's fit)::

    f_i(r) = L_i(r) + g_i(r),   g_i ~ GP(0, k)

Far from the runs the GP's residual reverts to 0 and the prediction to the law; near the runs
the GP corrects the law's systematic errors. The predictive std is the residual GP's.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from mixopt.mixing.base import MixingEstimator, ParamSpec, register
from mixopt.mixing.gp import WARPS, GaussianProcessMixing
from mixopt.mixing.mixing_law import PAPER_N_RESTARTS, MixingLaw


@register("law_gp")
class LawGP(MixingEstimator):
    """Mixing law as the mean of a Gaussian process on its residuals.

    Parameters
    ----------
    law_n_restarts, law_n_refine : the mixing law's screened starts and refinements.
    gp_warp : the residual GP's input warp ("auto" by marginal likelihood).
    random_state : seed of both.

    Attributes
    ----------
    law_ : fitted :class:`MixingLaw`. gp_ : :class:`GaussianProcessMixing` on the residuals.
    """

    min_runs: ClassVar[int] = 3
    smooth: ClassVar[bool] = True
    param_specs: ClassVar[dict[str, ParamSpec]] = {
        "law_n_restarts": ParamSpec("int", "mixing law: random starts screened", 1, 100_000),
        "law_n_refine": ParamSpec("int", "mixing law: starts refined with L-BFGS-B", 1, 200),
        "gp_warp": ParamSpec("str", "residual GP's input warp", choices=("auto", *WARPS)),
        "random_state": ParamSpec("int", "seed", 0, 2**31 - 1),
    }

    def __init__(
        self,
        *,
        law_n_restarts: int = PAPER_N_RESTARTS,
        law_n_refine: int = 4,
        gp_warp: str = "auto",
        random_state: int = 0,
    ) -> None:
        self.law_n_restarts = law_n_restarts
        self.law_n_refine = law_n_refine
        self.gp_warp = gp_warp
        self.random_state = random_state

    @classmethod
    def required_runs(cls, n_domains: int) -> int:
        return MixingLaw.required_runs(n_domains)

    def fit(self, X: Any, Y: Any, **context: Any) -> LawGP:
        X, Y = self._check_fit_input(X, Y)
        self.law_ = MixingLaw(
            n_restarts=self.law_n_restarts,
            n_refine=self.law_n_refine,
            random_state=self.random_state,
        ).fit(X, Y, **context)
        R = Y - self.law_.predict(X)
        self.gp_ = GaussianProcessMixing(warp=self.gp_warp, random_state=self.random_state).fit(
            X, R, **context
        )
        self.n_domains_ = X.shape[1]
        self.domains_ = self.law_.domains_
        self.targets_ = self.law_.targets_
        self.at_bound_ = self.law_.at_bound_
        return self

    def law_summary(self) -> dict[str, Any] | None:
        """The mixing law's parameters (the GP models its residuals)."""
        return self.law_.law_summary()

    def predict(self, X: Any) -> np.ndarray:
        self.check_is_fitted()
        return self.law_.predict(X) + self.gp_.predict(X)

    def predict_std(self, X: Any) -> np.ndarray:
        return self.gp_.predict_std(X)

    def predict_objective_std(self, X: Any, weights: Any = None) -> np.ndarray:
        return self.gp_.predict_objective_std(X, weights)

    def _state(self) -> dict[str, Any]:
        return {
            "n_domains": self.n_domains_,
            "law": self.law_.to_state(),
            "gp": self.gp_.to_state(),
        }

    def _load(self, state: dict[str, Any]) -> None:
        self.n_domains_ = int(state["n_domains"])
        self.law_ = MixingLaw.from_state(state["law"])
        self.gp_ = GaussianProcessMixing.from_state(state["gp"])
        self.domains_, self.targets_ = self.law_.domains_, self.law_.targets_
        self.at_bound_ = self.law_.at_bound_
