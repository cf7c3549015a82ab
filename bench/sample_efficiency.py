"""Sample efficiency of Mixture of Data Experts (issue 25, "what it must show"), library level.

On the demo corpora (``mixopt demo``'s seven domains, micro preset, the demo swarm's run
settings: 600 steps of 16 x 64 bytes), for each swarm draw seed (RegMix swarm around the natural
mixture, temperature 0.5, as ``POST .../swarms`` draws it) and each number ``n`` of trained
mixture runs (the first ``n`` of the draw):

* the CV Spearman of the objective (mean validation loss over the domains) from
  :func:`mixopt.mixing.pipeline.fit_estimator`: nested CV for the selecting ``auto`` (the
  selection repeated in each outer fold), plain 5-fold CV grouped by mixture otherwise (no
  selection to repeat);
* the validated loss of each method's recommended mixture (:func:`pipeline.recommend`, no
  constraints) trained once with the draw's seed, beside natural and uniform trained with the
  same seed (paired).

Methods: ``auto`` (mixture-only regression, today's default: every registered estimator that
needs no experts), ``mde`` (the MDE approximation alone, affinely calibrated), ``mde_linear``,
``mde_gp``, ``auto+mde`` (``auto`` over every MDE estimator: ``mde`` itself and the
MDE-featured regressors ``mde_linear``, ``mde_gp``, ``mde_lgbm``, as the service's ``auto``
considers them when experts are given) and ``auto+mdereg`` (``auto`` over the three regressors
only). One expert per domain is trained once (training seed 0, the swarm's
settings); the experts count in the budget: an MDE method at ``n`` runs costs ``n + K``.

Runs are cached under ``--cache`` (one JSON per run, keyed by the mixture and settings; the
experts' probabilities as ``.npy``), so a rerun only fits. Runs train on ``--jobs`` processes of
one torch thread each.

    nice .venv/bin/python -m bench.sample_efficiency --quick        # 1 seed, n = 8, 16
    nice .venv/bin/python -m bench.sample_efficiency                # 3 seeds, n = 8, 16, 24, 40

``--steps`` shortens every run (a smoke test of the plumbing, not a result). ``--rounds 24 8``
adds A3's rounds (:func:`mixopt.mixing.rounds.run_rounds`, total budget 24, rounds of 8) with the
GP and with ``mde_gp``, each best predicted mixture trained with the draw's seed (sequential
training: minutes per draw). ``--validate-n 16 40`` trains only those n's recommendations. The
figures of the one full run are in README "Mixture of Data Experts".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

# fits on one BLAS thread (set before numpy loads): OpenBLAS's spinning threads made a GP fit
# 10x slower on a loaded 2-core machine (143 s vs 15 s for mde_gp at 8 runs)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

DOMAINS = ("code", "docs", "legal", "prose", "dialogue", "math", "encyclopedia")
#: the demo swarm's run settings (mixopt.demo_training.SWARM)
RUN = {
    "preset": "micro",
    "train_steps": 600,
    "batch_size": 16,
    "block_size": 64,
    "eval_interval": 200,
}
EXPERT_SEED = 0
SWARM_TRAIN_SEED = 0  # the demo's swarm trains every run with one shared seed
METHODS = {
    "auto": ("auto", {}),
    "mde": ("mde", {}),
    "mde_linear": ("mde_linear", {}),
    "mde_gp": ("mde_gp", {}),
    "auto+mde": ("auto", {"candidates": ["mde", "mde_linear", "mde_gp", "mde_lgbm"]}),
    "auto+mdereg": ("auto", {"candidates": ["mde_linear", "mde_gp", "mde_lgbm"]}),
}
VALIDATED = ("auto", "mde", "auto+mde", "auto+mdereg")
#: simulated mixtures per recommendation (RegMix's 100,000 is the service default; 10,000 for
#: every method here keeps the 60 recommendations of the full mode bounded)
N_SAMPLES = 10_000

_DATA: dict[str, Any] = {}


def _data(cache: Path) -> dict[str, Any]:
    if not _DATA:
        from mixopt.demo_training import corpora_dir
        from mixopt.training.data import ingest_domain
        from mixopt.training.demo_data import build_demo_corpora

        build_demo_corpora(corpora_dir(), domains=DOMAINS)
        _DATA.update({d: ingest_domain(d, corpora_dir() / d, cache / "shards") for d in DOMAINS})
    return _DATA


def _config(steps: int, seed: int, weights: list[float]) -> Any:
    from mixopt.training.trainer import TrainConfig

    return TrainConfig(
        preset=RUN["preset"],
        max_steps=steps,
        batch_size=RUN["batch_size"],
        block_size=RUN["block_size"],
        eval_interval=RUN["eval_interval"],
        seed=seed,
        weights=weights,
        device="cpu",
    )


def _key(kind: str, steps: int, seed: int, w: Any) -> str:
    w = [round(float(x), 6) for x in np.asarray(w, dtype=float)]
    blob = json.dumps([kind, RUN, steps, seed, list(DOMAINS), w])
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _train_run(job: tuple[str, int, int, list[float]]) -> dict[str, Any]:
    """Worker: one mixture run (cached)."""
    cache, steps, seed, w = job
    path = Path(cache) / "runs" / f"{_key('run', steps, seed, w)}.json"
    if path.is_file():
        return json.loads(path.read_text())
    import torch

    from mixopt.training.trainer import train

    torch.set_num_threads(1)
    res = train(_config(steps, seed, list(w)), _data(Path(cache)))
    out = {"weights": list(w), "seed": seed, "losses": res.final_val_losses, "wall_s": res.wall_s}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(out))
    os.replace(tmp, path)
    return out


def _train_expert(job: tuple[str, int, str]) -> dict[str, Any]:
    """Worker: one expert (cached): its probabilities on every validation domain."""
    cache, steps, domain = job
    one_hot = [1.0 if d == domain else 0.0 for d in DOMAINS]
    base = Path(cache) / "experts" / _key("expert", steps, EXPERT_SEED, one_hot)
    meta = base.with_suffix(".json")
    if meta.is_file():
        return json.loads(meta.read_text())
    import torch

    from mixopt.training.experts import train_experts

    torch.set_num_threads(1)
    probs, runs = train_experts(
        _config(steps, EXPERT_SEED, one_hot), _data(Path(cache)), experts=[domain]
    )
    base.mkdir(parents=True, exist_ok=True)
    for v in DOMAINS:
        np.save(base / f"{v}.npy", probs[(domain, v)])
    out = {"domain": domain, "losses": runs[domain].result.final_val_losses, "dir": str(base)}
    meta.write_text(json.dumps(out))
    return out


def _pool_map(fn: Any, jobs: list[Any], n_jobs: int) -> list[Any]:
    if n_jobs <= 1 or len(jobs) <= 1:
        return [fn(j) for j in jobs]
    import multiprocessing as mp

    with ProcessPoolExecutor(max_workers=n_jobs, mp_context=mp.get_context("spawn")) as pool:
        return list(pool.map(fn, jobs))


def _objective(losses: dict[str, float]) -> float:
    return float(np.mean([losses[d] for d in DOMAINS]))


def _fit_and_recommend(
    method: str, X: np.ndarray, Y: np.ndarray, experts: Any, seed: int
) -> dict[str, Any]:
    from mixopt.mixing import pipeline

    name, params = METHODS[method]
    targets = [f"val_loss/{d}" for d in DOMAINS]
    ctx = {"experts": experts} if method != "auto" else {}
    t0 = time.perf_counter()
    out: dict[str, Any] = {"method": method}
    try:
        fit = pipeline.fit_estimator(
            name,
            dict(params),
            X,
            Y,
            domains=list(DOMAINS),
            targets=targets,
            cv_folds=5,
            random_state=seed,
            **ctx,
        )
    except ValueError as exc:
        return {**out, "error": f"fit: {exc}"}
    fid = fit["fidelity"] or {}
    out["spearman"] = (fid.get("pooled") or {}).get("spearman")
    out["nested"] = bool(fid.get("nested"))
    out["chosen"] = fit["state"].get("fitted", {}).get("chosen")
    try:
        rec = pipeline.recommend(
            fit["state"],
            None,
            X=X,
            Y=Y,
            n_boot=0,
            n_samples=N_SAMPLES,
            random_state=seed,
            domains=list(DOMAINS),
            fidelity=fit["fidelity"],
            **ctx,
        )
        out["mixture"] = rec["mixture"]
        out["predicted"] = rec.get("predicted_objective")
    except ValueError as exc:  # e.g. an off-support recommendation refused
        out["rec_error"] = str(exc)[:160]
    out["fit_s"] = time.perf_counter() - t0
    return out


def _load_experts(metas: list[dict[str, Any]]) -> Any:
    from mixopt.mixing.mde import ExpertProbs

    arrays = {v: np.stack([np.load(Path(m["dir"]) / f"{v}.npy") for m in metas]) for v in DOMAINS}
    return ExpertProbs([m["domain"] for m in metas], arrays)


def _rounds(
    cache: Path, steps: int, seed: int, budget: int, size: int, natural: list[float], experts: Any
) -> list[dict[str, Any]]:
    """Rounds (:func:`mixopt.mixing.rounds.run_rounds`, A3's CLIMB-style search) with the GP
    (mixture only) and with ``mde_gp`` (MDE features), then each best predicted mixture
    trained with the draw's seed. Runs train in this process (rounds are sequential)."""
    from mixopt.mixing import get_estimator
    from mixopt.mixing.rounds import best_predicted, run_rounds

    def evaluate(W: np.ndarray) -> np.ndarray:
        runs = [_train_run((str(cache), steps, SWARM_TRAIN_SEED, w.tolist())) for w in W]
        return np.array([_objective(r["losses"]) for r in runs])

    out = []
    for label, factory, ctx in (
        ("rounds", None, None),
        ("rounds+mde", lambda: get_estimator("mde_gp"), {"experts": experts}),
    ):
        t0 = time.perf_counter()
        res = run_rounds(
            evaluate,
            natural,
            budget,
            size,
            domains=list(DOMAINS),
            estimator_factory=factory,
            random_state=seed,
            **({"fit_context": ctx} if ctx else {}),
        )
        plan = best_predicted(
            res.X,
            res.y,
            prior=natural,
            domains=list(DOMAINS),
            estimator=factory() if factory else None,
            fit_context=ctx,
            random_state=seed,
        )
        w = [float(x) for x in plan.best_mixture]
        val = _objective(_train_run((str(cache), steps, seed, w))["losses"])
        out.append(
            {
                "method": label,
                "seed": seed,
                "runs": len(res.y),
                "budget": len(res.y) + (len(DOMAINS) if ctx else 0),
                "stopped_early": res.stopped_early,
                "predicted": plan.best_loss,
                "validated": val,
                "mixture": w,
                "wall_s": time.perf_counter() - t0,
            }
        )
        print(f"seed {seed} {label}: {out[-1]}", flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 seed, n = 8, 16")
    ap.add_argument("--seeds", type=int, nargs="*", default=None)
    ap.add_argument(
        "--n", type=int, nargs="*", default=None, help="mixture runs (default 8 16 24 40)"
    )
    ap.add_argument("--steps", type=int, default=RUN["train_steps"])
    ap.add_argument("--jobs", type=int, default=2, help="training processes (one thread each)")
    ap.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("TMPDIR", "/tmp")) / "mixopt-sample-efficiency",
    )
    ap.add_argument(
        "--validate-n",
        type=int,
        nargs="*",
        default=None,
        help="n whose recommendations are trained (default: every n)",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        nargs=2,
        default=None,
        metavar=("BUDGET", "SIZE"),
        help="also rounds with/without MDE (total budget, round size), trained sequentially",
    )
    ap.add_argument("--train-only", action="store_true", help="train (cache) and stop")
    ap.add_argument("--json", type=Path, default=None, help="write every figure here")
    a = ap.parse_args(argv)
    seeds = a.seeds if a.seeds is not None else ([0] if a.quick else [0, 1, 2])
    ns = sorted(a.n if a.n is not None else ([8, 16] if a.quick else [8, 16, 24, 40]))
    vns = set(a.validate_n if a.validate_n is not None else ns)
    cache = a.cache.expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    warnings.filterwarnings("ignore")  # sklearn's GP convergence notes: not results

    from mixopt.mixing.design import regmix_swarm

    data = _data(cache)
    counts = np.array([data[d].n_train_tokens for d in DOMAINS], dtype=float)
    natural = (counts / counts.sum()).tolist()
    uniform = [1.0 / len(DOMAINS)] * len(DOMAINS)
    draws = {
        s: regmix_swarm(natural, max(ns), temperature=0.5, min_weight=1e-3, random_state=s)
        for s in seeds
    }

    # -- every training, cached: experts, swarms, baselines -------------------------------
    t0 = time.perf_counter()
    metas = _pool_map(_train_expert, [(str(cache), a.steps, d) for d in DOMAINS], a.jobs)
    experts = _load_experts(metas)
    jobs = [(str(cache), a.steps, SWARM_TRAIN_SEED, w.tolist()) for s in seeds for w in draws[s]]
    jobs += [(str(cache), a.steps, s, w) for s in seeds for w in (natural, uniform)]
    runs = _pool_map(_train_run, jobs, a.jobs)
    print(
        f"trained/cached {len(DOMAINS)} experts and {len(runs)} runs in "
        f"{time.perf_counter() - t0:.0f} s ({a.steps} steps each, {a.jobs} jobs)",
        flush=True,
    )
    if a.train_only:
        return
    by_key = {(_key("run", a.steps, r["seed"], r["weights"])): r for r in runs}

    def run_of(seed: int, w: Any) -> dict[str, Any]:
        return by_key[_key("run", a.steps, seed, w)]

    # -- fits and recommendations -----------------------------------------------------------
    rows: list[dict[str, Any]] = []
    for s in seeds:
        W = draws[s]
        Yall = np.array(
            [[run_of(SWARM_TRAIN_SEED, w.tolist())["losses"][d] for d in DOMAINS] for w in W]
        )
        for n in ns:
            for method in METHODS:
                fpath = cache / "fits" / f"{method}-{s}-{n}-{a.steps}.json"
                spec = list(METHODS[method])
                r = json.loads(fpath.read_text()) if fpath.is_file() else {}
                if r.get("estimator") != spec:  # a fit of another (or an unrecorded) spec
                    r = _fit_and_recommend(method, W[:n], Yall[:n], experts, s)
                    r["estimator"] = spec
                    fpath.parent.mkdir(parents=True, exist_ok=True)
                    fpath.write_text(json.dumps(r, default=float))
                r.update(
                    method=method, seed=s, n=n, budget=n + (len(DOMAINS) if method != "auto" else 0)
                )
                rows.append(r)
                print(
                    f"seed {s} n {n:>2} {method:<10} spearman "
                    f"{r.get('spearman') if r.get('spearman') is None else round(r['spearman'], 3)}"
                    f" {r.get('chosen') or ''} {r.get('error') or r.get('rec_error') or ''}",
                    flush=True,
                )

    # -- validation of the recommendations (paired with natural and uniform) ---------------
    vjobs = [
        (str(cache), a.steps, r["seed"], r["mixture"])
        for r in rows
        if r["method"] in VALIDATED and r.get("mixture") is not None and r["n"] in vns
    ]
    t0 = time.perf_counter()
    vruns = _pool_map(_train_run, vjobs, a.jobs)
    for v in vruns:
        by_key[_key("run", a.steps, v["seed"], v["weights"])] = v
    print(f"validated {len(vjobs)} recommendations in {time.perf_counter() - t0:.0f} s", flush=True)
    for r in rows:
        if r["method"] in VALIDATED and r.get("mixture") is not None and r["n"] in vns:
            r["validated"] = _objective(run_of(r["seed"], r["mixture"])["losses"])
        r["natural"] = _objective(run_of(r["seed"], natural)["losses"])
        r["uniform"] = _objective(run_of(r["seed"], uniform)["losses"])

    _report(rows, seeds, ns, experts, metas, vns)
    rounds = []
    if a.rounds:
        for sd in seeds:
            rounds += _rounds(cache, a.steps, sd, a.rounds[0], a.rounds[1], natural, experts)
        print("\nrounds (best predicted mixture trained with the draw's seed):")
        for r in rounds:
            nat_s = next(x for x in rows if x["seed"] == r["seed"])["natural"]
            print(
                f"  seed {r['seed']} {r['method']:<11} runs {r['runs']:>3} budget {r['budget']:>3}"
                f"  validated {r['validated']:.4f} ({r['validated'] - nat_s:+.4f} vs natural)"
            )
    if a.json:
        a.json.write_text(
            json.dumps(
                {"rows": rows, "rounds": rounds, "seeds": seeds, "n": ns, "steps": a.steps},
                indent=1,
                default=float,
            )
        )
    print(f"total {time.perf_counter() - t_all:.0f} s")


