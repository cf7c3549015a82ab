"""Trust at the scale a fit answers at (issue 23, item 6): a fit that does not rank or predict
held-out runs there is not trusted whatever its other checks; mixtures the scaling laws could
not fit on their own are said."""

import numpy as np
import pytest

from mixopt.mixing.fidelity import fidelity_metrics
from mixopt.mixing.pipeline import fit_estimator
from mixopt.mixing.trust import NOTE, assess, rank_p_value

pytestmark = pytest.mark.science


class _Fitted:
    """A fitted estimator without exponent bounds (the checks below read only predictions)."""


def _fidelity(actual: np.ndarray, predicted: np.ndarray) -> dict:
    return {
        "pooled": fidelity_metrics(actual, predicted),
        "predictions": [
            {"actual": a, "predicted": p} for a, p in zip(actual, predicted, strict=True)
        ],
    }


def _weak(n: int, seed: int, signal: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = 2.5 + 0.05 * rng.standard_normal(n)
    return a, a.mean() + signal * (a - a.mean()) + 0.05 * rng.standard_normal(n)


def test_rank_test_follows_the_t_distribution():
    # critical rho of the one-sided 5% test: 0.729 at n = 6, 0.378 at n = 20 (tables)
    assert rank_p_value(0.72, 6) > 0.05 > rank_p_value(0.74, 6)
    assert rank_p_value(0.37, 20) > 0.05 > rank_p_value(0.39, 20)
    assert rank_p_value(0.99, 3) is None


def test_poor_fidelity_at_the_answering_scale_is_not_trusted():
    # the case: a fit whose CV at its scale ranks at ~0.26 with a negative R^2
    a, p = _weak(20, 0, 0.3)
    fid = _fidelity(a, p)
    rho, r2 = fid["pooled"]["spearman"], fid["pooled"]["r2"]
    assert 0 < rho < 0.38 and r2 < 0
    trusted, reasons = assess(_Fitted(), fid, a, p)
    assert trusted is False
    assert any("not significantly above 0" in r and "20 runs" in r for r in reasons)
    assert any("R^2" in r and "no better than their mean" in r for r in reasons)
    # the same runs predicted well: trusted
    good = a + 0.005 * np.random.default_rng(1).standard_normal(20)
    assert assess(_Fitted(), _fidelity(a, good), a, good) == (True, [])


def test_poor_cross_scale_is_not_trusted_whatever_the_same_scale_cv():
    a = np.linspace(2.4, 2.6, 20)
    same = _fidelity(a, a + 0.001 * np.sin(np.arange(20)))
    held, pred = _weak(6, 3, 0.2)
    cross = {
        "status": "ok",
        "n": 6,
        "spearman": fidelity_metrics(held, pred)["spearman"],
        "predictions": [{"actual": x, "predicted": y} for x, y in zip(held, pred, strict=True)],
    }
    trusted, reasons = assess(_Fitted(), same, a, a, cross)
    assert trusted is False and reasons and all("cross-scale" in r for r in reasons)
    assert assess(_Fitted(), same, a, a, None) == (True, [])


def _law(r, N, S):
    return 1.2 + np.exp(np.asarray(r) @ np.array([0.3, -0.8, 0.5])) + 60 / N**0.3 + 40 / S**0.45


def test_mixtures_the_size_law_cannot_fit_are_said_in_the_reasons():
    rng = np.random.default_rng(0)
    X, Y, P = [], [], []
    for i, r in enumerate(rng.dirichlet(np.ones(3), size=8)):
        for N in [2e7, 8e7, 3e8] if i < 6 else [8e7]:  # 2 mixtures at one size only
            X.append(r)
            Y.append([_law(r, N, 30_000) + rng.normal(0, 2e-4)])
            P.append(N)
    out = fit_estimator(
        "regmix_linear",
        {},
        np.array(X),
        np.array(Y),
        domains=["a", "b", "c"],
        targets=["loss"],
        target_scale={"model_params": 1e9, "train_steps": 30_000},
        model_params=np.array(P),
        steps=np.full(len(P), 30_000.0),
        cv_folds=3,
    )
    notes = [r for r in out["trust_reasons"] if r.startswith(NOTE)]
    assert notes == [
        f"{NOTE} 2 of 8 mixtures were run at one model size only: their losses at the target "
        "borrow the size effect of the others"
    ]
