"""``auto`` chooses what transfers (issue 23, item 4) and shares its fits (item 5): the
cross-scale criterion beats same-scale CV when the flexible estimator wins at the runs' scale
and loses beyond it; the single-scale rule keeps the structured law unless a flexible one wins
by the margin; the nested CV from shared fits is the nested CV done by hand."""

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from mixopt.mixing.auto import (
    LAW_MARGIN,
    UNVALIDATED_ORDER,
    UNVALIDATED_ORDER_PER_DOMAIN,
    AutoEstimator,
    choose,
)
from mixopt.mixing.base import MixingEstimator, get_estimator
from mixopt.mixing.fidelity import fidelity_metrics, group_kfold_indices, mixture_groups

pytestmark = pytest.mark.science

T = np.array([0.6, -0.9, 0.3])
R0 = np.array([0.2, 0.2, 0.6])
LAW = {"mixing_law": {"n_restarts": 300}}


def small_scale(X):
    """The mixing law plus a local dip that only the small models have."""
    return 1.5 + np.exp(X @ T) - 0.25 * np.exp(-np.sum((X - R0) ** 2, 1) / 0.02)


def large_scale(X):
    return 1.1 + 0.9 * np.exp(X @ T)


@pytest.fixture(scope="module")
def scales():
    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(3), 40)
    y = small_scale(X) + rng.normal(0, 2e-3, 40)
    Xt = rng.dirichlet(np.ones(3), 40)
    return X, y, Xt, large_scale(Xt)


def _cross_fn(X, y, Xt, yt):
    """Fit on the small scale, rank the large one (what the pipeline's cross_scale_fn does
    with the scaling laws in between)."""

    def cross(candidate):
        est = candidate.clone().fit(X, y[:, None])
        return dict(fidelity_metrics(yt, np.ravel(est.predict(Xt))), status="ok")

    return cross


def test_auto_chooses_the_estimator_that_transfers(scales):
    X, y, Xt, yt = scales
    truth = {}
    for name in ("gp", "mixing_law"):
        pred = get_estimator(name, **LAW.get(name, {})).fit(X, y[:, None]).predict(Xt)
        truth[name] = spearmanr(yt, np.ravel(pred))[0]
    assert truth["mixing_law"] > truth["gp"]  # the law transfers, the GP carries the dip
    by_cv = AutoEstimator(candidates=["gp", "mixing_law"], candidate_params=LAW, rule="cv")
    by_cv.fit(X, y)
    rows = {r["name"]: r for r in by_cv.table_}
    assert by_cv.chosen_ == "gp" and rows["gp"]["spearman"] > rows["mixing_law"]["spearman"]
    across = AutoEstimator(candidates=["gp", "mixing_law"], candidate_params=LAW, rule="cv")
    across.fit(X, y, cross_scale_fn=_cross_fn(*scales))
    assert across.criterion_ == "cross_scale" and across.chosen_ == "mixing_law"
    assert "cross-scale" in across.selection_summary()


def test_single_scale_rule_keeps_the_law_unless_the_flexible_one_wins_by_the_margin(scales):
    X, y, _, _ = scales
    auto = AutoEstimator(candidates=["gp", "mixing_law"], candidate_params=LAW).fit(X, y)
    rows = {r["name"]: r for r in auto.table_}
    gap = rows["gp"]["spearman"] - rows["mixing_law"]["spearman"]
    assert 0 < gap <= LAW_MARGIN
    assert auto.chosen_ == "mixing_law" and auto.rule_ == "law_first"
    assert "structured law first" in auto.selection_summary()
    assert f"{gap:.3f}" in auto.selection_summary()
    tight = AutoEstimator(
        candidates=["gp", "mixing_law"], candidate_params=LAW, law_margin=gap / 2
    ).fit(X, y)
    assert tight.chosen_ == "gp" and "beats the law" in tight.why_


def test_choose_falls_back_to_the_best_when_the_law_is_absent_or_absurd():
    rows = [
        {"name": "gp", "status": "ok", "spearman": 0.95, "mae": 0.01},
        {"name": "mixing_law", "status": "ok", "spearman": 0.93, "mae": 0.5},
        {"name": "regmix_lgbm", "status": "ok", "spearman": 0.90, "mae": 0.02},
    ]
    # the law's MAE is 50x the best one's: guarded out, whatever its rank correlation
    assert choose(rows, "law_first")["name"] == "gp"
    rows[1]["mae"] = 0.012
    assert choose(rows, "law_first")["name"] == "mixing_law"
    assert choose(rows, "cv")["name"] == "gp"
    assert choose([r for r in rows if r["name"] != "mixing_law"], "law_first")["name"] == "gp"
    with pytest.raises(ValueError, match="unknown rule"):
        choose(rows, "vote")


