"""Fidelity metrics on hand-computable cases, k-fold CV with any registered estimator, the
"auto" selector (table, delegation, JSON) and the service facade."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mixopt.mixing  # noqa: F401
from mixopt.mixing import pipeline
from mixopt.mixing.auto import AutoEstimator
from mixopt.mixing.base import MixingEstimator
from mixopt.mixing.fidelity import cross_validate, fidelity_metrics, kfold_indices
from mixopt.mixing.regmix import RegMixLinear


def test_perfect_predictor():
    a = np.array([3.0, 1.0, 2.0, 5.0])
    m = fidelity_metrics(a, a)
    assert m["spearman"] == 1.0 and m["pearson"] == pytest.approx(1.0)
    assert m["mae"] == 0.0 and m["r2"] == 1.0 and m["regret"] == 0.0


def test_hand_computed_case():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    p = np.array([2.0, 1.0, 3.0, 4.0])  # ranks best the run whose true loss is 2
    m = fidelity_metrics(a, p)
    assert m["regret"] == pytest.approx(1.0)
    assert m["mae"] == pytest.approx(0.5)
    assert m["spearman"] == pytest.approx(0.8)  # 1 - 6 * 2 / (4 * 15)
    assert m["r2"] == pytest.approx(1 - 2 / 5)
    assert fidelity_metrics(a, -a)["spearman"] == -1.0
    assert fidelity_metrics(a, np.ones(4))["spearman"] is None  # constant prediction


def test_kfold_indices_partition():
    folds = kfold_indices(23, 5, random_state=1)
    assert len(folds) == 5 and sorted(np.concatenate(folds).tolist()) == list(range(23))
    assert [f.tolist() for f in kfold_indices(23, 5, 1)] == [f.tolist() for f in folds]


def test_cross_validate_linear_truth():
    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(4), 50)
    Y = np.column_stack([X @ [1.0, 2.0, 3.0, 4.0], X @ [4.0, 1.0, 0.0, 1.0]])
    cv = cross_validate(RegMixLinear(), X, Y, objective_weights=[0.5, 0.5], n_folds=5)
    assert cv["n_folds"] == 5 and len(cv["folds"]) == 5
    assert cv["pooled"]["spearman"] == pytest.approx(1.0) and cv["pooled"][
        "regret"
    ] == pytest.approx(0.0)
    assert cv["pooled"]["mae"] < 1e-10
    assert len(cv["predictions"]) == 50 and {"run_index", "actual", "predicted"} <= set(
        cv["predictions"][0]
    )


def test_auto_picks_best_and_roundtrips():
    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(4), 40)
    y = X @ [1.0, 2.0, 3.0, 4.0] + rng.normal(0, 1e-4, 40)
    auto = AutoEstimator(
        candidates=["regmix_linear", "regmix_lgbm", "bimix"],
        candidate_params={"regmix_lgbm": {"n_estimators": 50}},
    ).fit(X, y)
    assert auto.chosen_ == "regmix_linear"
    names = {r["name"]: r for r in auto.table_}
    assert names["bimix"]["status"] == "skipped" and "bimix needs" in names["bimix"]["reason"]
    assert names["regmix_linear"]["rank"] == 1
    auto2 = MixingEstimator.from_state(json.loads(json.dumps(auto.to_state())))
    np.testing.assert_allclose(auto2.predict(X[:5]), auto.predict(X[:5]))


def test_service_fit_predict_recommend_json():
    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(3), 30)
    Y = np.column_stack([X @ [1.0, 2.0, 3.0], X @ [3.0, 1.0, 2.0]])
    out = pipeline.fit_estimator(
        "regmix_linear",
        {},
        X,
        Y,
        domains=["a", "b", "c"],
        targets=["la", "lb"],
        objective_weights={"la": 1.0, "lb": 0.0},
    )
    out = json.loads(json.dumps(out, allow_nan=False))
    assert out["fidelity"]["pooled"]["spearman"] == pytest.approx(1.0)
    assert set(out["timings"]) == {"fit_s", "cv_s"}
    p = pipeline.predict(out["state"], X[:2], objective_weights=[1.0, 0.0])
    np.testing.assert_allclose(p["objective"], X[:2] @ [1.0, 2.0, 3.0], atol=1e-9)
    r = pipeline.recommend(
        out["state"], {"upper": {"a": 0.5}}, objective_weights=[1.0, 0.0], X=X, Y=Y, n_boot=3
    )
    assert r["mixture_by_domain"]["a"] == pytest.approx(0.5, abs=1e-6) and "upper:a" in r["binding"]
    json.dumps(r, allow_nan=False)
    base = pipeline.baseline_mixtures([10, 30, 60], {"target_tokens": 100, "max_epochs": 1.5})
    assert set(base) == {"natural", "uniform", "temperature", "unimax"}
    assert all(abs(sum(v) - 1) < 1e-9 for v in base.values())
    s = pipeline.suggest(4, domains=["a", "b", "c"], prior=[0.2, 0.3, 0.5], X=X, y=Y[:, 0])
    assert len(s) == 4 and all(abs(sum(m) - 1) < 1e-6 for m in s)
