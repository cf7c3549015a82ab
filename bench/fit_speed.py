"""Fit speed: time to fit each estimator and run its 5-fold CV on the 512 x 17 RegMix runs
(the work of one ``service_api.fit_estimator`` call), plus the time of one recommendation
(with the default RegMix simulation size for trees; GP intervals come from the posterior,
other smooth estimators use ``--n-boot`` bootstrap refits). Ratios are against RegMix LightGBM.

    .venv/bin/python -m bench.fit_speed [--data-dir DIR] [--threads 2]
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
    ap.add_argument("--threads", type=int, default=2, help="BLAS/OpenMP threads (set before numpy loads)")
    ap.add_argument("--n-boot", type=int, default=0, help="bootstrap refits for non-GP intervals")
    ap.add_argument("--with-auto", action="store_true")
    args = ap.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import numpy as np

    from bench.fidelity import default_data_dir, load_regmix
    from mixopt.mixing import service_api

    X, y, domains = load_regmix(args.data_dir or default_data_dir())
    names = ["regmix_lgbm", "regmix_linear", "mixing_law", "gp"] + (["auto"] if args.with_auto else [])
    params = {"auto": {"candidates": ["gp", "mixing_law", "regmix_lgbm", "regmix_linear"]}}
    counts = np.array([1.0] * len(domains))
    rows = []
    for name in names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            out = service_api.fit_estimator(name, params.get(name), X, y, domains=domains,
                                            targets=["pile_cc"], cv_folds=5)
            total = time.perf_counter() - t0
            t1 = time.perf_counter()
            rec = service_api.recommend(out["state"], {"token_counts": counts.tolist()}, X=X, Y=y,
                                        n_boot=args.n_boot)
            rec_s = time.perf_counter() - t1
        rows.append((name, out["timings"]["fit_s"], out["timings"]["cv_s"], total, rec_s,
                     out["fidelity"]["pooled"]["spearman"], rec["predicted_objective"]))
    ref = next(r for r in rows if r[0] == "regmix_lgbm")
    print(f"512 runs x {len(domains)} domains, {args.threads} threads")
    print(f"{'estimator':15s} {'fit s':>7s} {'cv s':>7s} {'fit+cv s':>9s} {'x lgbm':>7s} {'recommend s':>12s} "
          f"{'x lgbm':>7s} {'cv rho':>7s} {'pred. best':>10s}")
    for name, f, c, t, r, rho, pred in rows:
        print(f"{name:15s} {f:7.2f} {c:7.2f} {t:9.2f} {t / ref[3]:7.2f} {r:12.2f} {r / ref[4]:7.2f} {rho:7.4f} {pred:10.4f}")
    non_auto = [r for r in rows if r[0] != "auto"]
    print(f"all estimators except auto, fit + 5-fold CV: {sum(r[3] for r in non_auto):.2f} s "
          f"(+ recommendations {sum(r[4] for r in non_auto):.2f} s)")


if __name__ == "__main__":
    main()