def _fmt(v: Any, nd: int = 3) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def _report(
    rows: list[dict[str, Any]],
    seeds: list[int],
    ns: list[int],
    experts: Any,
    metas: list[dict[str, Any]],
    vns: set[int],
) -> None:
    print(
        "\nexperts' own losses (one-hot MDE) vs their reported validation loss, mean over domains:"
    )
    own = experts.expert_losses()
    for i, m in enumerate(metas):
        print(f"  {m['domain']:<13} MDE {own[i].mean():.4f}  trainer {_objective(m['losses']):.4f}")
    print(
        "\nCV Spearman of the objective (nested for auto*), per swarm seed; budget = mixture "
        "runs (+ K experts for MDE methods)"
    )
    print(
        f"{'method':<11}{'n':>4}{'budget':>8}  "
        + "  ".join(f"seed{s:<3}" for s in seeds)
        + "   mean"
    )
    for method in METHODS:
        for n in ns:
            rs = [
                next(r for r in rows if r["method"] == method and r["n"] == n and r["seed"] == s)
                for s in seeds
            ]
            sp = [r.get("spearman") for r in rs]
            ok = [x for x in sp if x is not None]
            print(
                f"{method:<11}{n:>4}{rs[0]['budget']:>8}  "
                + "  ".join(f"{_fmt(x):>7}" for x in sp)
                + f"  {_fmt(float(np.mean(ok)) if ok else None):>6}"
            )
    print(
        "\nvalidated loss of the recommendation (paired seed), (- natural / - uniform); "
        "wins vs natural"
    )
    print(
        f"{'method':<11}{'n':>4}  "
        + "  ".join(f"{'seed' + str(s):>22}" for s in seeds)
        + "  wins(nat)"
    )
    for method in VALIDATED:
        for n in [n for n in ns if n in vns]:
            rs = [
                next(r for r in rows if r["method"] == method and r["n"] == n and r["seed"] == s)
                for s in seeds
            ]
            cells, wins = [], 0
            for r in rs:
                v = r.get("validated")
                if v is None:
                    cells.append(f"{'refused' if r.get('rec_error') else '-':>22}")
                    continue
                wins += v < r["natural"]
                cells.append(f"{v:.4f} ({v - r['natural']:+.4f}/{v - r['uniform']:+.4f})".rjust(22))
            print(f"{method:<11}{n:>4}  " + "  ".join(cells) + f"  {wins}/{len(seeds)}")
    nat = {s: next(r for r in rows if r["seed"] == s)["natural"] for s in seeds}
    uni = {s: next(r for r in rows if r["seed"] == s)["uniform"] for s in seeds}
    print("natural: " + ", ".join(f"seed{s} {nat[s]:.4f}" for s in seeds))
    print("uniform: " + ", ".join(f"seed{s} {uni[s]:.4f}" for s in seeds))


if __name__ == "__main__":
    main()
