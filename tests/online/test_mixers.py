"""Online mixers on the synthetic environment: they move toward the known optimum, follow
their papers' update formulas, and survive a JSON save/load mid-run with identical updates.

Environment (``SyntheticEnv()`` defaults): 3 domains, per-domain power laws with transfer; the
static optimum after 600 steps is about [0.00, 0.36, 0.64] and the uniform mixture is at L1
distance 0.67 from it. Tolerances (per seed, 2 seeds):

* Aioli (from scratch, no EMA, eta=1, rounds of 100 steps): L1 distance to the optimum at most
  0.65x the uniform's, and a better final objective than the stratified run;
* Aioli (warm start from a poor prior, anchor="prior"): distance at most 0.65x the prior's;
* DoReMi (reference = a uniform run twice as long): average alpha within 0.4x the uniform's
  distance, and its static objective beats stratified;
* ODM: its bandit update is mild by design (``eps_t * R`` is small), so we require the right
  direction only: weights ordered like the domains' losses, distance below the uniform's, and
  a better online objective than the stratified run.
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

from mixopt.online import ONLINE_MIXERS, make_mixer
from mixopt.online.aioli import Aioli
from mixopt.online.base import OnlineMixer
from mixopt.online.odm import ODM
from mixopt.online.synthetic import SyntheticEnv, run_online
from tests.online.helpers import STEPS, Stratified, l1

UNIFORM = np.full(3, 1 / 3)
AIOLI_FAST = {"update_steps": 100, "lp_rounds": 2, "lp_steps": 4, "eta": 1.0, "ema": None}


def stratified_objective(env: SyntheticEnv, seed: int) -> float:
    env.reset(seed)
    run_online(env, Stratified(env.k), STEPS)
    return env.objective_value()


def doremi_params(env: SyntheticEnv) -> dict:
    ref = env.static_losses(UNIFORM, 2 * STEPS)
    return {"reference_losses": dict(zip(env.domains, ref.tolist(), strict=True))}


# -- registry and validation -------------------------------------------------------------
def test_registry_lists_the_three_mixers():
    assert {"aioli", "doremi", "odm"} <= set(ONLINE_MIXERS)
    m = make_mixer("odm", ["a", "b"])
    assert isinstance(m, ODM) and np.allclose(m.weights(), [0.5, 0.5])
    with pytest.raises(KeyError, match="unknown online mixer"):
        make_mixer("nope", ["a"])


def test_bad_input_names_the_field():
    with pytest.raises(ValueError, match="params: unknown parameter"):
        make_mixer("odm", ["a", "b"], {"alpah": 0.9})
    with pytest.raises(ValueError, match="initial_weights"):
        make_mixer("odm", ["a", "b"], initial_weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="params.reference_losses"):
        make_mixer("doremi", ["a", "b"])
    with pytest.raises(ValueError, match="one_hot_factor"):
        make_mixer("aioli", ["a", "b", "c"], {"one_hot_factor": 0.2})
    m = make_mixer("odm", ["a", "b"])
    with pytest.raises(ValueError, match="train_losses: unknown domain 'z'"):
        m.update([{"step": 0, "train_losses": {"z": 1.0}}])
    with pytest.raises(ValueError, match="train_losses.a"):
        m.update([{"step": 0, "train_losses": {"a": float("nan")}}])


# -- algorithms move toward the optimum ---------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_aioli_from_scratch_moves_toward_optimum(env, optimum, seed):
    env.reset(seed)
    m = make_mixer("aioli", env.domains, AIOLI_FAST, seed=seed)
    run_online(env, m, STEPS)
    assert m.rounds_done == STEPS // 100 and m.skipped_rounds == 0
    assert l1(m.weights(), optimum) <= 0.65 * l1(UNIFORM, optimum)
    assert env.objective_value() < stratified_objective(env, seed)


@pytest.mark.parametrize("seed", [0, 1])
def test_aioli_warm_start_moves_prior_toward_optimum(env, optimum, seed):
    prior = np.array([0.6, 0.3, 0.1])
    params = {**AIOLI_FAST, "anchor": "prior"}
    env.reset(seed)
    m = make_mixer("aioli", env.domains, params, initial_weights=prior, seed=seed)
    run_online(env, m, STEPS)
    assert l1(m.weights(), optimum) <= 0.65 * l1(prior, optimum)


def test_aioli_restricted_setting_trains_the_prior_first(env):
    prior = np.array([0.6, 0.3, 0.1])
    m = make_mixer("aioli", env.domains, {**AIOLI_FAST, "prior_steps": 50}, initial_weights=prior)
    assert m.phase(49) == "prior" and np.allclose(m.mixture_for_step(0), prior)
    assert m.phase(50) == "learn" and not m.needs_eval_at(49) and m.needs_eval_at(50)
    run_online(env, m, 50 + 100)
    assert m.rounds_done == 1


def test_aioli_defaults_change_the_weights(env):
    m = make_mixer("aioli", env.domains)  # lp_rounds=2, lp_steps=4, no EMA, sweeps 14%
    assert m.lp_duration == 24 and m.update_steps == 172  # ceil(24 / 0.14)
    assert m.eta == pytest.approx(0.3)  # 0.1 K
    run_online(env, m, 400)
    assert m.rounds_done == 3
    assert l1(m.weights(), UNIFORM) > 0.01


@pytest.mark.parametrize("k", [2, 3, 7])
@pytest.mark.parametrize("total", [150, 300, 1000, 4000])
@pytest.mark.parametrize("share", [0.14, 0.3])
def test_aioli_sweep_share_respects_its_budget(k, total, share):
    domains = [f"d{i}" for i in range(k)]
    m = make_mixer("aioli", domains, {"total_steps": total, "sweep_share": share})
    learn = m.sweep_steps(total)
    assert 0 < learn <= math.floor(share * total)
    # every round that starts sweeps every domain lp_rounds times (no truncated round)
    assert learn % (k * m.lp_rounds * m.lp_steps) == 0
    # and the budget is spent, not left mostly idle: at least half of it
    assert learn >= 0.5 * math.floor(share * total) or m.lp_steps == math.floor(share * total) // k


def test_aioli_budget_too_small_and_weight_bound():
    with pytest.raises(ValueError, match="sweep_share"):
        make_mixer("aioli", [f"d{i}" for i in range(7)], {"total_steps": 40, "sweep_share": 0.14})
    # one update moves the ratio of two weights by at most e^eta: the extreme A puts all its
    # mass on one column
    m = make_mixer("aioli", ["a", "b", "c"], {"update_steps": 30, "lp_rounds": 1, "lp_steps": 2})
    M = np.zeros((3, 3))
    M[:, 0] = [1.0, 0.5, 0.2]  # only sweeps of "a" lowered any loss
    m._apply(M @ np.stack([m.sweep_mixture(j) for j in range(3)]), 0)
    w = m.weights()
    assert w.max() / w.min() <= math.exp(m.eta) + 1e-9


def test_trainer_callback_fills_aioli_total_steps():
    from mixopt.online.callback import OnlineMixingCallback

    class Cfg:
        def total_steps(self):
            return 1000

    class Ctx:
        domains = [f"d{i}" for i in range(7)]
        config = Cfg()
        vocab_size = 512

    m = make_mixer("aioli", Ctx.domains)
    OnlineMixingCallback(m).on_train_start(Ctx())
    assert m.params["total_steps"] == 1000 and m.sweep_steps(1000) <= 140
    d = make_mixer("doremi", Ctx.domains, {"reference_losses": {x: 1.0 for x in Ctx.domains}})
    OnlineMixingCallback(d).on_train_start(Ctx())
    assert np.allclose(d.excess, math.log(512))  # the reference's perdomain_scores start


@pytest.mark.parametrize("seed", [0, 1])
def test_doremi_average_weights_move_toward_optimum(env, optimum, seed):
    env.reset(seed)
    m = make_mixer("doremi", env.domains, doremi_params(env), seed=seed)
    run_online(env, m, STEPS)
    avg = m.average_weights()
    assert np.isclose(avg.sum(), 1.0)
    assert l1(avg, optimum) <= 0.4 * l1(UNIFORM, optimum)
    assert env.static_objective(avg, STEPS) < env.static_objective(UNIFORM, STEPS)


@pytest.mark.parametrize("seed", [0, 1])
def test_odm_moves_in_the_right_direction(env, optimum, seed):
    env.reset(seed)
    m = make_mixer("odm", env.domains, seed=seed)
    run_online(env, m, STEPS)
    w = m.weights()
    assert w[0] < w[1] < w[2]  # web (lowest loss) < code < math (highest loss)
    assert l1(w, optimum) < l1(UNIFORM, optimum) - 0.01
    assert env.objective_value() < stratified_objective(env, seed)


# -- the papers' formulas ------------------------------------------------------------------
def test_odm_update_matches_algorithm_1():
    m = make_mixer("odm", ["a", "b", "c", "d"], {"alpha": 0.9})
    assert ODM.exploration(4, 0) == 0.25
    assert ODM.exploration(4, 100) == pytest.approx(math.sqrt(math.log(4) / 400))
    pi = m.weights()
    m.update([{"step": 0, "train_losses": {"a": 2.0, "c": 4.0}}])  # b, d absent from the batch
    R = np.array([0.1 * 2.0 / pi[0], 0.0, 0.1 * 4.0 / pi[2], 0.0])
    assert np.allclose(m.rewards, R)
    eps1 = ODM.exploration(4, 1)
    gibbs = np.exp(0.25 * R) / np.exp(0.25 * R).sum()  # eps_0 = 1/K in the exponent
    assert np.allclose(m.weights(), (1 - 4 * eps1) * gibbs + eps1)


def test_odm_warmup_keeps_initial_weights():
    m = make_mixer("odm", ["a", "b"], {"warmup_steps": 10}, initial_weights=[0.8, 0.2])
    m.update([{"step": s, "train_losses": {"a": 1.0, "b": 5.0}} for s in range(10)])
    assert np.allclose(m.weights(), [0.8, 0.2]) and m.n_updates == 0
    m.update([{"step": 10, "train_losses": {"a": 1.0, "b": 5.0}}])
    assert m.n_updates == 1


def test_doremi_update_matches_algorithm_1():
    ref = {"a": 2.0, "b": 2.0, "c": 2.0}
    m = make_mixer("doremi", ["a", "b", "c"], {"reference_losses": ref})
    m.update([{"step": 0, "train_losses": {"a": 2.5, "b": 1.0, "c": 3.0}}])
    lam = np.array([0.5, 0.0, 1.0])  # b's excess is negative: clipped at 0
    alpha = np.exp(lam) / np.exp(lam).sum()
    alpha = (1 - 1e-3) * alpha + 1e-3 / 3
    assert np.allclose(m.weights(), alpha)
    # a domain absent from the batch keeps its last excess loss
    m.update([{"step": 1, "train_losses": {"b": 2.2}}])
    assert np.allclose(m.excess, [0.5, 0.2, 1.0])
    assert np.allclose(m.average_weights(), m.weight_sum / 2)


def test_doremi_loss_weighting_divides_by_the_sampling_weights():
    """Hand-computed case of the reference ``doremi/trainer.py`` weighting."""
    torch = pytest.importorskip("torch")
    from mixopt.online.callback import OnlineMixingCallback

    p = [0.5, 0.25, 0.25]  # sampling (reference) distribution = initial alpha
    ref = {"a": 2.0, "b": 2.0, "c": 2.0}
    m = make_mixer("doremi", ["a", "b", "c"], {"reference_losses": ref, "smoothing": 0.0}, p)
    m.update([{"step": 0, "train_losses": {"a": 2.0 + math.log(2.0), "b": 1.0, "c": 2.0}}])
    # lambda = [ln 2, 0, 0]: alpha ∝ [0.5 * 2, 0.25, 0.25] = [2/3, 1/6, 1/6]
    assert np.allclose(m.weights(), [2 / 3, 1 / 6, 1 / 6])
    # alpha / p = [4/3, 2/3, 2/3], normalised: [1/2, 1/4, 1/4]
    assert np.allclose(m.loss_weights(), [0.5, 0.25, 0.25])
    cb = OnlineMixingCallback(m)
    ids = np.array([0, 1, 2, 2])
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0])
    w = cb.sample_weights(None, 1, losses, ids)
    # reference loss: sum_s w_s L_s / sum_s w_s = (0.5 + 0.5 + 0.75 + 1) / 1.25 = 2.2
    assert float((w * losses).mean()) == pytest.approx(2.2)
    # (weighting by alpha alone would give (2/3 + 9/6) / (2/3 + 3/6) = 1.857)
    m_off = make_mixer(
        "doremi", ["a", "b", "c"], {"reference_losses": ref, "loss_weighting": False}
    )
    assert m_off.loss_weights() is None


def test_doremi_scores_start_at_log_vocab():
    ref = {"a": 2.0, "b": 2.0}
    m = make_mixer("doremi", ["a", "b"], {"reference_losses": ref, "vocab_size": 256})
    assert np.allclose(m.excess, math.log(256))
    m.update([{"step": 0, "train_losses": {"a": 2.5}}])  # b absent: keeps log(256)
    assert np.allclose(m.excess, [0.5, math.log(256)])


def test_odm_importance_weights_only_domains_that_can_be_absent():
    m = make_mixer("odm", ["a", "b", "c", "d"], initial_weights=[0.85, 0.1, 0.03, 0.02])
    obs = {"step": 0, "train_losses": {"a": 2.0, "b": 3.0, "c": 4.0, "d": 5.0}, "batch_size": 16}
    m.update([obs])
    q = np.array([1.0, 1.0, 0.48, 0.32])  # min(1, 16 pi)
    assert np.allclose(m.rewards, 0.1 * np.array([2.0, 3.0, 4.0, 5.0]) / q)


def test_doremi_reference_curve_is_interpolated():
    curve = [
        {"step": 0, "losses": {"a": 4.0, "b": 4.0}},
        {"step": 10, "losses": {"a": 2.0, "b": 3.0}},
    ]
    m = make_mixer("doremi", ["a", "b"], {"reference_curve": curve})
    assert np.allclose(m.reference_at(5), [3.0, 3.5])
    assert np.allclose(m.reference_at(50), [2.0, 3.0])


def test_aioli_linear_solve_undoes_the_smoothing():
    m = make_mixer("aioli", ["a", "b", "c"], {"one_hot_factor": 0.75})
    A = np.array([[0.3, 0.1, 0.0], [0.05, 0.2, 0.1], [0.0, 0.1, 0.4]])
    W = np.stack([m.sweep_mixture(j) for j in range(3)])
    M = A @ W.T  # drop of loss i when training on sweep mixture j
    assert np.allclose(m.solve_A(M), A)


def test_aioli_schedule_sweeps_every_domain_lp_rounds_times():
    m = make_mixer("aioli", ["a", "b", "c"], {**AIOLI_FAST, "one_hot_factor": 0.75})
    sweeps = [m.mixture_for_step(s) for s in range(0, m.lp_duration, 4)]
    assert all(np.allclose(m.mixture_for_step(s), sweeps[s // 4]) for s in range(m.lp_duration))
    swept = [int(np.argmax(w)) for w in sweeps]
    assert sorted(swept) == [0, 0, 1, 1, 2, 2]
    assert all(np.isclose(w.max(), 0.75) for w in sweeps)
    assert m.phase(m.lp_duration) == "mix"
    assert m.eval_boundaries(0, 100) == list(range(0, m.lp_duration + 1, 4))
    assert m.sweep_order(3) == make_mixer("aioli", ["a", "b", "c"], AIOLI_FAST).sweep_order(3)


def test_aioli_rejects_a_wrong_sweep_mixture_and_skips_incomplete_rounds():
    m = make_mixer("aioli", ["a", "b"], {"update_steps": 20, "lp_rounds": 1, "lp_steps": 2})
    losses = {"a": 3.0, "b": 3.0}
    m.update([{"step": 0, "eval_losses": losses}])
    wrong = {"a": 0.5, "b": 0.5}
    with pytest.raises(ValueError, match="sweep mixture"):
        m.update([{"step": 2, "eval_losses": losses, "mixture": wrong}])
    # the external trainer never reports boundary 2 or 4: round 0 is skipped at round 1's start
    m.update([{"step": 20, "eval_losses": losses}])
    assert m.skipped_rounds == 1 and m.rounds_done == 0
    assert np.allclose(m.weights(), [0.5, 0.5])


def test_aioli_ignores_evaluations_off_the_schedule(env):
    a = make_mixer("aioli", env.domains, AIOLI_FAST)
    b = make_mixer("aioli", env.domains, AIOLI_FAST)
    env.reset(3)
    twin = copy.deepcopy(env)
    run_online(env, a, 200)
    for step in range(200):  # same run, plus periodic evaluations every 7 steps
        if step % 7 == 3 and not b.needs_eval_at(step):
            b.update([{"step": step, "eval_losses": {d: 9.0 for d in twin.domains}}])
        if b.needs_eval_at(step):
            b.update([{"step": step, "eval_losses": twin.evaluate()}])
        obs = twin.step(b.mixture_for_step(step))
        b.update([obs])
    assert np.array_equal(a.weights(), b.weights())


# -- state survives a JSON round trip mid-run ----------------------------------------------
@pytest.mark.parametrize(
    "name,params",
    [("aioli", AIOLI_FAST), ("aioli", {}), ("odm", {}), ("doremi", None)],
)
def test_state_round_trip_gives_identical_updates(env, name, params):
    if params is None:
        params = doremi_params(env)
    m = make_mixer(name, env.domains, params, seed=5)
    half = 250 if name == "aioli" and not params else 137  # mid-sweep for Aioli's defaults
    env.reset(11)
    run_online(env, m, half)
    blob = json.dumps(m.state_dict())
    restored = OnlineMixer.from_state(json.loads(blob))
    assert type(restored) is type(m)
    env2 = copy.deepcopy(env)
    t1 = run_online(env, m, 420, start=half)
    t2 = run_online(env2, restored, 420, start=half)
    assert t1 == t2
    assert np.array_equal(m.weights(), restored.weights())
    assert np.array_equal(m.final_weights(), restored.final_weights())
    assert json.dumps(m.state_dict()) == json.dumps(restored.state_dict())


def test_state_keeps_the_rng():
    m = make_mixer("odm", ["a", "b"], seed=3)
    m.rng.random(5)
    r = OnlineMixer.from_state(json.loads(json.dumps(m.state_dict())))
    assert r.rng.random() == m.rng.random()


def test_aioli_state_type_check():
    state = make_mixer("odm", ["a", "b"]).state_dict()
    with pytest.raises(ValueError, match="not 'aioli'"):
        Aioli.from_state(state)


def test_plan_tells_an_external_trainer_what_to_do():
    m = make_mixer("aioli", ["a", "b", "c"], AIOLI_FAST)
    p = m.plan(0)
    assert p["phase"] == "learn" and p["eval_at"] == 0 and p["valid_until"] == 4
    assert np.isclose(max(p["weights"].values()), 0.75)
    p = m.plan(30)  # mixing phase of round 0: the next evaluation starts round 1
    assert p["phase"] == "mix" and p["eval_at"] == 100 and p["valid_until"] == 100
    o = make_mixer("odm", ["a", "b"]).plan(7)
    assert o["valid_until"] is None and o["eval_at"] is None
