"""Paired comparison of mixtures trained with the same seeds (pure statistics).

Every mixture of a validation is trained once per seed with the same initialisation and the
same sampler stream (common random numbers: a run differs from its partner of the same seed
only by its mixture). :func:`paired_comparison` gives per mixture the mean and spread of the
objective and of each domain's loss, and against each reference mixture the paired difference
``d_s = objective(mixture, s) - objective(reference, s)`` with a Student t interval
``mean(d) +- t_{(1 + confidence) / 2, n-1} sd(d) / sqrt(n)`` and the seeds it wins. The pairing
is what makes a few seeds informative: the seed alone moves a tiny model's loss far more than
most mixtures differ, but it moves both runs of a pair alike.
"""

from __future__ import annotations

import math
from typing import Any

from scipy.stats import t as student_t

__all__ = ["CONFIDENCE", "paired_comparison"]

CONFIDENCE = 0.95


def _t_quantile(p: float, df: int) -> float:
    return float(student_t.ppf(p, df))


def paired_comparison(
    labels: list[str],
    objective: list[list[float]],
    domains: dict[str, list[list[float]]],
    references: list[int],
    seeds: list[int],
    confidence: float = CONFIDENCE,
) -> dict[str, Any]:
    """The comparison of a validation from its runs' scores (pure).

    Parameters
    ----------
    labels : one per mixture.
    objective : ``objective[i][s]`` the objective of mixture ``i`` with seed ``seeds[s]``.
    domains : per domain name, ``[i][s]`` its validation loss.
    references : indices of the mixtures the others are compared against.
    """
    n = len(seeds)

    def stats(values: list[float]) -> tuple[float, float]:
        mean = math.fsum(values) / len(values)
        std = (
            math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))
            if len(values) > 1
            else 0.0
        )
        return mean, std

    mixtures = []
    for i, label in enumerate(labels):
        mean, std = stats(objective[i])
        per_domain = {}
        for d, vals in domains.items():
            m, s = stats(vals[i])
            per_domain[d] = {"mean": m, "std": s, "values": list(vals[i])}
        mixtures.append(
            {
                "label": label,
                "objective": list(objective[i]),
                "mean": mean,
                "std": std,
                "domains": per_domain,
            }
        )
    comparisons = []
    t = _t_quantile(0.5 + confidence / 2, n - 1) if n > 1 else None
    for r in references:
        for i, label in enumerate(labels):
            if i == r:
                continue
            diffs = [objective[i][s] - objective[r][s] for s in range(n)]
            mean, std = stats(diffs)
            half = t * std / math.sqrt(n) if t is not None else None
            comparisons.append(
                {
                    "label": label,
                    "reference": labels[r],
                    "differences": diffs,
                    "mean": mean,
                    "std": std,
                    "interval_low": None if half is None else mean - half,
                    "interval_high": None if half is None else mean + half,
                    "confidence": confidence,
                    "wins": sum(d < 0 for d in diffs),
                    "seeds": n,
                    "domains": {
                        d: math.fsum(vals[i][s] - vals[r][s] for s in range(n)) / n
                        for d, vals in domains.items()
                    },
                }
            )
    return {"mixtures": mixtures, "comparisons": comparisons}