def test_choose_keeps_the_transferring_default_when_no_score_is_significant():
    """On 5 mixtures a CV Spearman of 0.8 is not significantly above 0 (one-sided 5%): the
    scores cannot tell the candidates apart and the pooled transfer evidence decides (gp). On
    30 mixtures the same score is significant and the best is kept."""
    rows = [
        {"name": "regmix_lgbm", "status": "ok", "spearman": 0.8, "mae": 0.08},
        {"name": "regmix_linear", "status": "ok", "spearman": 0.7, "mae": 0.12},
        {"name": "gp", "status": "ok", "spearman": 0.1, "mae": 0.12},
    ]
    pick = choose(rows, "law_first", n=5)
    assert pick["name"] == UNVALIDATED_ORDER[0] == "gp"
    assert "not significantly above 0" in pick["why"] and "5 distinct mixtures" in pick["why"]
    assert choose(rows, "law_first", n=30)["name"] == "regmix_lgbm"
    assert choose(rows, "law_first")["name"] == "regmix_lgbm"  # no n: the rule alone
    # the default must have been scored: without gp the best is kept
    assert choose(rows[:2], "cv", n=5)["name"] == "regmix_lgbm"
    # fewer than 4 mixtures cannot be told from chance either
    assert choose(rows, "cv", n=3)["name"] == "gp"
    # the default is kept as the unvalidated default even when it is also the best score: the
    # law within the margin does not win on scores that cannot be told from chance
    close = [
        {"name": "gp", "status": "ok", "spearman": 0.3, "mae": 0.1},
        {"name": "mixing_law", "status": "ok", "spearman": 0.25, "mae": 0.1},
    ]
    pick = choose(close, "law_first", n=5)
    assert pick["name"] == "gp" and pick["unvalidated"], pick
    assert choose(close, "law_first", n=40)["name"] == "mixing_law"


def test_choose_falls_back_on_the_pooled_transfer_order_of_its_targets():
    """Fitted per validation domain, law_gp transfers best pooled (bench/transfer.py --targets
    per_domain), so with several targets and nothing validated it is the one kept; with one
    target the GP is. A default that could not be scored (too few runs per fold for a law)
    gives way to the next scored one in the order, not to the unvalidated best."""
    rows = [
        {"name": "regmix_lgbm", "status": "ok", "spearman": 0.8, "mae": 0.08},
        {"name": "gp", "status": "ok", "spearman": 0.6, "mae": 0.10},
        {"name": "law_gp", "status": "ok", "spearman": 0.1, "mae": 0.12},
    ]
    pick = choose(rows, "law_first", n=5, n_targets=22)
    assert pick["name"] == UNVALIDATED_ORDER_PER_DOMAIN[0] == "law_gp"
    assert "22 targets" in pick["why"]
    assert choose(rows, "law_first", n=5, n_targets=1)["name"] == "gp"
    assert choose(rows, "law_first", n=30, n_targets=22)["name"] == "regmix_lgbm"
    without_laws = [r for r in rows if r["name"] != "law_gp"]
    assert choose(without_laws, "law_first", n=5, n_targets=22)["name"] == "gp"
    assert choose(rows[:1], "law_first", n=5, n_targets=22)["name"] == "regmix_lgbm"
    # not scored, but fitted on every run: the order's first is kept all the same
    pick = choose(without_laws, "law_first", n=5, n_targets=22, fittable={"law_gp"})
    assert pick["name"] == "law_gp" and pick["unvalidated"]
    assert "kept unscored" in pick["why"]
    # fittable only matters when nothing validated
    assert choose(without_laws, "law_first", n=30, n_targets=22, fittable={"law_gp"})["name"] == (
        "regmix_lgbm"
    )


