"""Benchmark of the online mixers: final average per-domain validation loss, 3 seeds.

    python bench/online.py                 # tiny GPT on the demo corpora (CPU, minutes)
    python bench/online.py --fixtures      # tiny GPT on tests/fixtures/corpora
    python bench/online.py --synthetic     # the synthetic environment (seconds)

Methods: stratified (uniform), natural (token-proportional), ODM, DoReMi (reference = the
stratified run of the same seed: its per-domain validation loss curve) and Aioli (from
scratch). In trainer mode DoReMi appears three ways: "doremi" (online, batches sampled from
the current alpha), "doremi-proxy" (the paper's proxy: batches from the reference mixture,
losses weighted by alpha) and "doremi-fixed" (the paper's recipe: a fresh run on the proxy's
average alpha). The score is the final validation loss averaged over domains (lower is
better); the table gives mean ± std over seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mixopt.online import make_mixer  # noqa: E402
from mixopt.online.synthetic import SyntheticEnv, run_online  # noqa: E402

METHODS = ("stratified", "natural", "odm", "doremi", "aioli")


def table(results: dict[str, list[float]], title: str) -> str:
    """Mean ± std over seeds, and the paired difference to stratified (same seed) with the
    number of seeds on which the method is better (lower)."""
    ref = results.get("stratified") or []
    lines = [
        title,
        f"{'method':<13} {'avg val loss':>18}  {'vs stratified (paired)':>24}  {'wins':>5}",
        "-" * 66,
    ]
    for name, vals in results.items():
        if not vals:
            lines.append(f"{name:<13} {'(failed)':>18}")
            continue
        mean = statistics.fmean(vals)
        std = statistics.stdev(vals) if len(vals) > 1 else 0.0
        row = f"{name:<13} {mean:>9.4f} ± {std:<6.4f}"
        if name != "stratified" and len(ref) == len(vals):
            diffs = [v - r for v, r in zip(vals, ref, strict=True)]
            dm = statistics.fmean(diffs)
            ds = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
            wins = sum(d < 0 for d in diffs)
            row += f"  {dm:>+14.4f} ± {ds:<7.4f}  {wins:>2}/{len(diffs)}"
        lines.append(row)
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
                {"total_steps": steps},
                seed=seed,
            ),
        }
        for name, m in mixers.items():
            env.reset(seed)
            run_online(env, m, steps)
            out[name].append(env.objective_value())
    return out


# -- the tiny GPT trainer -------------------------------------------------------------------
#: one run's settings (tiny preset, ~1M parameters; about a minute per 300 steps on one core)
TRAIN = {
    "preset": "tiny",
    "batch_size": 16,
    "block_size": None,
    "eval_interval": 50,
    "eval_batches": 8,
    "device": "cpu",
}  # block_size None: the preset's (tiny 128, micro 64)
#: evaluation batches per domain for Aioli's LearnParams measurements (bounds their cost)
AIOLI_EVAL_BATCHES = 2


def aioli_params(steps: int, k: int) -> dict:
    """Aioli's defaults (``mixopt.online.aioli``) for a run of ``steps`` steps: sweeps capped
    at 14% of training, ``lp_rounds=2, lp_steps=4`` (lowered to fit), ``eta = 0.1 K``, no EMA.

    Before issue 16 this benchmark used 3 rounds of ``steps // 3`` with ``lp_rounds=2,
    lp_steps=4, eta=1, ema=0.1``: sweeps took 56% of the steps.
    """
    return {"total_steps": steps}


def corpora_sources(fixtures: bool) -> tuple[dict[str, str], str]:
    """(domain -> source directory, shard cache directory); builds the demo corpora if missing."""
    if fixtures:
        root = ROOT / "tests" / "fixtures" / "corpora"
        sources = {p.name: str(p) for p in sorted(root.iterdir()) if p.is_dir()}
        return sources, str(Path(tempfile.gettempdir()) / "mixopt-bench-online-shards")
    from app.core.config import get_settings
    from mixopt.training.demo_data import build_demo_corpora

    home = get_settings().home
    manifest = build_demo_corpora(home / "demo-corpora")
    return {n: str(Path(d["path"]).parent) for n, d in manifest["domains"].items()}, str(
        home / "shards"
    )


def load_corpora(sources: dict[str, str], cache: str) -> dict:
    """Domain name -> DomainData (tokenised once; later calls find the cached shards)."""
    from mixopt.training.data import ingest_domain

    return {n: ingest_domain(n, src, cache) for n, src in sources.items()}


def _one_run(job: tuple) -> tuple:
    """Train one run (in a worker process): (method, seed, steps, corpora, extra) -> result."""
    import torch

    from mixopt.online.callback import OnlineMixingCallback
    from mixopt.training.trainer import TrainConfig, train

    method, seed, steps, corpora, extra, train_cfg = job
    torch.set_num_threads(1)
    data = load_corpora(*corpora)
    domains = list(data)
    k = len(domains)
    natural = np.array([d.n_train_tokens for d in data.values()], dtype=float)
    natural /= natural.sum()
    uniform = np.full(k, 1.0 / k)
    callbacks, cb = [], None
    weights = uniform
    if method == "natural":
        weights = natural
    elif method == "doremi-fixed":
        weights = np.array([extra["weights"][d] for d in domains])
    elif method in ("odm", "doremi", "doremi-proxy", "aioli"):
        if method == "odm":
            mixer = make_mixer("odm", domains, seed=seed)
        elif method == "aioli":
            mixer = make_mixer("aioli", domains, aioli_params(steps, k), seed=seed)
        else:
            params = {
                "reference_curve": extra["reference_curve"],
                "loss_weighting": method == "doremi-proxy",
            }
            mixer = make_mixer("doremi", domains, params, uniform, seed=seed)
        cb = OnlineMixingCallback(mixer, eval_max_batches=AIOLI_EVAL_BATCHES, record_every=25)
        callbacks.append(cb)
    cfg = TrainConfig(**train_cfg, max_steps=steps, seed=seed, weights=weights.tolist())
    res = train(cfg, data, callbacks)
    out = {
        "avg": float(np.mean(list(res.final_val_losses.values()))),
        "losses": res.final_val_losses,
        "curve": [{"step": c["step"], "losses": c["losses"]} for c in res.curve],
        "wall_s": res.wall_s,
        "evals": cb.n_evals if cb else 0,
        "final_weights": cb.final_weights()
        if cb
        else dict(zip(domains, weights.tolist(), strict=True)),
    }
    return method, seed, out


def bench_trainer(
    seeds: int,
    steps: int,
    fixtures: bool,
    verbose: bool,
    jobs: int = 2,
    json_out: Path | None = None,
    preset: str = "tiny",
) -> dict[str, list[float]]:
    """Train every method with ``seeds`` seeds; returns method -> final average val losses.

    Three waves so each run gets what it depends on: (1) stratified, natural, ODM, Aioli;
    (2) DoReMi online (batches sampled from alpha) and DoReMi's proxy (paper mode: batches
    from the reference mixture, losses weighted by alpha), both against the stratified run of
    the same seed as reference; (3) a fresh run on the proxy's average alpha, which is the
    paper's actual recipe ("doremi-fixed").
    """
    train_cfg = {**TRAIN, "preset": preset}
    corpora = corpora_sources(fixtures)
    data = load_corpora(*corpora)  # build and tokenise once, before the workers start
    if verbose:
        print(
            "domains: " + ", ".join(f"{n}={d.n_train_tokens:,}" for n, d in data.items()),
            file=sys.stderr,
        )
    pool = ProcessPoolExecutor(max_workers=max(1, jobs))
    runs: dict[tuple[str, int], dict] = {}

    def wave(items):
        t0 = time.perf_counter()
        for method, seed, out in pool.map(_one_run, items):
            runs[(method, seed)] = out
            if verbose:
                print(
                    f"  {method:<13} seed {seed}: avg val loss {out['avg']:.4f}  "
                    f"({out['wall_s']:.0f} s, {out['evals']} mixer evals)",
                    file=sys.stderr,
                )
        if verbose:
            print(f"  wave done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)

    with pool:
        wave(
            [
                (m, s, steps, corpora, None, train_cfg)
                for s in range(seeds)
                for m in ("stratified", "natural", "odm", "aioli")
            ]
        )
        wave(
            [
                (
                    m,
                    s,
                    steps,
                    corpora,
                    {"reference_curve": runs[("stratified", s)]["curve"]},
                    train_cfg,
                )
                for s in range(seeds)
                for m in ("doremi", "doremi-proxy")
            ]
        )
        wave(
            [
                (
                    "doremi-fixed",
                    s,
                    steps,
                    corpora,
                    {"weights": runs[("doremi-proxy", s)]["final_weights"]},
                    train_cfg,
                )
                for s in range(seeds)
            ]
        )
    order = ("stratified", "natural", "odm", "doremi", "doremi-fixed", "aioli", "doremi-proxy")
    results = {m: [runs[(m, s)]["avg"] for s in range(seeds)] for m in order}
    if json_out is not None:
        json_out.write_text(
            json.dumps(
                {
                    "steps": steps,
                    "train": train_cfg,
                    "aioli": aioli_params(steps, len(data)),
                    "runs": [{"method": m, "seed": s, **out} for (m, s), out in runs.items()],
                },
                indent=1,
            )
        )
    if verbose:
        for m in ("odm", "doremi", "doremi-proxy", "aioli"):
            w = runs[(m, 0)]["final_weights"]
            print(
                f"  {m} final weights (seed 0): " + ", ".join(f"{d}={v:.3f}" for d, v in w.items()),
                file=sys.stderr,
            )
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--synthetic", action="store_true", help="use the synthetic environment")
    ap.add_argument("--fixtures", action="store_true", help="train on tests/fixtures/corpora")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=None, help="optimiser steps per run")
    ap.add_argument(
        "--preset", default="tiny", help="trainer mode: model preset (tiny; micro is ~8x cheaper)"
    )
    ap.add_argument("--jobs", type=int, default=2, help="training processes (one thread each)")
    ap.add_argument(
        "--json",
        type=Path,
        default=None,
        help="trainer mode: write every run (losses, curve, final weights) here",
    )
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
        res = bench_trainer(
            args.seeds, steps, args.fixtures, not args.quiet, args.jobs, args.json, args.preset
        )
        src = "fixture corpora" if args.fixtures else "demo corpora"
        print(table(res, f"{args.preset} GPT on the {src}, {steps} steps, {args.seeds} seeds"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
