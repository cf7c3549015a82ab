"""Fidelity of every estimator: same-scale CV on the 512 real RegMix proxy runs, and a
cross-scale table on the Data Mixing Laws runs (5Mix, 70M-1B).

Same scale: for each training-set size (64, 128, 256, 512 runs, seeded subsamples,
``--repeats`` repeats with different subsample and fold seeds), 5-fold CV (folds grouped by
mixture) Spearman and MAE on ``metric/the_pile_pile_cc_val_loss`` (RegMix's target), with RegMix
LightGBM (the reference notebook's settings, early stopping included) as the reference column
and each estimator's Spearman ratio to it; ``auto`` by nested CV (its selection inside each fold).

Cross scale (``../shared/data/mixinglaws``, read at run time, never copied): the weighted Pile
validation loss (``valid_weight.json``) of the 5Mix runs; (A) fit on 70M-305M at 30k steps,
predict the 26 mixtures at 410M; (B) fit on 70M-410M with curves up to 30k steps, predict the
six 1B runs at their last step (20k-100k). Per estimator: fitted on the extrapolated losses of
the nested pipeline (steps law per run, size law per mixture), or on the largest proxies'
losses directly ("no scaling laws"), beside the largest proxies' own losses. Mean/max absolute
relative error and Spearman.

    .venv/bin/python -m bench.fidelity [--data-dir DIR] [--repeats 3] [--sizes 64 128 256 512]
        [--mixinglaws-dir DIR] [--no-cross-scale] [--no-same-scale]
"""

from __future__ import annotations

import os

for _v in (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
):  # before numpy: shared machine
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from bench.transfer import MIXINGLAWS, NON_EMBEDDING  # noqa: E402  (one copy of the data facts)
from mixopt.mixing.base import get_estimator  # noqa: E402
from mixopt.mixing.fidelity import cross_validate  # noqa: E402
from mixopt.mixing.nested import prepare_at_scale  # noqa: E402

TARGET = "metric/the_pile_pile_cc_val_loss"
REPO = Path(__file__).resolve().parents[1]

#: (row label, registered name, params). "regmix_lgbm" = paper settings (reference column).
ESTIMATORS = [
    ("regmix_lgbm", "regmix_lgbm", {"early_stopping_rounds": 3, "min_child_samples": 20}),
    ("regmix_lgbm (defaults)", "regmix_lgbm", {}),
    ("regmix_linear", "regmix_linear", {}),
    ("mixing_law", "mixing_law", {}),
    ("gp", "gp", {}),
    ("law_gp", "law_gp", {}),
]
AUTO = ("auto (nested CV)", "auto", {})


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
    res: dict = {
        label: {n: {"spearman": [], "mae": [], "s": []} for n in sizes} for label, _, _ in rows
    }
    for n in sizes:
        for r in range(repeats):
            rng = np.random.default_rng(1000 * n + r)
            idx = (
                np.sort(rng.choice(X.shape[0], n, replace=False))
                if n < X.shape[0]
                else np.arange(X.shape[0])
            )
            for label, name, params in rows:
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    cv = cross_validate(
                        get_estimator(
                            name, **dict(params, **({"random_state": r} if name == "auto" else {}))
                        ),
                        X[idx],
                        y[idx],
                        n_folds=5,
                        random_state=r,
                        domains=domains,
                    )
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
        print(
            f"  n={n}: {best} {np.mean(res[best][n]['spearman']):.4f} vs regmix_lgbm "
            f"{np.mean(res[ref][n]['spearman']):.4f}"
        )


# -- cross scale: the Data Mixing Laws runs ---------------------------------------------------
CROSS_ESTIMATORS = [
    ("mixing_law", {}),
    ("law_gp", {}),
    ("gp", {}),
    ("regmix_linear", {}),
    ("regmix_lgbm", {}),
]


def load_5mix(data_dir: Path) -> dict[str, list[dict]]:
    """5Mix runs per size: mixture, curve [(step, weighted Pile loss)] (steps with all 22
    domains), special mixtures (ids > 900) kept only at 1B, as the paper does."""
    weights = json.loads((data_dir / "valid_weight.json").read_text())
    acc: dict = defaultdict(lambda: defaultdict(dict))
    mixture = {}
    with open(data_dir / "tidy_long.csv") as f:
        for r in csv.DictReader(f):
            if r["setting"] != "5Mix":
                continue
            key = (r["model_size"], r["run_id"])
            mixture[key] = [float(x) for x in r["mixture"].split("-")]
            acc[key][int(r["step"])][r["valid_domain"]] = float(r["loss"])
    runs: dict[str, list[dict]] = defaultdict(list)
    for (size, rid), curve in sorted(acc.items()):
        if int(rid.split("_")[1]) > 900 and size != "1B":
            continue
        pts = [
            (s, sum(weights[d] * v for d, v in L.items()))
            for s, L in sorted(curve.items())
            if len(L) == 22
        ]
        runs[size].append(
            {
                "id": rid,
                "mixture": mixture[(size, rid)],
                "params": NON_EMBEDDING[size],
                "curve": pts,
            }
        )
    return runs


