"""Synthetic check with a known truth: a swarm in rounds against a one-shot swarm (issue 25).

Worlds: the data mixing law of Ye et al. 2024 (Eq. 3/4, :mod:`mixopt.mixing.mixing_law`) per
domain, ``L_i(w) = c_i + k_i exp(sum_j t_ij w_j)``, the objective the mean over the K domains,
with random parameters per seed: ``c_i ~ U(1.5, 3)``, ``k_i ~ U(0.5, 1.5)``, a domain helps
itself most (``t_ii ~ U(-3, -1.5)``) and the others less or hurts (``t_ij ~ U(-0.8, 0.2)``),
so the optimum is a different interior or edge mixture in every world (its largest weight is
printed). Each trained run returns the objective plus Gaussian noise (``--noise``, default
0.01 nats: the order of a proxy run's seed noise on a mixture's mean loss). The true optimum is
found by SLSQP from 32 starts on the simplex.

For each K and seed, the *regret* of a strategy after n runs is the true objective at the
mixture it recommends (the best predicted mixture of a GP fitted on its n runs,
:func:`mixopt.mixing.rounds.best_predicted`) minus the true optimum:

* one-shot: a space-filling RegMix swarm of n runs (``regmix_swarm(space_filling=True)``),
  drawn anew for every n (what a user would have trained with that budget);
* rounds: :func:`mixopt.mixing.rounds.run_rounds`, round 1 of 2 x ``--round-size``
  space-filling runs (the same draw as one-shot's at that size), then ``--round-size`` runs per
  round up to ``--budget`` (no early stop here, to draw the whole curve; the stopping rule's
  round is reported separately), its regret after each round.

Prints the regret curve (mean over seeds, per K and overall), the runs each strategy needed to
reach a regret below 0.01 (the issue's target; "-" when never within the budget), and where
the stopping rule would have stopped.

    nice .venv/bin/python -m bench.rounds_synthetic [--ks 3 5 7] [--seeds 8] [--budget 48]
        [--round-size 8] [--noise 0.01] [--acquisition ei]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402
from scipy.optimize import minimize  # noqa: E402

from mixopt.mixing import rounds  # noqa: E402
from mixopt.mixing.design import regmix_swarm  # noqa: E402

TARGET_REGRET = 0.01


@dataclass
class World:
    """A data-mixing-law world with its true optimum."""

    c: np.ndarray
    k: np.ndarray
    T: np.ndarray
    noise: float
    rng: np.random.Generator
    w_opt: np.ndarray | None = None
    f_opt: float = float("nan")

    def truth(self, W: np.ndarray) -> np.ndarray:
        W = np.atleast_2d(W)
        L = self.c[None, :] + self.k[None, :] * np.exp(W @ self.T.T)
        return L.mean(axis=1)

    def reset_noise(self, seed: int) -> None:
        """Every strategy draws its noise from the same stream (common random numbers)."""
        self.rng = np.random.default_rng(seed + 17)

    def observe(self, W: np.ndarray) -> np.ndarray:
        f = self.truth(W)
        return f + self.rng.normal(0.0, self.noise, size=f.shape)


def make_world(K: int, seed: int, noise: float = 0.01) -> World:
    """A random world (module docstring) with its optimum solved."""
    rng = np.random.default_rng(1000 * K + seed)
    T = rng.uniform(-0.8, 0.2, size=(K, K))
    T[np.diag_indices(K)] = rng.uniform(-3.0, -1.5, size=K)
    world = World(
        c=rng.uniform(1.5, 3.0, size=K),
        k=rng.uniform(0.5, 1.5, size=K),
        T=T,
        noise=float(noise),
        rng=np.random.default_rng(seed + 17),
    )
    best_f, best_w = np.inf, None
    cons = ({"type": "eq", "fun": lambda w: w.sum() - 1.0},)
    for w0 in rng.dirichlet(np.ones(K), size=32):
        res = minimize(
            lambda w: float(world.truth(w)[0]),
            w0,
            method="SLSQP",
            bounds=[(0.0, 1.0)] * K,
            constraints=cons,
            options={"ftol": 1e-12, "maxiter": 500},
        )
        w = np.clip(res.x, 0.0, None)
        w = w / w.sum()
        f = float(world.truth(w)[0])
        if f < best_f:
            best_f, best_w = f, w
    world.w_opt, world.f_opt = best_w, best_f
    return world


def regret(world: World, X: np.ndarray, y: np.ndarray, seed: int) -> float:
    """True regret of the best predicted mixture of a GP fitted on ``(X, y)``."""
    plan = rounds.best_predicted(X, y, random_state=seed)
    return float(world.truth(plan.best_mixture)[0] - world.f_opt)


def one_shot_curve(world: World, K: int, grid: list[int], seed: int) -> list[float]:
    out = []
    world.reset_noise(seed)
    for n in grid:
        X = regmix_swarm(np.ones(K), n, space_filling=True, random_state=seed)
        out.append(regret(world, X, world.observe(X), seed))
    return out


def rounds_curve(
    world: World, K: int, budget: int, round_size: int, seed: int, **params
) -> tuple[list[float], int | None]:
    """Regret after each round, and the runs at which the stopping rule would have stopped."""
    world.reset_noise(seed)
    res = rounds.run_rounds(
        world.observe,
        np.ones(K),
        budget,
        round_size,
        early_stop=False,
        random_state=seed,
        **params,
    )
    curve = [regret(world, res.X[:n], res.y[:n], seed) for n in res.n_after_round]
    regrets = [p.regret for p in res.plans]
    stop_at = None
    for j in range(1, len(regrets) + 1):
        if rounds.should_stop(regrets[:j]):
            stop_at = res.n_after_round[j - 1]  # the runs trained when round j+1 was refused
            break
    return curve, stop_at


def first_below(curve: list[float], grid: list[int], target: float = TARGET_REGRET):
    return next((n for n, r in zip(grid, curve, strict=True) if r < target), None)


def _fmt_runs(values: list[int | None], budget: int) -> str:
    hit = [v for v in values if v is not None]
    mean = np.mean([v if v is not None else 2 * budget for v in values])
    return f"{mean:5.1f} ({len(hit)}/{len(values)})"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ks", type=int, nargs="+", default=[3, 5, 7])
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--budget", type=int, default=48)
    ap.add_argument("--round-size", type=int, default=8)
    ap.add_argument("--noise", type=float, default=0.01)
    ap.add_argument("--acquisition", choices=rounds.ACQUISITIONS, default="ei")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    # the rounds' schedule: round 1 of 2 x round size, then one round size a round
    grid = list(np.cumsum(rounds.round_sizes(args.budget, args.round_size)).tolist())
    t0 = time.perf_counter()
    table: dict[int, dict[str, list]] = {}
    for K in args.ks:
        rows: dict[str, list] = {"one": [], "rounds": [], "stop": [], "opt_max": []}
        for seed in range(args.seeds):
            world = make_world(K, seed, args.noise)
            rows["opt_max"].append(float(world.w_opt.max()))
            rows["one"].append(one_shot_curve(world, K, grid, seed))
            curve, stop = rounds_curve(
                world, K, args.budget, args.round_size, seed, acquisition=args.acquisition
            )
            rows["rounds"].append(curve)
            rows["stop"].append(stop)
        table[K] = rows
    print(
        f"regret (true loss at the recommendation - true optimum, nats), mean over "
        f"{args.seeds} seeds; noise {args.noise}; round size {args.round_size}; "
        f"acquisition {args.acquisition}"
    )
    print(f"{'K':>3} {'strategy':>9} " + " ".join(f"{n:>7}" for n in grid))
    for K, rows in table.items():
        for name in ("one", "rounds"):
            curve = np.mean(np.array(rows[name]), axis=0)
            label = "one-shot" if name == "one" else "rounds"
            print(f"{K:>3} {label:>9} " + " ".join(f"{r:7.4f}" for r in curve))
    all_one = np.mean([c for rows in table.values() for c in rows["one"]], axis=0)
    all_rounds = np.mean([c for rows in table.values() for c in rows["rounds"]], axis=0)
    print(f"{'all':>3} {'one-shot':>9} " + " ".join(f"{r:7.4f}" for r in all_one))
    print(f"{'all':>3} {'rounds':>9} " + " ".join(f"{r:7.4f}" for r in all_rounds))
    print()
    summary = {}
    for target in (TARGET_REGRET, TARGET_REGRET / 2):
        print(
            f"runs to reach regret < {target} (mean; a world never reaching it counts "
            f"2 x budget; reached/worlds), largest optimum weight, stopping rule's runs"
        )
        for K, rows in table.items():
            one = [first_below(c, grid, target) for c in rows["one"]]
            rnd = [first_below(c, grid, target) for c in rows["rounds"]]
            summary[(K, target)] = {"one": one, "rounds": rnd, "stop": rows["stop"]}
            print(
                f"K={K}: one-shot {_fmt_runs(one, args.budget)}  "
                f"rounds {_fmt_runs(rnd, args.budget)}"
                f"  optimum max weight {np.round(rows['opt_max'], 2).tolist()}"
                f"  stop at {rows['stop']}"
            )
    print(f"\n{time.perf_counter() - t0:.0f} s")
    return summary


if __name__ == "__main__":
    main()
