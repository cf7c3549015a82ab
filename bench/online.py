"""Benchmark of the online mixers: final average per-domain validation loss, 3 seeds.

    python bench/online.py                 # tiny GPT on the demo corpora (CPU, minutes)
    python bench/online.py --fixtures      # tiny GPT on tests/fixtures/corpora
    python bench/online.py --synthetic     # the synthetic environment (seconds)

Methods: stratified (uniform), natural (token-proportional), ODM, DoReMi (reference = the
stratified run of the same seed: its per-domain validation losses, as a per-step curve when
the run recorded one) and Aioli (from scratch). Prints a table of mean ± std over seeds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from workers.online import make_mixer  # noqa: E402
from workers.online.synthetic import SyntheticEnv, run_online  # noqa: E402

METHODS = ("stratified", "natural", "odm", "doremi", "aioli")


def table(results: dict[str, list[float]], title: str) -> str:
    lines = [title, f"{'method':<12} {'avg val loss':>20}  {'n':>2}", "-" * 38]
    for name, vals in results.items():
        if not vals:
            lines.append(f"{name:<12} {'(failed)':>20}")
            continue
        mean = statistics.fmean(vals)
        std = statistics.stdev(vals) if len(vals) > 1 else 0.0
        lines.append(f"{name:<12} {mean:>11.4f} ± {std:<7.4f}  {len(vals):>2}")
    return "\n".join(lines)


# -- synthetic ------------------------------------------------------------------------------
class _Static:
    params: dict = {}

    def __init__(self, w):
        self.w = np.asarray(w, dtype=float)

    def needs_eval_at(self, step):
        return False

    def mixture_for_step(self, step):
        return self.w

    def weights(self):
        return self.w

    def update(self, observations):
        return self.w


def bench_synthetic(seeds: int, steps: int) -> dict[str, list[float]]:
    env = SyntheticEnv()
    natural = np.array([0.6, 0.3, 0.1])  # token shares of the synthetic corpora
    out: dict[str, list[float]] = {m: [] for m in METHODS}
    for seed in range(seeds):
        env.reset(seed)
        run_online(env, _Static(np.full(env.k, 1 / env.k)), steps)
        out["stratified"].append(env.objective_value())
        ref = env.loss_at(env.n)
        env.reset(seed)
        run_online(env, _Static(natural), steps)
        out["natural"].append(env.objective_value())
        mixers = {
            "odm": make_mixer("odm", env.domains, seed=seed),
            "doremi": make_mixer(
                "doremi",
                env.domains,
                {"reference_losses": dict(zip(env.domains, ref.tolist(), strict=True))},
                seed=seed,
            ),
            "aioli": make_mixer(
                "aioli",
                env.domains,
                {"update_steps": 100, "lp_rounds": 2, "lp_steps": 4, "ema": None},
                seed=seed,
            ),
        }
        for name, m in mixers.items():
            env.reset(seed)
            run_online(env, m, steps)
            out[name].append(env.objective_value())
    return out


# -- the tiny GPT trainer -------------------------------------------------------------------
def bench_trainer(seeds: int, steps: int, fixtures: bool, verbose: bool) -> dict[str, list[float]]:
    try:
        from workers.training import trainer  # noqa: F401
    except ImportError as exc:
        raise SystemExit(
            f"the trainer (workers/training/trainer.py) is not available ({exc}); "
            "run with --synthetic"
        ) from exc
    raise SystemExit("bench_trainer: not wired to the trainer yet; run with --synthetic")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--synthetic", action="store_true", help="use the synthetic environment")
    ap.add_argument("--fixtures", action="store_true", help="train on tests/fixtures/corpora")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=None, help="optimiser steps per run")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.synthetic:
        steps = args.steps or 600
        res = bench_synthetic(args.seeds, steps)
        print(
            table(
                res,
                f"synthetic environment, {steps} steps, {args.seeds} seeds (objective = avg loss)",
            )
        )
    else:
        steps = args.steps or 300
        res = bench_trainer(args.seeds, steps, args.fixtures, not args.quiet)
        src = "fixture corpora" if args.fixtures else "demo corpora"
        print(table(res, f"tiny GPT on the {src}, {steps} steps, {args.seeds} seeds"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