def test_auto_keeps_the_per_domain_default_it_could_not_score():
    """Six mixtures whose per-domain losses are noise: on the 5-fold CV's training folds of
    4-5 runs the laws cannot be fitted (law_gp needs 5 runs for 3 domains), so they are not
    scored; nothing scored validates, and with several targets the pooled order puts law_gp
    first: auto fits it on all 6 runs and keeps it, says so, and reports the nested CV of the
    selection (inner folds keep a scored candidate) as its fidelity. With one target: gp."""
    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(3), size=6)
    Y = 3.0 + rng.normal(0.0, 0.05, size=(6, 4))
    auto = AutoEstimator(cv_folds=5, random_state=0).fit(X, Y, nested_cv=True)
    assert UNVALIDATED_ORDER_PER_DOMAIN[0] == "law_gp"
    assert auto.chosen_ == "law_gp", auto.why_
    assert "no candidate validated" in auto.why_ and "kept unscored" in auto.why_
    row = next(r for r in auto.table_ if r["name"] == "law_gp")
    assert row["status"] == "skipped" and row["reason"].startswith("chosen")
    assert auto.cv_["status"] == "unscored" and "needs at least" in auto.cv_["reason"]
    assert auto.nested_cv_ is not None and auto.nested_cv_["pooled"]["n"] == 6
    assert "law_gp" not in auto.nested_cv_["chosen_per_fold"]
    law = get_estimator("law_gp").fit(X, Y)
    np.testing.assert_allclose(auto.predict(X), law.predict(X), rtol=1e-9)
    restored = MixingEstimator.from_state(json.loads(json.dumps(auto.to_state())))
    assert restored.chosen_ == "law_gp"
    np.testing.assert_allclose(restored.predict(X), auto.predict(X), rtol=1e-9)
    one = AutoEstimator(cv_folds=5, random_state=0).fit(X, Y[:, :1])
    assert one.chosen_ == "gp"


def test_auto_on_too_few_mixtures_keeps_the_default():
    """Five distinct mixtures whose loss is noise (this draw's CV ranks a regression first):
    auto says no candidate was validated and keeps the default, not the lucky winner."""
    rng = np.random.default_rng(3)
    X = rng.dirichlet(np.ones(3), size=5)
    y = 3.0 + rng.normal(0.0, 0.05, size=5)
    auto = AutoEstimator(cv_folds=5, random_state=0).fit(X, y[:, None])
    assert auto.table_[0]["status"] == "ok" and auto.table_[0]["name"] != "gp"
    assert auto.chosen_ == "gp" and "no candidate validated" in auto.why_, auto.why_


def _nested_by_hand(X, y, names, params, folds, seed, rule, margin):
    """Nested CV the slow way: in each outer fold, a CV of every candidate on the other
    folds, the rule's choice, and that candidate refitted without the outer fold."""
    split = group_kfold_indices(mixture_groups(X), folds, seed)
    pred = np.empty(len(y))
    chosen = []
    for f, te in enumerate(split):
        rows = []
        outer_tr = np.setdiff1d(np.arange(len(y)), te)
        for name in names:
            inner = np.empty(len(y))
            for g, hold in enumerate(split):
                if g == f:
                    continue
                tr = np.setdiff1d(outer_tr, hold)
                est = get_estimator(name, **params.get(name, {})).fit(X[tr], y[tr, None])
                inner[hold] = np.ravel(est.predict(X[hold]))
            m = fidelity_metrics(y[outer_tr], inner[outer_tr])
            rows.append({"name": name, "status": "ok", **m})
        n_mixtures = len(np.unique(mixture_groups(X)[outer_tr]))
        win = choose(rows, rule, "cv", margin, n=n_mixtures)["name"]
        chosen.append(win)
        est = get_estimator(win, **params.get(win, {})).fit(X[outer_tr], y[outer_tr, None])
        pred[te] = np.ravel(est.predict(X[te]))
    return pred, chosen


@pytest.mark.parametrize("threads", ["1", "2"])
def test_nested_cv_from_shared_fits_is_the_nested_cv(monkeypatch, threads):
    monkeypatch.setenv("OMP_NUM_THREADS", threads)
    rng = np.random.default_rng(3)
    X = rng.dirichlet(np.ones(3), 24)
    y = 2 + X @ np.array([0.4, -0.3, 0.1]) + 0.05 * np.sin(9 * X[:, 0]) + rng.normal(0, 5e-3, 24)
    names = ["regmix_linear", "regmix_lgbm", "mixing_law"]
    params = {"mixing_law": {"n_restarts": 50}, "regmix_lgbm": {"n_estimators": 50}}
    auto = AutoEstimator(candidates=names, candidate_params=params, cv_folds=3, random_state=5)
    auto.fit(X, y, nested_cv=True)
    expected, chosen = _nested_by_hand(X, y, names, params, 3, 5, "law_first", LAW_MARGIN)
    got = auto.nested_cv_
    assert got["chosen_per_fold"] == chosen
    np.testing.assert_allclose(
        [p["predicted"] for p in got["predictions"]], expected, rtol=1e-6, atol=1e-8
    )
    assert got["pooled"]["spearman"] == pytest.approx(spearmanr(y, expected)[0])


