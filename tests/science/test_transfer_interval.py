"""A fit at a target scale predicts with the interval of the whole chain (issue 23, item 3):
``pipeline.predict_interval`` given the fit's ``scaling`` adds the laws' sd to the
estimator's own error."""

import numpy as np
import pytest

from mixopt.mixing.nested import chain_sd
from mixopt.mixing.pipeline import fit_estimator, predict_interval

pytestmark = pytest.mark.science


def _law(r, N, S):
    return 1.2 + np.exp(np.asarray(r) @ np.array([0.3, -0.8, 0.5])) + 60 / N**0.3 + 40 / S**0.45


def _fit_at_target(rng):
    """A linear fit on 8 mixtures x 3 sizes with curves to 30k steps, answering at 1B / 100k."""
    X, Y, P, S, curves = [], [], [], [], []
    for r in rng.dirichlet(np.ones(3), size=8):
        for N in (2e7, 8e7, 3e8):
            curves.append(
                [
                    (s, {"loss": _law(r, N, s) + rng.normal(0, 2e-3)})
                    for s in range(4000, 30000, 2000)
                ]
            )
            X.append(r)
            Y.append([_law(r, N, 30_000) + rng.normal(0, 2e-3)])
            P.append(N)
            S.append(30_000.0)
    fit = fit_estimator(
        "regmix_linear", {}, np.array(X), np.array(Y), domains=["a", "b", "c"], targets=["loss"],
        target_scale={"model_params": 1e9, "train_steps": 100_000}, model_params=np.array(P),
        steps=np.array(S), curves=curves, cv_folds=3,
    )  # fmt: skip
    return fit, np.array(X), np.array(Y)


def test_prediction_at_a_target_scale_carries_the_chain_interval():
    rng = np.random.default_rng(0)
    fit, X, Y = _fit_at_target(rng)
    rel = chain_sd(fit["scaling"])
    assert rel is not None and rel > 0
    Xq = rng.dirichlet(np.ones(3), size=4)
    out = predict_interval(
        fit["state"], Xq, scaling=fit["scaling"], fidelity=fit["fidelity"], level=0.9
    )
    mean, lo, hi, sd = (np.asarray(out[k]) for k in ("mean", "lower", "upper", "std"))
    assert out["method"] == "chain" and out["level"] == 0.9
    assert np.all(lo < mean) and np.all(mean < hi)
    # the chain's part alone is a floor of the sd; the estimator's CV error adds to it
    mae = fit["fidelity"]["pooled"]["mae"]
    np.testing.assert_allclose(sd, np.sqrt((rel * mean) ** 2 + np.pi / 2 * mae**2))
    # without the fit's scaling: the estimator's own interval only (none for a linear model)
    plain = predict_interval(fit["state"], Xq, level=0.9)
    assert plain["method"] != "chain"


def test_recommendation_at_a_target_scale_carries_the_chain_interval():
    """What the API stores for a recommendation through the scaling laws: the chain's interval
    at 95%, not the estimator's bootstrap alone (which knows nothing of the laws' error)."""
    from mixopt.mixing.pipeline import chain_estimator_sd, recommend

    rng = np.random.default_rng(1)
    fit, X, Y = _fit_at_target(rng)
    rec = recommend(
        fit["state"], None, X=X, Y=Y, n_boot=8, scaling=fit["scaling"],
        fidelity=fit["fidelity"], allow_extrapolation=True,
    )  # fmt: skip
    assert rec["interval_method"] == "chain" and rec["interval_level"] == 0.95
    f = rec["predicted_objective"]
    lo, hi = rec["interval"]
    rel = chain_sd(fit["scaling"])
    own = rec["estimator_std"]  # the bootstrap refits' sd of the linear model
    assert own > 0
    est_sd = max(own, np.sqrt(np.pi / 2) * fit["fidelity"]["pooled"]["mae"])
    np.testing.assert_allclose(chain_estimator_sd(own, fit["fidelity"]), est_sd)
    half = 1.959964 * np.sqrt((rel * f) ** 2 + est_sd**2)
    np.testing.assert_allclose([lo, hi], [f - half, f + half], rtol=1e-6)
    # without the fit's scaling the interval is the estimator's own (bootstrap)
    training = fit["scaling"]["training"]
    plain = recommend(
        fit["state"], None, X=training["X"], Y=training["Y"], n_boot=8, allow_extrapolation=True
    )
    assert plain["interval_method"].startswith("bootstrap")
    assert hi - lo > plain["interval"][1] - plain["interval"][0]
