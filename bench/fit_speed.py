"""Fit speed: time to fit each estimator and run its 5-fold CV on the 512 x 17 RegMix runs
(the work of one ``pipeline.fit_estimator`` call), plus the time of one recommendation
(with the default RegMix simulation size for trees; GP intervals come from the posterior,
other smooth estimators use ``--n-boot`` bootstrap refits). Ratios are against RegMix LightGBM.

    .venv/bin/python -m bench.fit_speed [--data-dir DIR] [--threads 2]

``--service``: the same fits through the API (``mixopt serve`` with its supervised embedded
worker, default concurrency 2) while ``--load`` busy processes compete for the CPUs, as a ratio
to the direct ``pipeline.fit_estimator`` call in this process under the same load, with the
thread count one worker process gets (cores // concurrency). Target: ratio <= 1.5. Uses the first
``--runs`` RegMix runs to stay bounded.

    .venv/bin/python -m bench.fit_speed --service [--runs 64] [--load 2]

``--auto-vs-baseline``: ``auto`` (its selection and its nested CV, every registered candidate)
against the one-pass baseline (every candidate ``auto`` tries, fitted once with 5-fold CV, one
``pipeline.fit_estimator`` call each) on the 512 x 17 RegMix runs, in the same run: baseline,
auto, baseline again (the ratios use their means, the load moves), wall-clock and CPU time
(this process, every thread), with the machine's load (``os.getloadavg()``) after each step.
Target (issue 23, item 5): wall ratio <= 2.

    .venv/bin/python -m bench.fit_speed --auto-vs-baseline [--runs 512] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument(
        "--threads", type=int, default=2, help="BLAS/OpenMP threads (set before numpy loads)"
    )
    ap.add_argument("--n-boot", type=int, default=0, help="bootstrap refits for non-GP intervals")
    ap.add_argument("--with-auto", action="store_true")
    ap.add_argument(
        "--service", action="store_true", help="through the API under a competing CPU load"
    )
    ap.add_argument("--runs", type=int, default=64, help="--service: runs used")
    ap.add_argument(
        "--load", type=int, default=0, help="--service: busy processes (0: one per core)"
    )
    ap.add_argument(
        "--estimators", default="mixing_law,regmix_lgbm,gp", help="--service: comma-separated"
    )
    ap.add_argument(
        "--auto-vs-baseline", action="store_true", help="auto against every candidate's 5-fold CV"
    )
    args = ap.parse_args(argv)
    if args.auto_vs_baseline:
        auto_vs_baseline(args)
        return
    if args.service:
        service_bench(args)
        return
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import numpy as np

    from bench.fidelity import default_data_dir, load_regmix
    from mixopt.mixing import pipeline

    X, y, domains = load_regmix(args.data_dir or default_data_dir())
    names = ["regmix_lgbm", "regmix_linear", "mixing_law", "gp"] + (
        ["auto"] if args.with_auto else []
    )
    params = {"auto": {"candidates": ["gp", "mixing_law", "regmix_lgbm", "regmix_linear"]}}
    counts = np.array([1.0] * len(domains))
    rows = []
    for name in names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            out = pipeline.fit_estimator(
                name, params.get(name), X, y, domains=domains, targets=["pile_cc"], cv_folds=5
            )
            total = time.perf_counter() - t0
            t1 = time.perf_counter()
            rec = pipeline.recommend(
                out["state"], {"token_counts": counts.tolist()}, X=X, Y=y, n_boot=args.n_boot
            )
            rec_s = time.perf_counter() - t1
        rows.append(
            (
                name,
                out["timings"]["fit_s"],
                out["timings"]["cv_s"],
                total,
                rec_s,
                out["fidelity"]["pooled"]["spearman"],
                rec["predicted_objective"],
            )
        )
    ref = next(r for r in rows if r[0] == "regmix_lgbm")
    print(f"512 runs x {len(domains)} domains, {args.threads} threads")
    print(
        f"{'estimator':15s} {'fit s':>7s} {'cv s':>7s} {'fit+cv s':>9s} {'x lgbm':>7s} "
        f"{'recommend s':>12s} {'x lgbm':>7s} {'cv rho':>7s} {'pred. best':>10s}"
    )
    for name, f, c, t, r, rho, pred in rows:
        print(
            f"{name:15s} {f:7.2f} {c:7.2f} {t:9.2f} {t / ref[3]:7.2f} {r:12.2f} {r / ref[4]:7.2f} "
            f"{rho:7.4f} {pred:10.4f}"
        )
    non_auto = [r for r in rows if r[0] != "auto"]
    print(
        f"all estimators except auto, fit + 5-fold CV: {sum(r[3] for r in non_auto):.2f} s "
        f"(+ recommendations {sum(r[4] for r in non_auto):.2f} s)"
    )


def auto_vs_baseline(args) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    from bench.fidelity import default_data_dir, load_regmix
    from mixopt.mixing import pipeline
    from mixopt.mixing.auto import fit_threads

    X, y, domains = load_regmix(args.data_dir or default_data_dir())
    n = args.runs if args.runs != 64 else X.shape[0]  # --runs defaults to --service's 64
    X, y = X[:n], y[:n]

    def fit(name: str) -> tuple[float, float, dict]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0, c0 = time.perf_counter(), time.process_time()
            out = pipeline.fit_estimator(
                name, None, X, y, domains=domains, targets=["pile_cc"], cv_folds=5
            )
            return time.perf_counter() - t0, time.process_time() - c0, out

    def baseline(names: list[str]) -> tuple[float, float, str]:
        each = {name: fit(name)[:2] for name in names}
        label = ", ".join(f"{k} {v[0]:.1f}" for k, v in each.items())
        return sum(v[0] for v in each.values()), sum(v[1] for v in each.values()), label

    print(
        f"{n} RegMix runs x {len(domains)} domains, 5-fold CV; {len(os.sched_getaffinity(0))} "
        f"cores, {args.threads} BLAS threads, auto fits on {fit_threads()} threads",
        flush=True,
    )
    print(f"{'step':40s} {'wall s':>8s} {'CPU s':>8s}  load (1, 5, 15 min) after", flush=True)

    def step(label: str, wall: float, cpu: float) -> None:
        ld = os.getloadavg()
        print(
            f"{label:40s} {wall:8.2f} {cpu:8.2f}  {ld[0]:.1f} {ld[1]:.1f} {ld[2]:.1f}", flush=True
        )

    step("(start)", 0.0, 0.0)
    t_auto, c_auto, out = fit("auto")
    step("auto (selection + nested CV)", t_auto, c_auto)
    state = out["state"]["fitted"]
    names = [r["name"] for r in state["table"] if r["status"] == "ok"]
    skipped = [r["name"] for r in state["table"] if r["status"] != "ok"]
    # the baseline on both sides of auto: the competing load changes between them
    b1, cb1, label = baseline(names)
    step("baseline: " + label, b1, cb1)
    t_auto2, c_auto2, _ = fit("auto")
    step("auto again", t_auto2, c_auto2)
    b2, cb2, label = baseline(names)
    step("baseline again: " + label, b2, cb2)
    base, t_a = (b1 + b2) / 2, (t_auto + t_auto2) / 2
    cbase, c_a = (cb1 + cb2) / 2, (c_auto + c_auto2) / 2
    print(
        f"auto {t_a:.2f} s / baseline {base:.2f} s = {t_a / base:.2f}x wall (target <= 2); "
        f"CPU {c_a:.2f} s / {cbase:.2f} s = {c_a / cbase:.2f}x (the work, whatever the load)"
    )
    print(
        f"auto chose {state['chosen']} (rule {state.get('rule')}), nested CV Spearman "
        f"{out['fidelity']['pooled']['spearman']:.4f}; skipped: {', '.join(skipped) or 'none'}"
    )


def service_bench(args) -> None:
    import subprocess
    import sys
    import tempfile

    cores = len(os.sched_getaffinity(0))
    concurrency = 2
    threads = max(1, cores // concurrency)  # what workers.celery_app gives each pool process
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)

    import httpx

    from bench._server import REPO, free_port
    from bench.fidelity import default_data_dir, load_regmix
    from mixopt.mixing import pipeline

    X, y, domains = load_regmix(args.data_dir or default_data_dir())
    X, y = X[: args.runs], y[: args.runs]
    X = X / X.sum(
        1, keepdims=True
    )  # the API stores mixtures on the simplex: the same input for both
    names = [n for n in args.estimators.split(",") if n]
    # the load in its own session: with the kernel's autogroup scheduling (on here) CPU is shared
    # per session, and the fit of each side (this process; the worker, which serve starts in its
    # own session) must meet the same competition
    spin = "while True:\n    pass\n"
    load = [
        subprocess.Popen([sys.executable, "-c", spin], start_new_session=True)
        for _ in range(args.load or cores)
    ]
    home = tempfile.mkdtemp(prefix="mixopt-bench-service-")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MIXOPT_", "OMP_", "OPENBLAS_", "MKL_"))
    }
    env |= {
        "MIXOPT_HOME": home,
        "MIXOPT_WORKER_CONCURRENCY": str(concurrency),
        "CUDA_VISIBLE_DEVICES": "",
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = subprocess.Popen(
        [sys.executable, "-m", "mixopt.cli", "serve", "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=open(f"{home}/serve.out", "w"),
        stderr=subprocess.STDOUT,
    )  # noqa: SIM115
    rows = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/readyz", timeout=3).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise RuntimeError(f"serve not ready; see {home}")
        # the direct calls run once serve is up and idle: both sides see the same competing load
        direct = {}
        for name in names:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                pipeline.fit_estimator(
                    name, None, X, y, domains=domains, targets=["pile_cc"], cv_folds=5
                )
                direct[name] = time.perf_counter() - t0
        token = open(f"{home}/admin_token").read().strip()
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as c:
            c.get("/v1/estimators")  # the API process imports the science once, as this process did
            p = c.post(
                "/v1/projects", json={"name": "bench", "domains": [{"name": d} for d in domains]}
            ).json()
            runs = [
                {
                    "mixture": dict(zip(domains, map(float, x), strict=True)),
                    "metrics": {"pile_cc": float(v)},
                }
                for x, v in zip(X, y, strict=True)
            ]
            r = c.post(f"/v1/projects/{p['id']}/runs", json={"runs": runs})
            assert r.status_code == 201, r.text
            for name in names:
                t0 = time.perf_counter()
                job_id = c.post(f"/v1/projects/{p['id']}/fits", json={"estimator": name}).json()[
                    "job"
                ]["id"]
                while (job := c.get(f"/v1/jobs/{job_id}").json())["state"] in (
                    "pending",
                    "running",
                ):
                    time.sleep(0.2)
                wall = time.perf_counter() - t0
                assert job["state"] == "succeeded", job
                rows.append((name, direct[name], wall, job["duration_s"]))
    finally:
        serve.terminate()
        serve.wait(timeout=60)
        for p in load:
            p.kill()
            p.wait()
    print(
        f"{args.runs} RegMix runs x {len(domains)} domains, 5-fold CV; {cores} cores, "
        f"{len(load)} busy processes competing; {threads} BLAS thread(s) per fit "
        f"(worker concurrency {concurrency})"
    )
    print(f"{'estimator':13s} {'direct s':>9s} {'API s':>8s} {'job s':>8s} {'API/direct':>11s}")
    for name, d, w, j in rows:
        print(f"{name:13s} {d:9.2f} {w:8.2f} {j:8.2f} {w / d:11.2f}")
    total_d, total_w = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(
        f"{'total':13s} {total_d:9.2f} {total_w:8.2f} {'':8s} {total_w / total_d:11.2f}  "
        "(target <= 1.5)"
    )


if __name__ == "__main__":
    main()
