"""Offline mixing estimators, constraints, optimisation, fidelity and design.

Importing this package fills the estimator registry (``mixopt.mixing.base.ESTIMATORS``).
"""

from mixopt.mixing import auto, bimix, combined, gp, mde, mixing_law, regmix  # noqa: F401  (register estimators)
from mixopt.mixing.base import ESTIMATORS, MixingEstimator, get_estimator

__all__ = ["ESTIMATORS", "MixingEstimator", "get_estimator"]
