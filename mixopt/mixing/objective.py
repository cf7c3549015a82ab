"""The objective a mixture is chosen for: weights over the target metrics.

Every estimator predicts one loss per target metric ``L_1 .. L_T``; the objective is their
weighted sum ``f(w) = sum_j s_j L_j(w)`` (DESIGN.md's ``sum_i s_i L_i``; the mixing law of
Ye et al. 2024 combines the validation domains "explicitly" with known weights in the same
way). Without weights the objective is the mean over the targets (``s_j = 1 / T``).

Weights come from callers in two forms, parsed here and nowhere else:

* by name, ``{target: weight}``: targets not named weigh 0; an unknown name is an error;
* as a list in the estimator's target order, of exactly ``T`` entries.

Examples
--------
>>> Objective.parse({"b": 1.0}, targets=["a", "b"]).vector(2).tolist()
[0.0, 1.0]
>>> Objective.parse(None).vector(4).tolist()
[0.25, 0.25, 0.25, 0.25]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Objective", "objective_vector"]


@dataclass(frozen=True)
class Objective:
    """Weights ``s`` over target metrics; ``weights`` None means the mean over the targets.

    Parameters
    ----------
    weights : explicit weights in target order, or None (the mean).
    targets : the target names the weights are ordered by, when known.
    """

    weights: np.ndarray | None = None
    targets: tuple[str, ...] | None = None

    @classmethod
    def parse(
        cls,
        weights: Any,
        *,
        targets: Sequence[str] | None = None,
        n_targets: int | None = None,
        field: str = "objective_weights",
    ) -> Objective:
        """Read weights given by name (``{target: w}``) or as a list in target order.

        Raises
        ------
        ValueError
            Naming ``field``: weights by name without target names, an unknown target, a
            list of the wrong length or a weight that is not a finite number.
        """
        names = None if targets is None else tuple(str(t) for t in targets)
        n = len(names) if names is not None and n_targets is None else n_targets
        if weights is None:
            return cls(None, names)
        if isinstance(weights, Objective):
            return cls(weights.weights, names or weights.targets)
        if isinstance(weights, Mapping):
            if names is None:
                raise ValueError(
                    f"{field} given by name need target names (the estimator has none)"
                )
            unknown = sorted(set(map(str, weights)) - set(names))
            if unknown:
                raise ValueError(
                    f"{field}: unknown target(s) {unknown}; the fit's are {list(names)}"
                )
            w = np.array([float(weights.get(t, 0.0)) for t in names])
        else:
            w = np.asarray(weights, dtype=float).ravel()
            if n is not None and w.size != n:
                raise ValueError(f"{field} has {w.size} entries for {n} targets")
        if not np.all(np.isfinite(w)):
            raise ValueError(f"{field}: weights must be finite numbers")
        return cls(w, names)

    @property
    def explicit(self) -> np.ndarray | None:
        """The weights as given (None for the mean), the form estimators accept."""
        return self.weights

    def vector(self, n_targets: int) -> np.ndarray:
        """The weights over ``n_targets`` targets (``1 / T`` each without explicit weights)."""
        if self.weights is None:
            return np.full(int(n_targets), 1.0 / int(n_targets))
        if self.weights.size != int(n_targets):
            raise ValueError(
                f"objective_weights has {self.weights.size} entries for {n_targets} targets"
            )
        return self.weights

    def reduce(self, P: Any) -> np.ndarray:
        """The objective of each row of per-target losses ``P`` (``(n, T)``): ``P @ s``."""
        P = np.atleast_2d(np.asarray(P, dtype=float))
        return P @ self.vector(P.shape[1])


def objective_vector(weights: Any, n_targets: int, field: str = "objective_weights") -> np.ndarray:
    """``Objective.parse(weights, n_targets=n_targets).vector(n_targets)``: list weights (or
    None, the mean) over ``n_targets`` targets as an array."""
    return Objective.parse(weights, n_targets=n_targets, field=field).vector(n_targets)
