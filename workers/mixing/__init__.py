"""Offline mixing estimators, constraints, optimisation, fidelity and design.

Importing this package fills the estimator registry (``workers.mixing.base.ESTIMATORS``).
"""

from workers.mixing import auto, bimix, gp, mixing_law, regmix  # noqa: F401  (register estimators)
from workers.mixing.base import ESTIMATORS, MixingEstimator, get_estimator

__all__ = ["ESTIMATORS", "MixingEstimator", "get_estimator"]
