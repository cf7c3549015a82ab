"""Mixture of Data Experts (mixopt.mixing.mde): the vectorised approximation against a direct
float64 evaluation, the validated container (errors name the field), the calibrated ``mde``
recovering a known affine truth, the MDE-featured regressors, persistence with the expert set's
hash (re-attach, missing, mismatched), ``auto`` considering MDE estimators only with experts,
and the pipeline handing the experts through fit, predict and recommend."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mixopt.mixing  # noqa: F401  (fills the registry)
from mixopt.mixing import pipeline
from mixopt.mixing.auto import AutoEstimator
from mixopt.mixing.base import ESTIMATORS, MixingEstimator, get_estimator
from mixopt.mixing.mde import (
    ExpertProbs,
    ExpertsMismatchError,
    MissingExpertsError,
    attach_experts,
    mde_losses,
    mde_losses_reference,
    target_columns,
)

DOMAINS = ["code", "prose", "math"]
MDE_NAMES = ("mde", "mde_linear", "mde_gp", "mde_lgbm")


def _probs(seed: int = 0, tokens=(1000, 517, 64), experts=DOMAINS, dtype=np.float16):
    """Experts that are good on their own domain (high probabilities) and worse elsewhere."""
    rng = np.random.default_rng(seed)
    out = {}
    for j, T in enumerate(tokens):
        rows = []
        for i in range(len(experts)):
            a = 4.0 if i == j else 1.0
            rows.append(np.clip(rng.beta(a, 3.0, T), 2**-24, 1.0))
        out[DOMAINS[j] if j < len(DOMAINS) else f"v{j}"] = np.stack(rows).astype(dtype)
    return ExpertProbs(experts, out)


def _mixtures(n: int, k: int = 3, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(k), n)


# -- the approximation ---------------------------------------------------------------------------
def test_mde_losses_equal_direct_float64_evaluation():
    probs = _probs()
    W = np.vstack([np.eye(3), _mixtures(40), [[0.5, 0.5, 0.0]]])
    fast = mde_losses(probs, W)
    # the reference written out here, not the module's: -mean_t log(sum_i w_i p_i(t))
    direct = np.array(
        [
            [-np.mean(np.log(w @ probs.arrays[v].astype(np.float64))) for v in probs.val_domains]
            for w in W
        ]
    )
    assert fast.shape == (W.shape[0], 3)
    np.testing.assert_allclose(fast, direct, rtol=2e-6)
    np.testing.assert_allclose(mde_losses_reference(probs, W), direct, rtol=1e-12)


def test_mde_losses_threads_and_chunks_do_not_change_the_answer():
    probs = _probs(tokens=(20_000, 33, 4097))
    W = _mixtures(700)
    a = mde_losses(probs, W, n_threads=1)
    b = mde_losses(probs, W, n_threads=2)
    np.testing.assert_allclose(a, b, rtol=1e-12)
    np.testing.assert_allclose(a[:5], mde_losses(probs, W[:5]), rtol=1e-12)


def test_one_hot_mixture_is_the_experts_own_loss_and_rows_are_normalised():
    probs = _probs()
    own = np.array(
        [[-np.mean(np.log(probs.arrays[v][i].astype(float))) for v in DOMAINS] for i in range(3)]
    )
    np.testing.assert_allclose(probs.expert_losses(), own, rtol=2e-6)
    np.testing.assert_allclose(
        mde_losses(probs, [[2.0, 2.0, 0.0]]), mde_losses(probs, [[0.5, 0.5, 0]])
    )


def test_ensemble_beats_the_average_expert_loss_jensen():
    # log is concave: the mixture's loss is at most the weighted mean of the experts' losses
    probs = _probs()
    W = _mixtures(30)
    assert np.all(mde_losses(probs, W) <= W @ probs.expert_losses() + 1e-9)


@pytest.mark.parametrize(
    "arrays, field, words",
    [
        ({"code": np.full((3, 5), np.nan, np.float16)}, "probs[code]", "NaN"),
        ({"code": np.zeros((3, 5), np.float16)}, "probs[code]", "<= 0"),
        ({"code": np.full((3, 5), 1.5, np.float32)}, "probs[code]", "> 1"),
        ({"code": np.full((2, 5), 0.5, np.float16)}, "probs[code]", "shape"),
        ({"code": np.full((3,), 0.5, np.float16)}, "probs[code]", "shape"),
        ({"code": np.full((3, 0), 0.5, np.float16)}, "probs[code]", "no tokens"),
        ({"code": np.full((3, 5), 1, np.int32)}, "probs[code]", "dtype"),
        ({}, "probs", "one array"),
    ],
)
def test_expert_probs_rejects_bad_arrays_naming_the_field(arrays, field, words):
    with pytest.raises(ValueError) as e:
        ExpertProbs(DOMAINS, arrays)
    assert str(e.value).startswith(field + ":") and words in str(e.value)


def test_expert_probs_rejects_bad_expert_lists_and_mixtures():
    ok = {"code": np.full((3, 4), 0.5, np.float16)}
    with pytest.raises(ValueError, match="experts: duplicate"):
        ExpertProbs(["a", "a", "b"], ok)
    with pytest.raises(ValueError, match="experts: no expert"):
        ExpertProbs([], ok)
    probs = ExpertProbs(DOMAINS, ok)
    with pytest.raises(ValueError, match="mixtures: expected shape"):
        mde_losses(probs, [[0.5, 0.5]])
    with pytest.raises(ValueError, match="mixtures: weights must be finite"):
        mde_losses(probs, [[0.5, -0.5, 1.0]])
    with pytest.raises(ValueError, match="mixtures: a mixture has all weights 0"):
        mde_losses(probs, [[0.0, 0.0, 0.0]])


def test_from_pairs_and_content_hash():
    probs = _probs()
    pairs = {(e, v): probs.arrays[v][i] for i, e in enumerate(DOMAINS) for v in DOMAINS}
    again = ExpertProbs.from_pairs(pairs)
    assert again.content_hash == probs.content_hash
    changed = dict(pairs)
    changed[("math", "code")] = pairs[("math", "code")].copy()
    changed[("math", "code")][0] = np.float16(0.25) if changed[("math", "code")][0] != 0.25 else 0.5
    assert ExpertProbs.from_pairs(changed).content_hash != probs.content_hash
    del changed[("math", "code")]
    with pytest.raises(
        ValueError, match=r"probs: missing expert/validation pairs \['\(math, code\)'\]"
    ):
        ExpertProbs.from_pairs(changed)
    bad = dict(pairs)
    bad[("prose", "math")] = pairs[("prose", "math")][:10]
    with pytest.raises(ValueError, match=r"probs\[\*, math\]: the experts' arrays differ"):
        ExpertProbs.from_pairs(bad)


def test_target_columns():
    assert target_columns(["val_loss/math", "code", "bpb/x"], DOMAINS, 3) == [2, 0, -1]
    assert target_columns(None, DOMAINS, 3) == [0, 1, 2]
    assert target_columns(None, DOMAINS, 1) == [-1]


# -- the estimators ------------------------------------------------------------------------------
TARGETS = [f"val_loss/{d}" for d in DOMAINS]


def _affine_world(n: int = 12, seed: int = 3):
    """Runs whose losses ARE an affine map of the MDE losses (known a_j, b_j)."""
    probs = _probs()
    X = _mixtures(n, seed=seed)
    a, b = np.array([0.3, -0.2, 1.0]), np.array([0.8, 1.3, 0.5])
    Y = a + b * mde_losses_reference(probs, X)
    return probs, X, Y, a, b


def test_mde_recovers_a_known_affine_map_and_predicts_new_mixtures():
    probs, X, Y, a, b = _affine_world()
    est = get_estimator("mde").fit(X, Y, experts=probs, domains=DOMAINS, targets=TARGETS)
    np.testing.assert_allclose(est.intercept_, a, atol=1e-5)
    np.testing.assert_allclose(est.slope_, b, rtol=1e-5)
    Xn = _mixtures(25, seed=9)
    np.testing.assert_allclose(est.predict(Xn), a + b * mde_losses_reference(probs, Xn), atol=1e-5)


def test_mde_matches_mixture_columns_to_experts_by_name():
    probs, X, Y, a, b = _affine_world()
    perm = [2, 0, 1]
    doms = [DOMAINS[i] for i in perm]
    est = get_estimator("mde").fit(X[:, perm], Y, experts=probs, domains=doms, targets=TARGETS)
    np.testing.assert_allclose(est.slope_, b, rtol=1e-5)
    Xn = _mixtures(5, seed=4)
    np.testing.assert_allclose(
        est.predict(Xn[:, perm]), a + b * mde_losses_reference(probs, Xn), atol=1e-5
    )
    with pytest.raises(ExpertsMismatchError, match=r"no expert for \['legal'\]"):
        get_estimator("mde").fit(X, Y, experts=probs, domains=["code", "prose", "legal"])


def test_mde_slope_is_nonnegative_by_default():
    probs, X, _, _, _ = _affine_world()
    Y = 5.0 - mde_losses_reference(probs, X)  # a loss that falls as the MDE loss rises
    assert np.all(get_estimator("mde").fit(X, Y, experts=probs).slope_ == 0.0)
    free = get_estimator("mde", nonnegative_slope=False).fit(X, Y, experts=probs)
    np.testing.assert_allclose(free.slope_, -1.0, rtol=1e-6)


@pytest.mark.parametrize("name", MDE_NAMES)
def test_mde_estimators_refuse_without_experts(name):
    probs, X, Y, _, _ = _affine_world()
    with pytest.raises(MissingExpertsError, match=f"{name} needs the experts' next-token"):
        get_estimator(name).fit(X, Y, domains=DOMAINS)
    assert ESTIMATORS[name].needs_experts


@pytest.mark.parametrize("name", MDE_NAMES)
def test_state_is_json_and_needs_the_same_experts_after_a_load(name):
    probs, X, Y, _, _ = _affine_world(n=16)
    params = {"n_estimators": 50} if name == "mde_lgbm" else {}
    est = get_estimator(name, **params).fit(X, Y, experts=probs, domains=DOMAINS, targets=TARGETS)
    Xn = _mixtures(7, seed=11)
    before = est.predict(Xn)
    state = json.loads(json.dumps(est.to_state()))
    assert state["fitted"]["expert_hash"] == probs.content_hash
    loaded = MixingEstimator.from_state(state)
    with pytest.raises(MissingExpertsError):
        loaded.predict(Xn)
    with pytest.raises(ExpertsMismatchError, match="this fit was made with expert set"):
        attach_experts(loaded, _probs(seed=5))
    attach_experts(loaded, probs)
    np.testing.assert_allclose(loaded.predict(Xn), before, rtol=1e-9, atol=1e-9)


def test_mde_featured_regressors_learn_a_nonlinear_function_of_the_mde_loss():
    # truth: a convex function of the MDE loss plus a mixture term; regression on the weights
    # alone sees it only through the mixture, MDE features see it directly
    probs = _probs()
    X = _mixtures(30, seed=21)
    F = mde_losses_reference(probs, X)
    Y = 0.5 * F**2 + 0.1 * X[:, [0]] + 0.2
    Xn = _mixtures(200, seed=22)
    truth = 0.5 * mde_losses_reference(probs, Xn) ** 2 + 0.1 * Xn[:, [0]] + 0.2
    ctx = {"experts": probs, "domains": DOMAINS, "targets": TARGETS}
    err = {}
    for name in ("mde_linear", "mde_gp", "regmix_linear"):
        est = get_estimator(name).fit(X, Y, **ctx)
        err[name] = float(np.mean(np.abs(est.predict(Xn) - truth)))
    assert err["mde_linear"] < 0.5 * err["regmix_linear"], err
    assert err["mde_gp"] < 0.5 * err["regmix_linear"], err


@pytest.mark.parametrize("name", ["mde_linear", "mde_gp", "mde_lgbm"])
def test_residual_regressors_fall_back_to_the_calibrated_mde_on_few_runs(name):
    """Five runs whose losses are an affine map of the MDE loss plus noise: regressing the
    residual of the calibration (the default) predicts new mixtures near that map, as ``mde``
    does; regressing the loss itself (``residual=False``, the paper's plain setup) on 5 runs of
    K + 1 features does not get closer."""
    rng = np.random.default_rng(0)
    probs = _probs()
    X = _mixtures(5, seed=31)
    a, b = np.array([0.3, -0.2, 1.0]), np.array([0.8, 1.3, 0.5])
    Y = a + b * mde_losses_reference(probs, X) + rng.normal(0.0, 0.01, size=(5, 3))
    Xn = _mixtures(200, seed=32)
    truth = a + b * mde_losses_reference(probs, Xn)
    ctx = {"experts": probs, "domains": DOMAINS, "targets": TARGETS}
    params = {"n_estimators": 50} if name == "mde_lgbm" else {}
    resid = get_estimator(name, **params).fit(X, Y, **ctx)
    plain = get_estimator(name, residual=False, **params).fit(X, Y, **ctx)
    calibrated = get_estimator("mde").fit(X, Y, **ctx)
    err_resid = float(np.mean(np.abs(resid.predict(Xn) - truth)))
    err_plain = float(np.mean(np.abs(plain.predict(Xn) - truth)))
    err_cal = float(np.mean(np.abs(calibrated.predict(Xn) - truth)))
    assert err_resid <= 1.5 * err_cal + 0.005, (err_resid, err_cal)
    assert err_resid <= err_plain, (err_resid, err_plain)
    assert len(resid.calibration_) == 3 and plain.calibration_ == [(0.0, 0.0)] * 3


def test_a_state_stored_before_residual_loads_as_the_plain_regression():
    probs, X, Y, _, _ = _affine_world(n=16)
    ctx = {"experts": probs, "domains": DOMAINS, "targets": TARGETS}
    est = get_estimator("mde_linear", residual=False).fit(X, Y, **ctx)
    state = json.loads(json.dumps(est.to_state()))
    del state["fitted"]["calibration"]  # what a fit of the previous release stored
    state["params"].pop("residual", None)
    loaded = attach_experts(MixingEstimator.from_state(state), probs)
    np.testing.assert_allclose(loaded.predict(X[:4]), est.predict(X[:4]), rtol=1e-9)


def test_mde_gp_has_a_predictive_std():
    probs, X, Y, _, _ = _affine_world(n=16)
    est = get_estimator("mde_gp").fit(X, Y, experts=probs, domains=DOMAINS, targets=TARGETS)
    mean, std = est.predict(_mixtures(4, seed=2), return_std=True)
    assert mean.shape == std.shape == (4, 3) and np.all(std > 0)
    assert est.predict_objective_std(_mixtures(4, seed=2)).shape == (4,)


# -- auto and the pipeline -----------------------------------------------------------------------
def test_auto_skips_mde_without_experts_and_considers_it_with_them():
    probs, X, Y, _, _ = _affine_world(n=16)
    ctx = {"domains": DOMAINS, "targets": TARGETS}
    # the default candidate list (every registered estimator) without experts: no mde row
    auto = AutoEstimator(candidates=None, cv_folds=3)
    names = auto._names()
    assert set(MDE_NAMES) <= set(names)  # registered ...
    with_mde = AutoEstimator(candidates=["regmix_linear", "mde"], cv_folds=3, rule="cv")
    with_mde.fit(X, Y, experts=probs, **ctx)
    rows = {r["name"]: r for r in with_mde.table_}
    assert rows["mde"]["status"] == "ok"
    assert with_mde.chosen_ == "mde"  # the truth is an affine map of the MDE losses
    assert rows["mde"]["mae"] < 1e-4
    # a loaded auto delegates the experts to the estimator it kept
    loaded = MixingEstimator.from_state(json.loads(json.dumps(with_mde.to_state())))
    attach_experts(loaded, probs)
    np.testing.assert_allclose(loaded.predict(X[:3]), with_mde.predict(X[:3]))


def test_auto_default_candidates_leave_mde_out_without_experts(monkeypatch):
    # keep the run cheap: only two ordinary estimators and the MDE ones are registered
    keep = {n: ESTIMATORS[n] for n in ("regmix_linear", "gp", *MDE_NAMES, "auto")}
    monkeypatch.setattr("mixopt.mixing.auto.ESTIMATORS", keep)
    monkeypatch.setattr("mixopt.mixing.base.ESTIMATORS", keep)
    probs, X, Y, _, _ = _affine_world(n=16)
    ctx = {"domains": DOMAINS, "targets": TARGETS}
    plain = AutoEstimator(cv_folds=3, rule="cv").fit(X, Y, **ctx)
    assert {r["name"] for r in plain.table_} == {"regmix_linear", "gp"}
    assert not [r for r in plain.table_ if r["status"] != "ok"]
    with_experts = AutoEstimator(
        cv_folds=3, rule="cv", candidate_params={"mde_lgbm": {"n_estimators": 30}}
    ).fit(X, Y, experts=probs, **ctx)
    assert {r["name"] for r in with_experts.table_} == {"regmix_linear", "gp", *MDE_NAMES}


def test_pipeline_fits_predicts_and_recommends_with_experts():
    probs, X, Y, a, b = _affine_world(n=16)
    kw = {"domains": DOMAINS, "targets": TARGETS, "cv_folds": 4}
    with pytest.raises(MissingExpertsError):
        pipeline.fit_estimator("mde", {}, X, Y, **kw)
    out = pipeline.fit_estimator("mde", {}, X, Y, experts=probs, **kw)
    assert out["fidelity"]["pooled"]["spearman"] > 0.99
    state = json.loads(json.dumps(out["state"]))
    Xn = _mixtures(3, seed=8)
    with pytest.raises(MissingExpertsError):
        pipeline.predict(state, Xn)
    pred = pipeline.predict(state, Xn, experts=probs)
    np.testing.assert_allclose(
        pred["predictions"], a + b * mde_losses_reference(probs, Xn), atol=1e-5
    )
    rec = pipeline.recommend(state, None, X=X, Y=Y, n_boot=4, experts=probs, domains=DOMAINS)
    w = np.asarray(rec["mixture"], dtype=float)
    grid = _mixtures(4000, seed=13)
    best = float((a + b * mde_losses_reference(probs, grid)).mean(axis=1).min())
    got = float((a + b * mde_losses_reference(probs, w[None, :])).mean())
    assert got <= best + 1e-3
