"""The swarm in rounds (:mod:`mixopt.mixing.rounds`): on data-mixing-law worlds with a known
optimum it beats a one-shot space-filling swarm of the same size on average over seeds; its
batches are feasible, spread and move toward the optimum; the stopping rule and round sizes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from bench.rounds_synthetic import make_world, one_shot_curve, rounds_curve
from mixopt.mixing import rounds
from mixopt.mixing.constraints import Constraints


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def test_rounds_beat_one_shot_on_average_over_seeds():
    # bench/rounds_synthetic.py made small: K = 3, 5, 7, 4 worlds each, round 1 of 16 runs then
    # rounds of 8 up to 32, against one-shot space-filling swarms of 24 and 32; the regret is the
    # TRUE loss at the recommended mixture minus the true optimum, averaged over every world
    one, rnd = [], []
    for K in (3, 5, 7):
        for seed in range(4):
            world = make_world(K, seed, noise=0.01)
            one.append(one_shot_curve(world, K, [24, 32], seed))
            rnd.append(rounds_curve(world, K, 32, 8, seed)[0][1:])
    assert np.mean(rnd) < np.mean(one), (np.mean(one, axis=0), np.mean(rnd, axis=0))


def test_next_round_is_feasible_spread_and_moves_toward_the_optimum():
    K = 4
    world = make_world(K, 1, noise=0.0)
    domains = [f"d{i}" for i in range(K)]
    c = Constraints(upper={"d0": 0.6}, lower={"d3": 0.05})
    X = rounds.first_round(np.ones(K), 12, constraints=c, domains=domains, random_state=0)
    y = world.truth(X)
    plan = rounds.next_round(X, y, 6, round_index=2, constraints=c, domains=domains, random_state=0)
    W = plan.mixtures
    assert W.shape == (6, K)
    assert all(c.satisfied(w, domains) for w in W)
    gaps = np.linalg.norm(W[:, None] - np.vstack([X, W])[None], axis=2)
    gaps[np.arange(6), 12 + np.arange(6)] = np.inf
    assert gaps.min() >= rounds.DEFAULT_MIN_DISTANCE_FACTOR * plan.radius - 1e-9
    # the new runs are on average better than the first round's, by the truth
    assert world.truth(W).mean() < y.mean()
    lo, hi = plan.best_interval
    assert lo <= plan.best_loss <= hi
    assert plan.regret >= 0
    assert plan.summary(domains)["best_mixture"].keys() == set(domains)


def test_region_shrinks_and_lcb_is_accepted():
    assert rounds.region_radius(1) == 1.0
    assert rounds.region_radius(2) == 0.5
    assert rounds.region_radius(3) == 0.25
    assert rounds.region_radius(50) == rounds.DEFAULT_MIN_RADIUS
    world = make_world(3, 0, noise=0.0)
    X = rounds.first_round(np.ones(3), 8, random_state=1)
    plan = rounds.next_round(X, world.truth(X), 4, round_index=3, acquisition="lcb")
    assert plan.mixtures.shape == (4, 3) and plan.radius == 0.25
    with pytest.raises(ValueError, match="acquisition"):
        rounds.next_round(X, world.truth(X), 4, round_index=2, acquisition="ucb")


def test_an_estimator_without_std_gets_bootstrap_uncertainty():
    from mixopt.mixing import mixing_law  # noqa: F401  (registers mixing_law)
    from mixopt.mixing.base import get_estimator

    world = make_world(3, 2, noise=0.0)
    X = rounds.first_round(np.ones(3), 16, random_state=0)
    plan = rounds.next_round(
        X, world.truth(X), 4, round_index=2, estimator=get_estimator("mixing_law")
    )
    assert plan.mixtures.shape == (4, 3)
    assert plan.best_interval[1] > plan.best_interval[0]  # spread of the refits


def test_should_stop_and_round_sizes():
    assert not rounds.should_stop([0.1, 0.05], tol=0.005, patience=2)
    assert not rounds.should_stop([0.1, 0.05, 0.049, 0.02], tol=0.005, patience=2)
    assert rounds.should_stop([0.1, 0.05, 0.049, 0.048], tol=0.005, patience=2)
    assert rounds.should_stop([0.1, 0.05, 0.06, 0.052], tol=0.005, patience=2)
    assert rounds.round_sizes(20, 8) == [16, 4]
    assert rounds.round_sizes(30, 8) == [16, 8, 6]
    assert rounds.round_sizes(16, 8) == [16]
    assert rounds.round_sizes(12, 8) == [12]
    with pytest.raises(ValueError):
        rounds.round_sizes(4, 8)


def test_run_rounds_stops_early_on_a_flat_world():
    # a world where every mixture has the same loss: the predicted regret cannot fall, so the
    # rule stops well before the budget
    res = rounds.run_rounds(
        lambda W: np.full(len(W), 3.0) + 1e-4 * np.random.default_rng(0).normal(size=len(W)),
        np.ones(3),
        64,
        8,
        random_state=0,
    )
    assert res.stopped_early
    assert len(res.y) < 64


def test_round_one_has_at_least_k_plus_one_runs():
    assert rounds.round_sizes(40, 4, n_domains=10) == [11, 4, 4, 4, 4, 4, 4, 4, 1]
    assert rounds.round_sizes(40, 4, n_domains=7) == [8, 4, 4, 4, 4, 4, 4, 4, 4]  # 2 x 4 >= 8
    assert rounds.round_sizes(40, 4, first_round_size=6, n_domains=10)[0] == 6  # asked for
    assert rounds.round_sizes(8, 2, n_domains=10) == [8]  # never beyond the budget
    res = rounds.run_rounds(
        lambda W: W @ np.linspace(1.0, 2.0, 6), np.ones(6), 15, 2, early_stop=False
    )
    assert res.n_after_round == [7, 9, 11, 13, 15]


def test_first_round_size_option():
    assert rounds.round_sizes(20, 4, first_round_size=6) == [6, 4, 4, 4, 2]
    assert rounds.round_sizes(20, 4, first_round_size=30) == [20]
    with pytest.raises(ValueError, match="first_round_size"):
        rounds.round_sizes(20, 4, first_round_size=0)
    world = make_world(3, 0, noise=0.0)
    res = rounds.run_rounds(
        world.truth, np.ones(3), 14, 4, first_round_size=6, early_stop=False, random_state=0
    )
    assert res.n_after_round == [6, 10, 14]
    assert len(res.y) == 14


def test_bench_credits_rounds_only_with_runs_trained():
    from bench.rounds_synthetic import on_grid

    curve = on_grid([0.05, 0.02, 0.01], [6, 10, 14], [4, 8, 12, 16])
    assert np.isnan(curve[0])
    assert curve[1:] == [0.05, 0.02, 0.01]


def test_bench_reads_runs_to_target_three_ways():
    from bench.rounds_synthetic import first_below, mean_curve_crossing, stays_below

    grid = [8, 12, 16, 20]
    lucky = [0.005, 0.02, 0.008, 0.004]  # a lucky early draw, then above again
    assert first_below(lucky, grid) == 8
    assert stays_below(lucky, grid) == 16
    assert stays_below([0.02, 0.02, 0.02, 0.005], grid) == 20
    assert stays_below([0.02, 0.02, 0.02, 0.02], grid) is None
    assert stays_below([np.nan, 0.005, 0.004, 0.003], grid) == 12  # nan: round 1 not over
    # the mean curve 0.02 -> 0.005 between 12 and 16 runs crosses 0.01 two thirds of the way
    assert mean_curve_crossing(np.array([0.03, 0.02, 0.005, 0.004]), grid) == pytest.approx(
        12 + 8 / 3
    )
    assert mean_curve_crossing(np.array([np.nan, 0.005, 0.004, 0.003]), grid) == 12.0
    assert mean_curve_crossing(np.array([0.03, 0.02, 0.02, 0.011]), grid) is None
