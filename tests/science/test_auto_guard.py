"""auto never keeps a candidate whose predictions are absurd, however well it ranks runs."""

import numpy as np

from mixopt.mixing.auto import AutoEstimator
from mixopt.mixing.base import ESTIMATORS, MixingEstimator


class _Linear(MixingEstimator):
    min_runs = 3

    def __init__(self, *, scale: float = 1.0, jitter: float = 0.0):
        self.scale, self.jitter = scale, jitter

    def fit(self, X, Y, **context):
        X, Y = self._check_fit_input(X, Y)
        self.coef_ = np.linalg.lstsq(X, Y, rcond=None)[0]
        self.n_domains_ = X.shape[1]
        return self

    def predict(self, X):
        P = np.atleast_2d(X) @ self.coef_
        rng = np.random.default_rng(int(1e6 * float(np.abs(P).sum())) % 2**32)
        return self.scale * P + self.jitter * rng.standard_normal(P.shape)

    def _state(self):
        return {"coef": self.coef_.tolist(), "n_domains": self.n_domains_}

    def _load(self, state):
        self.coef_, self.n_domains_ = np.array(state["coef"]), state["n_domains"]


class _Absurd(_Linear):
    name = "test_absurd"


class _Sane(_Linear):
    name = "test_sane"


def test_auto_ranks_absurd_predictions_last(monkeypatch):
    monkeypatch.setitem(ESTIMATORS, "test_absurd", _Absurd)
    monkeypatch.setitem(ESTIMATORS, "test_sane", _Sane)
    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(4), size=60)
    y = X @ np.array([3.0, 2.5, 2.0, 1.0])
    auto = AutoEstimator(
        candidates=["test_absurd", "test_sane"],
        candidate_params={"test_absurd": {"scale": 1000.0}, "test_sane": {"jitter": 0.05}},
    )
    auto.fit(X, y[:, None])
    rows = {r["name"]: r for r in auto.table_}
    # the absurd one orders held-out runs perfectly, the sane one almost as well with small errors
    assert rows["test_absurd"]["spearman"] > rows["test_sane"]["spearman"]
    assert rows["test_absurd"]["mae"] > 100 * rows["test_sane"]["mae"]
    assert auto.chosen_ == "test_sane"
    assert "not trusted" in rows["test_absurd"]["reason"]