def _arrays(runs: list[dict], max_step: int):
    X = np.array([r["mixture"] for r in runs])
    cur = [[(s, {"loss": v}) for s, v in r["curve"] if s <= max_step] for r in runs]
    Y = np.array([[c[-1][1]["loss"]] for c in cur])
    S = np.array([c[-1][0] for c in cur], dtype=float)
    P = np.array([r["params"] for r in runs], dtype=float)
    return X, Y, S, P, [c[:-1] for c in cur]


def _errors(pred: np.ndarray, actual: np.ndarray) -> tuple[float, float, float | None]:
    rel = np.abs(pred - actual) / actual
    rho = float(spearmanr(actual, pred)[0]) if np.ptp(pred) > 0 else None
    return float(rel.mean()), float(rel.max()), rho


def run_cross_scale(data_dir: Path) -> list[tuple[str, str, float, float, float | None, float]]:
    """Rows ``(setting, method, mean rel error, max rel error, spearman, seconds)``."""
    runs = load_5mix(data_dir)
    rows = []
    settings = [
        ("A: 70M-305M -> 410M @30k", ["70M", "160M", "305M"], 30_000, "410M", 30_000),
        (
            "B: 70M-410M @<=30k -> 1B @last step",
            ["70M", "160M", "305M", "410M"],
            30_000,
            "1B",
            None,
        ),
    ]
    for label, fit_sizes, max_step, tsize, tstep in settings:
        train = [r for s in fit_sizes for r in runs[s]]
        X, Y, S, P, C = _arrays(train, max_step)
        held = runs[tsize]
        Xh = np.array([r["mixture"] for r in held])
        steps_h = [tstep or r["curve"][-1][0] for r in held]
        actual = np.array([dict(r["curve"])[s] for r, s in zip(held, steps_h, strict=True)])
        # the largest proxies' own losses, matched by mixture (the best a user had before)
        big = runs[fit_sizes[-1]]
        own = {tuple(r["mixture"]): dict(r["curve"]).get(max_step, r["curve"][-1][1]) for r in big}
        have = [i for i, r in enumerate(held) if tuple(r["mixture"]) in own]
        if have:
            mre, mx, rho = _errors(
                np.array([own[tuple(held[i]["mixture"])] for i in have]), actual[have]
            )
            rows.append(
                (
                    label,
                    f"{fit_sizes[-1]} proxies' own loss ({len(have)} of {len(held)} mixtures)",
                    mre,
                    mx,
                    rho,
                    0.0,
                )
            )
        t0 = time.perf_counter()
        cache: dict = {}
        preps = {
            s: prepare_at_scale(
                X,
                Y,
                targets=["loss"],
                model_params=P,
                steps=S,
                curves=C,
                law_cache=cache,
                target_scale={"model_params": NON_EMBEDDING[tsize], "train_steps": s},
            )
            for s in sorted(set(steps_h))
        }
        prep_s = time.perf_counter() - t0
        Xb, Yb, _, _, _ = _arrays(big, max_step)
        for name, params in CROSS_ESTIMATORS:
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fitted = {s: get_estimator(name, **params).fit(p.X, p.Y) for s, p in preps.items()}
                pred = np.array(
                    [fitted[s].predict(Xh[i : i + 1])[0, 0] for i, s in enumerate(steps_h)]
                )
                direct = get_estimator(name, **params).fit(Xb, Yb).predict(Xh)[:, 0]
            rows.append(
                (
                    label,
                    f"nested pipeline + {name}",
                    *_errors(pred, actual),
                    prep_s + time.perf_counter() - t0,
                )
            )
            rows.append(
                (
                    label,
                    f"{name} on {fit_sizes[-1]} @{max_step // 1000}k, no scaling laws",
                    *_errors(direct, actual),
                    0.0,
                )
            )
        print(
            f"  [{label}: steps/size laws {prep_s:.1f} s; size-law alpha "
            f"{next(iter(preps.values())).chain[-1].get('alpha', float('nan')):.3f}]",
            flush=True,
        )
    return rows


def print_cross(rows) -> None:
    print("\nCross-scale prediction of the weighted Pile loss, 5Mix (Ye et al. 2024 runs)")
    print(f"{'setting':40s} | {'method':48s} | mean |rel err| | max |rel err| | Spearman | s")
    for setting, method, mre, mx, rho, sec in rows:
        r = f"{rho:6.3f}" if rho is not None else "  n/a "
        print(
            f"{setting:40s} | {method:48s} | {100 * mre:12.2f}% | {100 * mx:12.2f}% | {r:8s} | "
            f"{sec:5.1f}"
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=default_data_dir())
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-auto", action="store_true", help="skip the (nested-CV) auto estimator")
    ap.add_argument("--mixinglaws-dir", type=Path, default=MIXINGLAWS)
    ap.add_argument("--no-cross-scale", action="store_true")
    ap.add_argument("--no-same-scale", action="store_true")
    args = ap.parse_args(argv)
    if not args.no_cross_scale:
        t0 = time.perf_counter()
        print_cross(run_cross_scale(args.mixinglaws_dir))
        print(f"(cross-scale table: {time.perf_counter() - t0:.0f} s)\n")
    if not args.no_same_scale:
        res = run(args.data_dir, args.sizes, args.repeats, with_auto=not args.no_auto)
        print_table(res, args.sizes, args.repeats)


if __name__ == "__main__":
    main()
