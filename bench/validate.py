"""The whole loop on the demo corpora, end to end through the service, then validation trainings.

    python bench/validate.py   # full: the demo's swarm (40 micro runs, 600 steps), 3 seeds, 2 sizes
    python bench/validate.py --swarm 8 --steps 100 --sizes proxy   # reduced (CPU, shared machine)

A ``mixopt serve`` (API + embedded Celery worker, SQLite) in its own ``MIXOPT_HOME``; through the
HTTP API only:

1. project on the demo corpora (``mixopt demo-data``), ingestion;
2. a RegMix swarm of ``--swarm`` proxy runs (shared seed), ``auto`` fit, recommendation
   (2M-token target, at most 4 epochs per domain, as in the demo);
3. the online methods, each trained once on the proxy (seed 0) with the service's trainer
   callback: ODM and Aioli (from scratch, their final weights), and DoReMi's recipe (a proxy
   with the paper's loss weighting against the stratified run's per-domain curve as
   reference; its average alpha);
4. a validation (``POST .../validations``) of the recommendation against natural, stratified
   (uniform), the entropy mixture (BiMix, conditional), UniMax, the DoReMi recipe, ODM and
   Aioli, with seeds 0..n-1, at the proxy size and at about 4x its non-embedding parameters
   (``n_embd`` doubled: the micro preset's 2 layers x 128 instead of x 64).

The swarm, run length and model are the demo's (``mixopt.demo_training.SWARM``), so this is the
demo's question asked thoroughly: does the mixture it recommends train better?

Prints each size's table (mean objective +- sd over seeds, paired difference to stratified
and to natural with the 95% interval and wins) and writes a PNG of the paired differences.
ODM and Aioli enter the validation as static mixtures (their final weights), not as online
runs. The two sizes are two validations; their runs share the embedded worker's two processes
(each validation's job and its helper jobs take the next queued run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mixopt.client import MixoptClient  # noqa: E402
from mixopt.demo_training import SWARM as DEMO_SWARM  # noqa: E402
from mixopt.training.model import PRESETS  # noqa: E402

TARGET_TOKENS = 2_000_000
MAX_EPOCHS = 4
TRAIN = {k: DEMO_SWARM[k] for k in ("preset", "batch_size", "block_size", "eval_interval")}
#: 4x: non-embedding parameters grow as n_layer x n_embd^2, so doubling the width is about 4x
SIZES = {"proxy": {}, "4x": {"n_embd": 2 * PRESETS[DEMO_SWARM["preset"]]["n_embd"]}}


def start(home: Path, corpora: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "MIXOPT_HOME": str(home), "MIXOPT_DATA_ROOTS": str(corpora)}
    home.mkdir(parents=True, exist_ok=True)
    log = open(home / "serve.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "mixopt.cli", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    import httpx

    for _ in range(1200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited; see {home / 'serve.log'}")
        time.sleep(0.1)
    raise RuntimeError("serve did not start")


def log(msg: str, t0: float) -> None:
    print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", file=sys.stderr, flush=True)


def swarm(c: MixoptClient, pid: int, body: dict, timeout: float = 7200) -> list[int]:
    body = dict(body)
    acc = c.create_swarm(pid, body.pop("count"), **body)
    for j in acc["jobs"]:
        job = c.wait(j["id"], timeout=timeout)
        if job["state"] != "succeeded":
            raise RuntimeError(f"training job {j['id']} {job['state']}: {job['error']}")
    return acc["run_ids"]


def online_mixture(
    c: MixoptClient, pid: int, algorithm: str, params: dict, steps: int, tag: str
) -> int:
    """Train one proxy with an online mixer; returns the recommendation of its final weights."""
    body = {
        "count": 1,
        "train_steps": steps,
        "seed": 0,
        "tag": tag,
        **TRAIN,
        "strategy": "fixed",
        "mixtures": [uniform_of(c, pid)],
        "online": {"algorithm": algorithm, "params": params},
    }
    (run_id,) = swarm(c, pid, body)
    recs = [r for r in c.list_recommendations(pid) if (r["details"] or {}).get("run_id") == run_id]
    if not recs:
        raise RuntimeError(f"{algorithm}: no recommendation from run {run_id}")
    return recs[0]["id"]


def uniform_of(c: MixoptClient, pid: int) -> dict[str, float]:
    domains = [d["name"] for d in c.get_project(pid)["domains"]]
    return {d: 1 / len(domains) for d in domains}


def table(v: dict, size: str) -> str:
    res = v["result"]
    cmp = {(x["label"], x["reference"]): x for x in res["comparisons"]}
    n = len(v["seeds"])
    lines = [
        f"{size}: {res.get('n_params') or '?'} non-embedding parameters, {v['train_steps']} steps, "
        f"{n} seeds (objective = mean validation loss over the domains; paired difference = method "
        f"- reference, same seed; 95% t interval; wins = seeds with the lower loss)",
        f"{'method':<14} {'objective':>17}   {'vs stratified':>30}   {'vs natural':>30}",
    ]
    for m in res["mixtures"]:
        row = f"{m['label']:<14} {m['mean']:>8.4f} ± {m['std']:<6.4f}"
        for ref in ("stratified", "natural"):
            x = cmp.get((m["label"], ref))
            if x is None:
                row += f"   {'':>30}"
                continue
            iv = (
                ""
                if x["interval_low"] is None
                else f"[{x['interval_low']:+.3f},{x['interval_high']:+.3f}]"
            )
            row += f"   {x['mean']:+.4f} {iv:>17} {x['wins']}/{x['seeds']}"
        lines.append(row)
    return "\n".join(lines)


def plot(validations: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))  # each panel its own labels (the rows differ)
    for ax, ref in zip(axes, ("stratified", "natural"), strict=True):
        for k, (size, v) in enumerate(validations.items()):
            rows = [x for x in v["result"]["comparisons"] if x["reference"] == ref]
            ys = [i + 0.18 * (k - 0.5) for i in range(len(rows))]
            means = [x["mean"] for x in rows]
            lo = [
                x["mean"] - (x["interval_low"] if x["interval_low"] is not None else x["mean"])
                for x in rows
            ]
            hi = [
                (x["interval_high"] if x["interval_high"] is not None else x["mean"]) - x["mean"]
                for x in rows
            ]
            ax.errorbar(means, ys, xerr=[lo, hi], fmt="o", capsize=3, label=size)
            for x, y in zip(rows, ys, strict=True):
                ax.scatter(
                    x["differences"], [y] * len(x["differences"]), s=8, color="grey", zorder=3
                )
            ax.set_yticks(range(len(rows)), [x["label"] for x in rows])
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title(f"paired difference to {ref} (nats; < 0 is better)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--swarm", type=int, default=DEMO_SWARM["count"], help="proxy runs in the swarm"
    )
    ap.add_argument(
        "--steps", type=int, default=DEMO_SWARM["train_steps"], help="steps of every run"
    )
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--sizes", default="proxy,4x", help="comma-separated: proxy, 4x")
    ap.add_argument("--home", type=Path, default=Path.home() / ".mixopt-bench-validate")
    ap.add_argument("--port", type=int, default=18731)
    ap.add_argument("--png", type=Path, default=ROOT / "docs" / "validate.png")
    ap.add_argument("--json", type=Path, default=None, help="write the validations here")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    from mixopt.training.demo_data import build_demo_corpora

    corpora = Path(os.environ.get("MIXOPT_HOME", Path.home() / ".mixopt")) / "demo-corpora"
    manifest = build_demo_corpora(corpora)
    proc = start(args.home, corpora, args.port)
    try:
        c = MixoptClient(
            f"http://127.0.0.1:{args.port}",
            (args.home / "admin_token").read_text().strip(),
            timeout=600,
        )
        name = f"validate-{args.swarm}x{args.steps}"
        p = next((p for p in c.list_projects() if p["name"] == name), None) or c.create_project(
            name,
            domains=[
                {"name": n, "source": {"path": str(Path(d["path"]).parent), "format": "jsonl"}}
                for n, d in manifest["domains"].items()
            ],
            constraints={"target_tokens": TARGET_TOKENS, "max_epochs": MAX_EPOCHS},
        )
        pid = p["id"]
        job = c.ingest(pid)["job"]
        c.wait(job["id"], timeout=1800)
        log("ingested", t0)
        if not list(c.iter_runs(pid, tag="swarm", status="succeeded")):
            swarm(
                c,
                pid,
                {
                    "count": args.swarm,
                    "train_steps": args.steps,
                    "seed": 0,
                    "tag": "swarm",
                    **TRAIN,
                },
            )
        log(f"swarm of {args.swarm} trained", t0)
        fit = c.wait(c.fit(pid, "auto")["job"]["id"], timeout=1800)
        fit = c.get_fit(pid, fit["result"]["fit_id"])
        pooled = (fit.get("fidelity") or {}).get("pooled") or {}
        print(
            f"auto fit: {fit['estimator']} chose "
            f"{((fit.get('state') or {}).get('fitted') or {}).get('chosen')}; "
            f"CV Spearman {pooled.get('spearman')}, R² {pooled.get('r2')}"
        )
        rec = c.wait(
            c.recommend(pid, fit_id=fit["id"], allow_untrusted=True)["job"]["id"], timeout=1800
        )
        rec_id = rec["result"]["recommendation_id"]
        log("fit and recommendation", t0)
        # the stratified reference run for DoReMi: its per-domain curve
        (ref_run,) = swarm(
            c,
            pid,
            {
                "count": 1,
                "strategy": "fixed",
                "mixtures": [uniform_of(c, pid)],
                "train_steps": args.steps,
                "seed": 0,
                "tag": "reference",
                **TRAIN,
            },
        )
        curve = c.get_curve(pid, ref_run)["points"]
        reference_curve = [
            {
                "step": pt["step"],
                "losses": {
                    k.split("/", 1)[1]: v
                    for k, v in pt["metrics"].items()
                    if k.startswith("val_loss/")
                },
            }
            for pt in curve
        ]
        online = {
            "odm": online_mixture(c, pid, "odm", {}, args.steps, "odm"),
            "aioli": online_mixture(c, pid, "aioli", {}, args.steps, "aioli"),
            "doremi": online_mixture(
                c,
                pid,
                "doremi",
                {"reference_curve": reference_curve, "loss_weighting": True},
                args.steps,
                "doremi",
            ),
        }
        log("online methods trained", t0)
        mixtures = [
            {"recommendation_id": rec_id, "label": "recommended"},
            {"baseline": "natural"},
            {"baseline": "stratified"},
            {"baseline": "entropy", "reference": False},
            {"baseline": "unimax", "reference": False},
            {"recommendation_id": online["doremi"], "label": "doremi"},
            {"recommendation_id": online["odm"], "label": "odm"},
            {"recommendation_id": online["aioli"], "label": "aioli"},
        ]
        jobs = {}
        for size in args.sizes.split(","):
            acc = c.validate(
                pid,
                mixtures,
                train_steps=args.steps,
                seeds=list(range(args.seeds)),
                **TRAIN,
                **SIZES[size],
            )
            jobs[size] = acc
        validations = {}
        for size, acc in jobs.items():
            job = c.wait(acc["job"]["id"], timeout=6 * 3600)
            if job["state"] != "succeeded":
                raise RuntimeError(f"validation {size} {job['state']}: {job['error']}")
            validations[size] = c.get_validation(pid, acc["validation"]["id"])
            log(f"validation at {size} done", t0)
        for size, v in validations.items():
            print(table(v, size))
            print()
        if args.json:
            args.json.write_text(json.dumps(validations, indent=1))
        plot(validations, args.png)
        print(f"plot: {args.png}; total {time.perf_counter() - t0:.0f} s")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
