"""Cross-validated fidelity of every estimator on the 512 real RegMix proxy runs.

For each training-set size (64, 128, 256, 512 runs, seeded subsamples, ``--repeats`` repeats
with different subsample and fold seeds), 5-fold CV Spearman and MAE on
``metric/the_pile_pile_cc_val_loss`` (RegMix's target), with RegMix LightGBM (the reference
notebook's settings) as the reference column and each estimator's Spearman ratio to it.

    .venv/bin/python -m bench.fidelity [--data-dir DIR] [--repeats 3] [--sizes 64 128 256 512]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

from mixopt.mixing.base import get_estimator
from mixopt.mixing.fidelity import cross_validate

TARGET = "metric/the_pile_pile_cc_val_loss"
REPO = Path(__file__).resolve().parents[1]

#: (row label, registered name, params). "regmix_lgbm" = paper settings (reference column).
ESTIMATORS = [
    ("regmix_lgbm", "regmix_lgbm", {}),
    ("regmix_lgbm(no early stop)", "regmix_lgbm", {"validation_fraction": 0.0}),
    ("regmix_linear", "regmix_linear", {}),
    ("mixing_law", "mixing_law", {}),
    ("gp", "gp", {}),
]
AUTO = ("auto", "auto", {"candidates": ["gp", "mixing_law", "regmix_lgbm", "regmix_linear"]})


def default_data_dir() -> Path:
    repo_copy = REPO / "mixopt" / "data" / "regmix"
    if (repo_copy / "train_mixture_1m.csv").exists():
        return repo_copy
    return REPO.parent / "shared" / "data" / "regmix"


def _read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    with open(path) as f:
        header = f.readline().strip().split(",")
    return header, np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)


def load_regmix(data_dir: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    hx, X = _read_csv(data_dir / "train_mixture_1m.csv")
    hy, Y = _read_csv(data_dir / "train_pile_loss_1m.csv")
    if not np.array_equal(X[:, 0], Y[:, 0]):
        raise ValueError("mixture and loss files disagree on the run index")
    return X[:, 1:], Y[:, hy.index(TARGET)], hx[1:]


def run(data_dir: Path, sizes: list[int], repeats: int, with_auto: bool) -> dict:
    X, y, domains = load_regmix(data_dir)
    rows = ESTIMATORS + ([AUTO] if with_auto else [])
    res: dict = {label: {n: {"spearman": [], "mae": [], "s": []} for n in sizes} for label, _, _ in rows}
    for n in sizes:
        for r in range(repeats):
            rng = np.random.default_rng(1000 * n + r)
            idx = np.sort(rng.choice(X.shape[0], n, replace=False)) if n < X.shape[0] else np.arange(X.shape[0])
            for label, name, params in rows:
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    cv = cross_validate(get_estimator(name, **params), X[idx], y[idx], n_folds=5,
                                        random_state=r, domains=domains)
                res[label][n]["spearman"].append(cv["pooled"]["spearman"])
                res[label][n]["mae"].append(cv["pooled"]["mae"])
                res[label][n]["s"].append(time.perf_counter() - t0)
    return res


def print_table(res: dict, sizes: list[int], repeats: int) -> None:
    ref = "regmix_lgbm"
    print(f"5-fold CV on {TARGET} (pooled over folds; mean of {repeats} seeded repeats)")
    head = f"{'estimator':28s}" + "".join(f" | n={n:<4d} rho   MAE    x ref" for n in sizes)
    print(head)
    print("-" * len(head))
    for label, per in res.items():
        line = f"{label:28s}"
        for n in sizes:
            s, m = np.mean(per[n]["spearman"]), np.mean(per[n]["mae"])
            ratio = s / np.mean(res[ref][n]["spearman"])
            line += f" | {s:.4f} {m:.4f} {ratio:5.3f}"
        print(line)
    print("\nseconds per 5-fold CV (mean):")
    for label, per in res.items():
        print(f"{label:28s}" + "".join(f" | n={n}: {np.mean(per[n]['s']):6.2f}" for n in sizes))
    print("\nbest estimator per size (by mean Spearman):")
    for n in sizes:
        best = max(res, key=lambda k: np.mean(res[k][n]["spearman"]))
        print(f"  n={n}: {best} {np.mean(res[best][n]['spearman']):.4f} vs regmix_lgbm "
              f"{np.mean(res[ref][n]['spearman']):.4f}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=default_data_dir())
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-auto", action="store_true", help="skip the (nested-CV) auto estimator")
    args = ap.parse_args(argv)
    res = run(args.data_dir, args.sizes, args.repeats, with_auto=not args.no_auto)
    print_table(res, args.sizes, args.repeats)


if __name__ == "__main__":
    main()
