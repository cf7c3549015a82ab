"""A swarm that spends its budget in rounds where the optimum is (CLIMB-style search).

RegMix (Liu et al. 2024) and olmix draw every proxy run at once. CLIMB (Diao et al. 2025,
"CLIMB: CLustering-based Iterative Data Mixture Bootstrapping for Language Model Pre-training",
Sec. 3.2 and Fig. 4) searches in iterations instead: iteration ``k`` samples candidate mixtures,
a predictor fitted on every proxy run so far prunes the ones it predicts to be poor, only the
most promising are trained, and the search space is refined around the best predicted mixtures
before the next iteration; its default spends a decreasing budget per iteration (three
iterations, 64 / 32 / 16 proxy runs, as we read its compute-allocation study) with a LightGBM
predictor. This module is that loop with a predictor that has an uncertainty (a GP by default),
so the pruning is an acquisition (expected improvement or a lower confidence bound) instead of
a plain top-k of the predicted loss:

1. **Round 1** (:func:`first_round`): the usual space-filling RegMix draw
   (:func:`mixopt.mixing.design.regmix_swarm` with ``space_filling=True``) of twice the round
   size (:func:`round_sizes`): CLIMB gives its first iteration the largest share (64 proxy runs,
   twice the second iteration's 32), since every later round is only as good as the model the
   first one lets us fit.
2. **Each later round** (:func:`next_round`): fit the estimator on every run so far; draw
   ``n_candidates`` feasible candidates, a fraction ``global_fraction`` over the whole simplex
   (Dirichlet draws around the prior, as :func:`~mixopt.mixing.design.suggest_next`) and the
   rest inside the *region* of round ``k``: the homothety of the simplex of ratio
   ``r_k = max(min_radius, shrink ** (k - 1))`` centred on each of the ``n_centres`` best
   predicted mixtures (``c + r_k (d - c)``, ``d`` uniform on the simplex), so the region
   shrinks round after round as CLIMB's does; candidates are projected onto the constraints.
3. **Acquisition**: ``"ei"``: expected improvement for minimisation (Jones et al. 1998, Eq. 15)
   over the best *predicted* loss of the runs (plug-in EI: the runs' losses are noisy, so the
   incumbent is the posterior mean, not the smallest observed loss); ``"lcb"``: the lower
   confidence bound ``mu - kappa * sd`` (GP-UCB, Srinivas et al. 2010, for minimisation).
4. **Batch** (:func:`select_batch`): greedily by acquisition, skipping a candidate closer than
   ``min_distance_factor * r_k`` (L2) to a run or to a mixture already chosen, so a batch
   spreads over the region instead of stacking on one mode (a local penalisation in the spirit
   of Gonzalez et al. 2016, "Batch Bayesian optimization via local penalization").
5. **Stopping rule** (:func:`should_stop`): the *predicted regret* of round ``k`` is
   ``R_k = m_k - min_C (mu - kappa * sd)``: the best predicted loss ``m_k`` minus the smallest
   lower confidence bound among the round's candidates, i.e. how much better than the current
   best an optimistic reading of the model allows. The rounds stop when ``R`` has not fallen
   by more than ``tol`` in each of the last ``patience`` rounds (or when the budget is spent).

Defaults, and why
-----------------
* ``acquisition="ei"``: EI needs no scale parameter; ``"lcb"`` is offered for users who prefer
  an explicit exploration knob. On the bench's 24 worlds (K = 3, 5, 7; 8 seeds; round 1 of 16,
  rounds of 8) the two are level up to 32 runs and EI is ahead at 40 runs (mean regret 0.0029
  against 0.0039; ``bench/rounds_synthetic.py --acquisition lcb`` prints it).
* ``kappa = 2.0``: the one-sided 97.7% normal quantile; the GP-UCB theory's ``beta_t`` grows
  with ``log t`` and gives ``sqrt(beta) ~ 2`` to ``3`` for the tens of runs a swarm has; also the
  bound used by the stopping rule, for either acquisition.
* ``shrink = 0.5``: the region's linear size halves every round, the ratio by which CLIMB's
  default halves the budget per iteration (64 / 32 / 16); ``min_radius = 0.1``: the region
  never falls below a tenth of the simplex, which still contains a weight change of 0.1, more
  than the 0.05 resolution at which proxy runs tell mixtures apart (README, Proxy training).
* ``global_fraction = 0.25``: a quarter of the candidates stay global so a mode the first
  round missed can still be reached (the same split as ``suggest_next``'s exploration share).
* ``n_centres = 3``: the region is centred on the best predicted mixture and the two best
  predicted runs (CLIMB keeps its top-k mixtures, not one).
* ``min_distance_factor = 0.3``: runs of a batch (and the runs before it) at least 0.3 times
  the region's ratio apart. Judged with ``bench/rounds_synthetic.py`` on 12 worlds at once
  (K = 3, 5, 7; 4 seeds; rounds of 8, then with a first round of 8): 0.2, 0.3 and 0.5 all beat
  the one-shot swarm at 16 and 24 runs, 0.1 did not (batches stacked on one mode); 0.3 is the
  middle of that range.
* ``tol = 0.005`` nats, ``patience = 2``: half the 0.01 regret the synthetic check asks for,
  and two rounds without that progress (one flat round is common when a round fills a gap
  far from the optimum).
* ``FIRST_ROUND_FACTOR = 2`` (round 1 = 2 x round size): CLIMB's 64 / 32 ratio; a round 1 of
  one round size left the GP of K = 5-7 domains centring the region on the wrong mixture. Round
  1 also has at least ``K + 1`` runs (:func:`round_sizes` with ``n_domains``): at K = 10 with
  rounds of 4 (8 worlds, noise 0.01, MAP GP) a round 1 of 11 instead of 8 brought the runs from
  which the regret stays below 0.01 from a mean 72.0 to 46.0 (one-shot 63.0); on K = 3, 5, 7
  with rounds of 4 or 8 it changes nothing (2 x M >= K + 1). A smaller round 1
  (``first_round_size=max(K + 1, round_size)``, batch BO practice) wins at noise 0.005 and
  loses at 0.01-0.02 on ``bench/rounds_synthetic.py``'s 12 settings (README, "Swarms in
  rounds"), so the default stays. Also tried there with the maximum-likelihood GP and not kept:
  the batch's first slot given to the predicted optimum, a region fixed at half the simplex (a
  TuRBO-like trust region), half or all of the candidates global, a region never below 0.3, a
  GP noise floor, a warp fixed for the swarm, GP-UCB-PE batches (Contal et al. 2013), batch
  Thompson sampling (Kandasamy et al. 2018), and the best predicted run as the recommendation.
* ``DEFAULT_HYPER_PRIOR = "dim_scaled"``: the default model is the GP with MAP hyper-parameters
  (:class:`~mixopt.mixing.gp.GaussianProcessMixing`, ``hyper_prior``: Hvarfner et al. 2024's
  dimension-scaled length-scale prior and a Gamma prior on the noise). Fitted by maximum
  likelihood, the GP puts the noise sd near zero on a few tens of runs (median 0.0001 nats at 16
  runs for a true 0.005-0.02), interpolates the noise and moves its best predicted mixture from
  round to round. On all 12 settings of ``bench/rounds_synthetic.py`` it lowers the mean curve's
  0.01 crossing of the rounds in 11 (rounds of 4 after 8: 18.9 / 16.5 / 39.8 -> 12.7 / 11.5 / 21.8
  runs at noise 0.005 / 0.01 / 0.02) and of the one-shot swarm too (18.9 / 21.5 / 33.0 -> 13.3 /
  14.1 / 27.3), the bench's recommender being this GP for both. With it, rounds of 4 after a first
  round of 8 stay below a regret of 0.01 with fewer runs than one-shot at every noise (mean 13.8 /
  19.3 / 31.8 against 16.3 / 23.3 / 40.8) and cross it earlier on the mean curve (12.7 / 11.5 /
  21.8 against 13.3 / 14.1 / 27.3); rounds of 8 after 16 do not (a first round of 16 is already
  more than one-shot needs at 0.005-0.01). The estimator ``gp`` keeps maximum likelihood by
  default (the prior costs it on the transfer table: gp module docstring).
* ``n_candidates = 2000``: candidate scoring is ~1 ms per 1,000 candidates for a GP on tens of
  runs; more candidates do not change the synthetic curves (bench).

Any estimator of the registry plugs in (``estimator=``): one whose ``predict`` accepts
``return_std`` (the GP) gives its own uncertainty; for the others the spread of
``n_bootstrap`` refits on resampled runs is used (the MDE-featured estimators get their
context through ``fit_context``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mixopt.mixing.base import MixingEstimator
from mixopt.mixing.constraints import Constraints
from mixopt.mixing.design import PAPER_STRENGTHS, expected_improvement, regmix_swarm
from mixopt.mixing.gp import GaussianProcessMixing
from mixopt.mixing.simplex import project_box_simplex

ACQUISITIONS = ("ei", "lcb")
DEFAULT_ACQUISITION = "ei"
DEFAULT_KAPPA = 2.0
DEFAULT_SHRINK = 0.5
DEFAULT_MIN_RADIUS = 0.1
DEFAULT_GLOBAL_FRACTION = 0.25
DEFAULT_N_CENTRES = 3
DEFAULT_MIN_DISTANCE_FACTOR = 0.3
DEFAULT_TOL = 0.005
DEFAULT_PATIENCE = 2
DEFAULT_N_CANDIDATES = 2000
DEFAULT_N_BOOTSTRAP = 8
FIRST_ROUND_FACTOR = 2
DEFAULT_HYPER_PRIOR = "dim_scaled"


@dataclass
class RoundPlan:
    """What :func:`next_round` decided: the mixtures to train and what the model predicts.

    ``best_mixture``: the best predicted mixture (posterior mean) with ``best_loss`` and its
    interval ``best_interval`` (``mu -+ kappa sd``); ``regret``: the predicted regret ``R_k``
    (module docstring, item 5); ``radius``: the region's ratio ``r_k``.
    """

    mixtures: np.ndarray
    round_index: int
    best_mixture: np.ndarray
    best_loss: float
    best_interval: tuple[float, float]
    regret: float
    radius: float
    acquisition: str
    notes: list[str] = field(default_factory=list)

    def summary(self, domains: Sequence[str] | None = None) -> dict[str, Any]:
        names = list(domains) if domains is not None else None
        best = [float(v) for v in self.best_mixture]
        return {
            "round": self.round_index,
            "best_mixture": dict(zip(names, best, strict=True)) if names else best,
            "best_loss": float(self.best_loss),
            "interval": [float(self.best_interval[0]), float(self.best_interval[1])],
            "regret": float(self.regret),
            "radius": float(self.radius),
            "acquisition": self.acquisition,
        }


def region_radius(
    round_index: int, shrink: float = DEFAULT_SHRINK, min_radius: float = DEFAULT_MIN_RADIUS
) -> float:
    """``r_k = max(min_radius, shrink ** (k - 1))`` (round 1 is the whole simplex)."""
    return float(max(min_radius, float(shrink) ** max(0, int(round_index) - 1)))


def _bounds(constraints: Constraints | dict | None, domains: list[str] | None, K: int):
    if constraints is None:
        return np.zeros(K), np.ones(K)
    c = constraints if isinstance(constraints, Constraints) else Constraints.from_dict(constraints)
    return c.feasible_bounds(domains or [f"d{i}" for i in range(K)])


def _project(W: np.ndarray, constraints: Any, domains: list[str] | None) -> np.ndarray:
    K = W.shape[1]
    if constraints is None:
        return W / W.sum(axis=1, keepdims=True)
    c = constraints if isinstance(constraints, Constraints) else Constraints.from_dict(constraints)
    names = domains or [f"d{i}" for i in range(K)]
    if c.groups:
        return c.project(W, names)
    lo, hi = c.feasible_bounds(names)
    return project_box_simplex(W, lo, hi)


def first_round(
    prior: Any,
    count: int,
    *,
    constraints: Constraints | dict | None = None,
    domains: list[str] | None = None,
    random_state: int = 0,
    **swarm_params: Any,
) -> np.ndarray:
    """Round 1: the space-filling RegMix draw of ``count`` mixtures."""
    return regmix_swarm(
        prior,
        count,
        constraints=constraints,
        domains=domains,
        space_filling=True,
        random_state=random_state,
        **swarm_params,
    )


def candidates(
    centres: np.ndarray,
    radius: float,
    n: int,
    rng: np.random.Generator,
    *,
    prior: Any = None,
    constraints: Constraints | dict | None = None,
    domains: list[str] | None = None,
    global_fraction: float = DEFAULT_GLOBAL_FRACTION,
) -> np.ndarray:
    """``n`` feasible candidates: ``global_fraction`` RegMix-style Dirichlet draws over the
    simplex, the rest ``c + U(0, radius) (d - c)`` around the ``centres`` (``d`` uniform)."""
    centres = np.atleast_2d(np.asarray(centres, dtype=float))
    K = centres.shape[1]
    p = np.ones(K) / K if prior is None else np.clip(np.asarray(prior, dtype=float), 0, None)
    p = p / p.sum()
    n_global = int(round(n * float(global_fraction)))
    s = PAPER_STRENGTHS[rng.integers(0, len(PAPER_STRENGTHS), n_global)]
    alpha = np.maximum(np.sqrt(p)[None, :] / np.sqrt(p).sum() * s[:, None] * K, 1e-3)
    glob = rng.gamma(alpha)
    glob = glob / np.maximum(glob.sum(axis=1, keepdims=True), 1e-300)
    n_local = n - n_global
    which = rng.integers(0, centres.shape[0], n_local)
    d = rng.dirichlet(np.ones(K), size=n_local)
    lam = rng.uniform(0.0, float(radius), size=(n_local, 1))
    local = centres[which] + lam * (d - centres[which])
    C = np.vstack([glob, local, centres])
    return _project(np.clip(C, 0.0, None), constraints, domains)


def _supports_std(estimator: Any) -> bool:
    try:
        return "return_std" in inspect.signature(estimator.predict).parameters
    except (TypeError, ValueError):
        return False


def _objective(pred: np.ndarray) -> np.ndarray:
    pred = np.asarray(pred, dtype=float)
    return pred.mean(axis=1) if pred.ndim == 2 else pred


class _Model:
    """A fitted estimator with ``mu, sd = model(C)``: its own std when it has one, otherwise
    the spread of bootstrap refits (module docstring)."""

    def __init__(
        self,
        estimator: MixingEstimator | None,
        X: np.ndarray,
        y: np.ndarray,
        *,
        fit_context: dict | None,
        n_bootstrap: int,
        rng: np.random.Generator,
        random_state: int,
    ):
        self.est = (
            estimator
            if estimator is not None
            else GaussianProcessMixing(random_state=random_state, hyper_prior=DEFAULT_HYPER_PRIOR)
        )
        ctx = dict(fit_context or {})
        self.est.fit(X, y, **ctx)
        self.refits: list[MixingEstimator] = []
        if not _supports_std(self.est):
            n = len(y)
            for _ in range(int(n_bootstrap)):
                idx = rng.integers(0, n, n)
                if len(np.unique(idx)) < max(3, n // 2):
                    continue
                try:
                    self.refits.append(self.est.clone().fit(X[idx], y[idx], **ctx))
                except ValueError:  # too few distinct runs for this estimator
                    continue

    def __call__(self, C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if _supports_std(self.est):
            mu, sd = self.est.predict(C, return_std=True)  # type: ignore[call-arg]
            mu, sd = np.atleast_2d(mu), np.atleast_2d(sd)
            k = mu.shape[1]
            return mu.mean(axis=1), np.sqrt((sd**2).sum(axis=1)) / k
        mu = _objective(self.est.predict(C))
        if len(self.refits) < 2:
            return mu, np.zeros_like(mu)
        preds = np.vstack([_objective(r.predict(C)) for r in self.refits])
        return mu, preds.std(axis=0, ddof=1)


def select_batch(
    C: np.ndarray,
    score: np.ndarray,
    count: int,
    existing: np.ndarray,
    min_distance: float,
) -> np.ndarray:
    """Greedy batch: highest ``score`` first, each at least ``min_distance`` (L2) from the
    ``existing`` runs and from the mixtures already chosen; when too few qualify, the rest is
    filled by max-min distance (farthest candidates first)."""
    chosen: list[np.ndarray] = []
    ref = np.asarray(existing, dtype=float)
    dist = np.min(np.linalg.norm(C[:, None, :] - ref[None, :, :], axis=2), axis=1)
    for i in np.argsort(-score):
        if len(chosen) >= count:
            break
        if dist[i] >= min_distance:
            chosen.append(C[i])
            dist = np.minimum(dist, np.linalg.norm(C - C[i], axis=1))
    while len(chosen) < count:
        i = int(np.argmax(dist))
        if dist[i] <= 1e-9:
            break
        chosen.append(C[i])
        dist = np.minimum(dist, np.linalg.norm(C - C[i], axis=1))
    return np.array(chosen)


def next_round(
    X: Any,
    y: Any,
    count: int,
    *,
    round_index: int,
    prior: Any = None,
    constraints: Constraints | dict | None = None,
    domains: list[str] | None = None,
    estimator: MixingEstimator | None = None,
    fit_context: dict | None = None,
    acquisition: str = DEFAULT_ACQUISITION,
    kappa: float = DEFAULT_KAPPA,
    shrink: float = DEFAULT_SHRINK,
    min_radius: float = DEFAULT_MIN_RADIUS,
    global_fraction: float = DEFAULT_GLOBAL_FRACTION,
    n_centres: int = DEFAULT_N_CENTRES,
    min_distance_factor: float = DEFAULT_MIN_DISTANCE_FACTOR,
    n_candidates: int = DEFAULT_N_CANDIDATES,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    radius: float | None = None,
    random_state: int = 0,
) -> RoundPlan:
    """Plan round ``round_index`` (>= 2) from the runs ``(X, y)`` so far (module docstring).

    ``y``: the objective of each run (a 1-D array; a 2-D one is averaged over its columns).
    ``estimator``: an unfitted estimator (default: a GP); ``count = 0`` only scores (the best
    predicted mixture and the regret, no new mixtures); ``radius``: the region's ratio instead of
    the round's ``r_k`` (a schedule by runs instead of rounds, ``r = 0.5 ** log2(n / n_1)``, was
    no better on the bench's worlds).
    """
    if acquisition not in ACQUISITIONS:
        raise ValueError(f"acquisition must be one of {list(ACQUISITIONS)}, got {acquisition!r}")
    X = np.asarray(X, dtype=float)
    y = _objective(np.asarray(y, dtype=float))
    if X.ndim != 2 or len(X) != len(y) or len(y) < 3:
        raise ValueError("next_round needs at least 3 runs (X: (n, K), y: (n,))")
    rng = np.random.default_rng(random_state + 7919 * int(round_index))
    model = _Model(
        estimator,
        X,
        y,
        fit_context=fit_context,
        n_bootstrap=n_bootstrap,
        rng=rng,
        random_state=random_state,
    )
    radius = region_radius(round_index, shrink, min_radius) if radius is None else float(radius)
    # the region's centres: the best predicted runs, then the best predicted candidate
    mu_runs, _ = model(X)
    centres = X[np.argsort(mu_runs)[: max(1, int(n_centres) - 1)]]
    pool = candidates(
        centres,
        radius,
        int(n_candidates),
        rng,
        prior=prior,
        constraints=constraints,
        domains=domains,
        global_fraction=global_fraction,
    )
    mu, sd = model(pool)
    best = int(np.argmin(mu))
    centres = np.vstack([pool[best], centres])
    local = candidates(
        pool[best][None, :],
        radius,
        max(1, int(n_candidates) // 4),
        rng,
        prior=prior,
        constraints=constraints,
        domains=domains,
        global_fraction=0.0,
    )
    mu2, sd2 = model(local)
    C, mu, sd = np.vstack([pool, local]), np.concatenate([mu, mu2]), np.concatenate([sd, sd2])
    best = int(np.argmin(mu))
    incumbent = float(min(mu[best], mu_runs.min()))
    lcb = mu - float(kappa) * sd
    regret = float(max(0.0, incumbent - lcb.min()))
    score = expected_improvement(mu, sd, incumbent) if acquisition == "ei" else -lcb
    batch = (
        select_batch(C, score, int(count), X, float(min_distance_factor) * radius)
        if count > 0
        else np.zeros((0, X.shape[1]))
    )
    return RoundPlan(
        mixtures=batch,
        round_index=int(round_index),
        best_mixture=C[best],
        best_loss=float(mu[best]),
        best_interval=(
            float(mu[best] - kappa * sd[best]),
            float(mu[best] + kappa * sd[best]),
        ),
        regret=regret,
        radius=radius,
        acquisition=acquisition,
    )


def should_stop(
    regrets: Sequence[float], tol: float = DEFAULT_TOL, patience: int = DEFAULT_PATIENCE
) -> bool:
    """True when the predicted regret fell by at most ``tol`` in each of the last ``patience``
    rounds (``regrets`` in round order; ``R_k`` against the smallest regret before it)."""
    r = [float(v) for v in regrets]
    if len(r) <= int(patience):
        return False
    for k in range(len(r) - int(patience), len(r)):
        if min(r[:k]) - r[k] > float(tol):
            return False
    return True


def round_sizes(
    total_budget: int,
    round_size: int,
    first_round_size: int | None = None,
    *,
    n_domains: int | None = None,
) -> list[int]:
    """Runs per round: round 1 takes ``first_round_size`` (default ``FIRST_ROUND_FACTOR x
    round_size``, and at least ``n_domains + 1`` when the number of domains is given: a GP with
    one length scale per domain, or a linear trend, is not identified on fewer runs; at most the
    budget), every later round ``round_size``, the last one what is left."""
    total, size = int(total_budget), int(round_size)
    if size < 1 or total < 1 or size > total:
        raise ValueError("need 1 <= round_size <= total_budget")
    if first_round_size is None:
        first_size = max(FIRST_ROUND_FACTOR * size, int(n_domains or 0) + 1)
    else:
        first_size = int(first_round_size)
    if first_size < 1:
        raise ValueError("need first_round_size >= 1")
    first = min(total, first_size)
    out = [first] + [size] * ((total - first) // size)
    if (total - first) % size:
        out.append((total - first) % size)
    return out


@dataclass
class RoundsResult:
    """What :func:`run_rounds` did: every run, and one :class:`RoundPlan` per later round."""

    X: np.ndarray
    y: np.ndarray
    plans: list[RoundPlan]
    n_after_round: list[int]
    stopped_early: bool


def run_rounds(
    evaluate: Callable[[np.ndarray], np.ndarray],
    prior: Any,
    total_budget: int,
    round_size: int,
    *,
    constraints: Constraints | dict | None = None,
    domains: list[str] | None = None,
    estimator_factory: Callable[[], MixingEstimator] | None = None,
    early_stop: bool = True,
    tol: float = DEFAULT_TOL,
    patience: int = DEFAULT_PATIENCE,
    random_state: int = 0,
    first_round_size: int | None = None,
    **round_params: Any,
) -> RoundsResult:
    """Run the whole loop against ``evaluate(W) -> losses`` (a simulator, or a benchmark's
    trainer): the rounds of :func:`round_sizes` (round 1 space-filling) until ``total_budget``
    runs or the stopping rule."""
    K = len(domains) if domains else int(np.asarray(prior, dtype=float).size)
    sizes = round_sizes(total_budget, round_size, first_round_size, n_domains=K)
    first = sizes[0]
    X = first_round(
        prior, first, constraints=constraints, domains=domains, random_state=random_state
    )
    y = np.asarray(evaluate(X), dtype=float).ravel()
    plans: list[RoundPlan] = []
    n_after = [len(y)]
    stopped = False
    for k, size in enumerate(sizes[1:], start=2):
        plan = next_round(
            X,
            y,
            size,
            round_index=k,
            prior=prior,
            constraints=constraints,
            domains=domains,
            estimator=estimator_factory() if estimator_factory else None,
            random_state=random_state,
            **round_params,
        )
        plans.append(plan)
        if early_stop and should_stop([p.regret for p in plans], tol, patience):
            stopped = True
            break
        X = np.vstack([X, plan.mixtures])
        y = np.concatenate([y, np.asarray(evaluate(plan.mixtures), dtype=float).ravel()])
        n_after.append(len(y))
    return RoundsResult(X=X, y=y, plans=plans, n_after_round=n_after, stopped_early=stopped)


def best_predicted(
    X: Any,
    y: Any,
    *,
    prior: Any = None,
    constraints: Constraints | dict | None = None,
    domains: list[str] | None = None,
    estimator: MixingEstimator | None = None,
    fit_context: dict | None = None,
    kappa: float = DEFAULT_KAPPA,
    random_state: int = 0,
) -> RoundPlan:
    """The recommendation after the runs ``(X, y)``: the best predicted mixture (a
    :class:`RoundPlan` with no mixtures to train), searched over the whole simplex and around
    the best runs at the smallest region radius."""
    return next_round(
        X,
        y,
        0,
        round_index=10**6,
        prior=prior,
        constraints=constraints,
        domains=domains,
        estimator=estimator,
        fit_context=fit_context,
        kappa=kappa,
        global_fraction=0.5,
        n_candidates=4000,
        random_state=random_state,
    )