def test_a_fit_stored_before_the_rules_still_loads():
    rng = np.random.default_rng(6)
    X = rng.dirichlet(np.ones(3), 20)
    y = X @ np.array([1.0, 2.0, 3.0])
    auto = AutoEstimator(candidates=["regmix_linear"]).fit(X, y)
    state = json.loads(json.dumps(auto.to_state()))
    for key in ("rule", "why"):
        del state["fitted"][key]
    for key in ("rule", "law_margin"):
        del state["params"][key]
    old = MixingEstimator.from_state(state)
    np.testing.assert_allclose(old.predict(X[:3]), auto.predict(X[:3]))
    assert old.rule_ == "cv" and "auto chose regmix_linear" in old.selection_summary()


# -- bench/transfer.py's cross-scale rules (select, ensemble, stack) -----------------------------
def _table(errors, y):
    return {
        k: {
            "pred": y + e,
            "actual": y,
            "spearman": float(spearmanr(y, y + e)[0]),
            "mae": float(np.mean(np.abs(e))),
        }
        for k, e in errors.items()
    }


def test_ensemble_rules_tie_what_the_held_out_errors_cannot_tell_apart():
    from bench.transfer import _rule_weights

    rng = np.random.default_rng(3)
    y = np.linspace(2.0, 3.0, 30)
    base = rng.normal(0, 0.01, 30)
    table = _table(
        {"a": base, "b": base + rng.normal(0, 0.002, 30), "c": rng.normal(0, 0.08, 30)}, y
    )
    assert set(_rule_weights(table, "select")) <= {"a", "b"}
    tied = _rule_weights(table, "tied_equal")
    assert set(tied) == {"a", "b"} and tied["a"] == pytest.approx(0.5)
    inv = _rule_weights(table, "all_inv_mse")
    assert sum(inv.values()) == pytest.approx(1.0) and inv["c"] < 0.05


def test_stack_recovers_the_convex_combination_that_predicts_the_held_out_runs():
    from bench.transfer import _rule_weights

    rng = np.random.default_rng(4)
    y = np.linspace(2.0, 3.0, 30)
    e = rng.normal(0, 0.02, 30)
    # a over- and b under-predicts by the same amount: their mean is exact; c is noise
    table = _table({"a": e, "b": -e, "c": rng.normal(0, 0.05, 30)}, y)
    w = _rule_weights(table, "stack")
    assert w["a"] == pytest.approx(0.5, abs=0.02) and w["b"] == pytest.approx(0.5, abs=0.02)
    assert w.get("c", 0.0) < 0.02


def test_hull_split_tells_interpolation_from_extrapolation_across_mixtures():
    from bench.transfer import _in_hull

    T = np.array([[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.25, 0.25, 0.5]])
    assert _in_hull(T, np.array([1 / 3, 1 / 3, 1 / 3]))
    assert _in_hull(T, T[1])
    assert not _in_hull(T, np.array([0.0, 0.0, 1.0]))
    assert not _in_hull(T, np.array([0.6, 0.2, 0.2]))


def test_per_domain_targets_sum_to_the_weighted_loss():
    """bench/transfer.py's per_domain protocol predicts the same objective: on every run and
    step, the validation losses weighted by valid_weight.json are the weighted target."""
    transfer = pytest.importorskip("bench.transfer")
    if not transfer.have_mixinglaws():
        pytest.skip("../shared/data/mixinglaws absent")
    for setting in ("3Mix", "5Mix"):
        names, w = transfer.domain_weights(setting)
        assert len(names) == {"3Mix": 3, "5Mix": 22}[setting] and w.sum() == pytest.approx(1.0)
        for runs in transfer.load_setting(setting).values():
            for r in runs:
                per = np.array([v for _, v in r.domain_curve])
                assert np.allclose(per @ w, [v for _, v in r.curve], rtol=1e-12)


def test_auto_rule_per_domain_cases_keep_the_weighted_objective():
    auto_rule = pytest.importorskip("bench.auto_rule")
    if not (auto_rule.MIXINGLAWS / "tidy_long.csv").exists():
        pytest.skip("../shared/data/mixinglaws absent")
    cases = auto_rule.settings(auto_rule.MIXINGLAWS, "per_domain")
    assert cases
    for case in cases:
        assert case["Y"].shape == (len(case["y"]), case["w"].size)
        assert np.allclose(case["Y"] @ case["w"], case["y"], rtol=1e-12)
