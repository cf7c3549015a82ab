"""A baseline to beat: a reference-constrained recommendation is never predicted worse than
the reference on any objective metric (random references, smooth and tree recommenders,
with group constraints too), reports per-metric gains with bootstrap intervals, and says
"no improvement possible" when the reference is the known optimum of a synthetic law."""

from __future__ import annotations

import numpy as np
import pytest

from mixopt.mixing.base import MixingEstimator, get_estimator
from mixopt.mixing.optimize import recommend

pytestmark = pytest.mark.science

D = ["a", "b", "c", "d"]
T = np.array([[-2.0, -0.5, -0.3, -0.1], [-0.2, -1.5, -0.3, -0.1], [-0.1, -0.2, -1.8, -0.4]])


def _runs(n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.dirichlet(np.ones(4), size=n)
    return X, 2 + np.exp(X @ T.T) + rng.normal(0, 0.002, (n, 3))


FAST = {
    "regmix_linear": {},
    "regmix_lgbm": {"n_estimators": 200},
    "mixing_law": {"n_restarts": 24, "n_refine": 2},
}


@pytest.mark.parametrize("name", list(FAST))
def test_never_predicted_worse_than_the_reference(name):
    X, Y = _runs()
    est = get_estimator(name, **FAST[name]).fit(X, Y, domains=D, targets=["x", "y", "z"])
    rng = np.random.default_rng(1)
    for ref in rng.dirichlet(np.ones(4), size=3):
        rec = recommend(
            est, {}, domains=D, n_boot=0, n_samples=4000, reference={"mixture": ref.tolist()}
        )
        P_ref = est.predict(ref[None])[0]
        P_w = est.predict(np.array(rec["mixture"])[None])[0]
        assert np.all(P_w <= P_ref + 1e-7), (P_w, P_ref)
        r = rec["reference"]
        assert [m["gain"] for m in r["metrics"]] == pytest.approx(list(P_ref - P_w), abs=1e-9)
        assert all(m["no_worse"] for m in r["metrics"])
        assert r["status"] in ("improves", "no_improvement")
        # a random reference on this law is beatable
        assert r["status"] == "improves" and r["objective_gain"] > 0


def test_reference_with_group_constraints_and_intervals():
    X, Y = _runs()
    est = get_estimator("regmix_linear").fit(
        X, Y, domains=["s:a", "s:b", "c", "d"], targets=["x", "y", "z"]
    )
    ref = {"mixture": [0.2, 0.2, 0.3, 0.3], "tolerance": 0.0, "label": "current"}
    rec = recommend(
        est,
        {"groups": {"s": {"max": 0.4}}},
        domains=["s:a", "s:b", "c", "d"],
        n_boot=8,
        X=X,
        Y=Y,
        reference=ref,
    )
    assert rec["group_totals"]["s"] <= 0.4 + 1e-6
    r = rec["reference"]
    assert r["label"] == "current" and r["reference_feasible"] is True
    for m in r["metrics"]:
        lo, hi = m["interval"]
        assert lo <= m["gain"] <= hi
    assert "Against the reference current" in rec["explanation"]


class TwoBowls(MixingEstimator):
    """Two metrics ``L_j(w) = 1 + |w - OPT|^2 * (j + 1)``, both minimised at OPT (a test double)."""

    name = "two_bowls"
    smooth = True

    def __init__(self, *, opt=None):
        self.opt = opt

    def fit(self, X, Y, **context):
        self.n_domains_ = len(self.opt)
        return self

    def predict(self, X):
        d = ((np.atleast_2d(X) - np.asarray(self.opt)) ** 2).sum(axis=1)
        return np.stack([1 + d, 1 + 2 * d], axis=1)


def test_no_improvement_possible_when_the_reference_is_optimal():
    opt = [0.4, 0.3, 0.2, 0.1]
    est = TwoBowls(opt=opt).fit(None, None)
    rec = recommend(
        est, {}, domains=D, n_boot=0, reference={"mixture": dict(zip(D, opt, strict=True))}
    )
    r = rec["reference"]
    assert r["status"] == "no_improvement"
    assert "no mixture under the constraints is predicted to beat the reference" in r["reason"]
    assert rec["mixture"] == pytest.approx(opt, abs=1e-9)
    assert "NO IMPROVEMENT POSSIBLE" in rec["explanation"]
    # a reference away from the optimum is beaten on both metrics
    r2 = recommend(est, {}, domains=D, n_boot=0, reference={"mixture": [0.25] * 4})["reference"]
    assert r2["status"] == "improves" and all(m["gain"] > 0 for m in r2["metrics"])


def test_bad_reference_refused():
    est = TwoBowls(opt=[0.25] * 4).fit(None, None)
    with pytest.raises(ValueError, match="reference.mixture"):
        recommend(est, {}, domains=D, n_boot=0, reference={"mixture": {"zz": 1.0}})
    with pytest.raises(ValueError, match="reference.mixture"):
        recommend(est, {}, domains=D, n_boot=0, reference={"mixture": [0.5, 0.5, 0.5, 0.5]})
