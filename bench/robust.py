"""Evidence for the recommendation guards of issue 23 (items 6-7): the support rule and the
robust (bootstrap-averaged) recommendation. Three sections, each printing its table:

``support``: how badly do estimators predict runs beyond the weights they were fitted on? Per
setting (RegMix 512 runs x 17 domains at 1M, bundled; Data Mixing Laws 5Mix at 70M, 160M, 305M
and 410M, 26 mixtures x 5 domains; 3Mix at 410M, 32 mixtures x 3 domains, the mean of its three
validation losses; read from ``../shared/data/mixinglaws`` at run time; 2Mix has 5 mixtures and
is left out) and per domain
d: the runs with w_d above the median are held out, the estimator is fitted on 80% of the others
(the other 20% give its in-support error) and predicts the held-out runs. Their absolute error
over the in-support MAE is binned by the ratio w_d / (largest w_d in training). Pooled: the mean
over settings of each setting's median (every setting counts once); worst: their maximum. The
support factor is the largest ratio up to which every setting's error stays within twice the
in-support error (the worst row: an optimiser seeks the most optimistic extrapolation).

``synthetic``: worlds with a known truth (:class:`mixopt.online.synthetic.SyntheticEnv`, power
laws with cross-domain transfer, random parameters; 3 and 5 domains), swarms of 16 and 40
Dirichlet(1) runs with noise 10% of the runs' loss spread. Per estimator: the TRUE loss regret
(truth at the recommendation minus truth at the true optimum) of the plain and the robust
recommendation, how often each truly beats natural (a fixed Dirichlet(2) draw per world), and
the mean survival share when it truly does / does not (is the share informative?).

``regmix``: the 512 RegMix runs split in four disjoint quarters of 128; each quarter fits,
recommends (plain and robust) and a GP fitted on the other 384 runs judges the recommendation
against natural (the mean of the runs' mixtures: RegMix draws them around the token shares).
As the service does by default: the robust argmins are searched within the runs' support, the
plain argmin is not (counted when it lies beyond the support rule: the service refuses it).

    .venv/bin/python -m bench.robust [--section support synthetic regmix] [--n-boot 10]
        [--seeds 2] [--mixinglaws-dir DIR]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import csv  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from bench.fidelity import MIXINGLAWS, default_data_dir, load_regmix  # noqa: E402
from mixopt.mixing.base import get_estimator  # noqa: E402
from mixopt.mixing.optimize import recommend  # noqa: E402
from mixopt.mixing.robust import OffSupportError, support_bound  # noqa: E402
from mixopt.online.synthetic import SyntheticEnv  # noqa: E402

ESTIMATORS = ("mixing_law", "gp", "law_gp", "regmix_linear")
BINS = (1.0, 1.5, 2.0, 3.0, 5.0, np.inf)
#: the pooled held-out error may reach this multiple of the in-support error within the factor
ERROR_MULTIPLE = 2.0


# -- data ---------------------------------------------------------------------------------------
def _wide(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path) as f:
        rows = [r for r in csv.DictReader(f) if int(r["run_id"].split("_")[-1]) < 900]
    cols = [c for c in rows[0] if c.startswith("r_")]
    X = np.array([[float(r[c]) for c in cols] for r in rows])
    if "loss_full_validweighted" in rows[0]:  # 5Mix: the weighted Pile validation loss
        y = np.array([float(r["loss_full_validweighted"]) for r in rows])
    else:  # 3Mix: evaluated on its own three domains, their mean
        losses = [c for c in rows[0] if c.startswith("loss_")]
        y = np.array([np.mean([float(r[c]) for c in losses]) for r in rows])
    return X, y


def settings(mixinglaws: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    X, y, _ = load_regmix(default_data_dir())
    out = {"RegMix 1M (17 dom.)": (X, y)}
    d = mixinglaws / "derived"
    if d.exists():
        for size in ("70M", "160M", "305M", "410M"):
            out[f"5Mix {size}"] = _wide(d / f"5Mix_{size}_step30000_wide.csv")
        out["3Mix 410M"] = _wide(d / "3Mix_410M_step60000_wide.csv")
    else:
        print(f"(no {mixinglaws}: Data Mixing Laws settings skipped)")
    return out


def _fit(name: str, X: np.ndarray, y: np.ndarray):
    return get_estimator(name).fit(X, y[:, None], domains=[f"d{i}" for i in range(X.shape[1])])


# -- support -----------------------------------------------------------------------------------
def support_section(data: dict, seed: int = 0) -> None:
    print("\n== support: held-out error beyond the training runs' largest weight ==")
    print("(|error| / in-support MAE, median per ratio bin w_d / max training w_d; n = runs)")
    table: dict[str, dict[int, list[float]]] = {}
    t0 = time.perf_counter()
    for label, (X, y) in data.items():
        rng = np.random.default_rng(seed)
        per_bin: dict[int, list[float]] = {i: [] for i in range(len(BINS) - 1)}
        for d in range(X.shape[1]):
            med = float(np.median(X[:, d]))
            inside = np.flatnonzero(X[:, d] <= med)
            out = np.flatnonzero(X[:, d] > med)
            if med <= 0 or out.size == 0 or inside.size < X.shape[1] + 5:
                continue
            test = rng.choice(inside, max(2, inside.size // 5), replace=False)
            train = np.setdiff1d(inside, test)
            m = X[train, d].max()
            if m <= 0:
                continue
            for name in ESTIMATORS:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    try:
                        est = _fit(name, X[train], y[train])
                    except (ValueError, np.linalg.LinAlgError):
                        continue
                    p_in = np.ravel(est.predict_objective(X[test]))
                    p_out = np.ravel(est.predict_objective(X[out]))
                mae = max(float(np.mean(np.abs(p_in - y[test]))), 1e-6)
                err = np.abs(p_out - y[out]) / mae
                ratio = X[out, d] / m
                for i in range(len(BINS) - 1):
                    sel = (ratio > BINS[i]) & (ratio <= BINS[i + 1])
                    per_bin[i] += err[sel].tolist()
        table[label] = per_bin
    _print_support(table)
    print(f"({time.perf_counter() - t0:.0f} s)")


def _print_support(table: dict[str, dict[int, list[float]]]) -> None:
    names = [f"({BINS[i]:g}, {BINS[i + 1]:g}]" for i in range(len(BINS) - 1)]
    print("| setting | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    pooled = []
    for label, per_bin in table.items():
        cells = []
        for i in range(len(names)):
            v = per_bin[i]
            cells.append(f"{np.median(v):.2f} (n={len(v)})" if v else "-")
        print(f"| {label} | " + " | ".join(cells) + " |")
    for i in range(len(names)):
        meds = [float(np.median(pb[i])) for pb in table.values() if len(pb[i]) >= 3]
        pooled.append(float(np.mean(meds)) if meds else np.nan)
    print(
        "| **pooled** (mean of settings) | "
        + " | ".join("-" if np.isnan(v) else f"**{v:.2f}**" for v in pooled)
        + " |"
    )
    worst = []
    for i in range(len(names)):
        meds = [float(np.median(pb[i])) for pb in table.values() if len(pb[i]) >= 3]
        worst.append(float(np.max(meds)) if meds else np.nan)
    print(
        "| **worst setting** | "
        + " | ".join("-" if np.isnan(v) else f"**{v:.2f}**" for v in worst)
        + " |"
    )
    for label, row in (("pooled", pooled), ("worst setting", worst)):
        factor = BINS[0]
        for i, v in enumerate(row):
            if np.isnan(v) or v > ERROR_MULTIPLE:
                break
            factor = BINS[i + 1]
        print(f"largest ratio with {label} error <= {ERROR_MULTIPLE:g}x in-support: {factor:g}")
    print(
        "(the support factor is the worst-setting figure: the optimiser picks the most "
        "optimistic extrapolation, not a typical one)"
    )


# -- synthetic worlds ---------------------------------------------------------------------------
def _world(k: int, seed: int) -> tuple[SyntheticEnv, int]:
    rng = np.random.default_rng(seed)
    T = np.eye(k) + rng.uniform(0, 0.4, (k, k)) * (1 - np.eye(k))
    env = SyntheticEnv(
        domains=[f"d{i}" for i in range(k)],
        floor=tuple(rng.uniform(1.0, 2.0, k)),
        scale=tuple(rng.uniform(1.0, 4.0, k)),
        exponent=tuple(rng.uniform(0.3, 0.9, k)),
        transfer=tuple(map(tuple, T)),
        seed=seed,
    )
    return env, 400


def _truth(env: SyntheticEnv, steps: int, W: np.ndarray) -> np.ndarray:
    return np.array([env.static_objective(w, steps) for w in np.atleast_2d(W)])


def synthetic_section(n_boot: int, seeds: tuple[int, ...] = (0, 1)) -> None:
    print("\n== synthetic worlds with a known truth: plain vs robust recommendation ==")
    rows: dict[str, dict[str, list]] = {
        n: {"plain": [], "robust": [], "beat_p": [], "beat_r": [], "share": []} for n in ESTIMATORS
    }
    t0 = time.perf_counter()
    for k in (3, 5):
        for seed in seeds:
            env, steps = _world(k, 100 * k + seed)
            w_star = env.optimal_mixture(steps)
            f_star = _truth(env, steps, w_star)[0]
            rng = np.random.default_rng(seed)
            nat = rng.dirichlet(2 * np.ones(k))
            f_nat = _truth(env, steps, nat)[0]
            for n in (16, 40):
                X = rng.dirichlet(np.ones(k), n)
                f = _truth(env, steps, X)
                y = f + rng.normal(0, 0.1 * f.std(), n)
                for name in ESTIMATORS:
                    res = _plain_and_robust(name, X, y, nat, n_boot, seed)
                    if res is None:
                        continue
                    (wp, sp), (wr, _) = res
                    tp, tr = _truth(env, steps, wp)[0], _truth(env, steps, wr)[0]
                    r = rows[name]
                    r["plain"].append(tp - f_star)
                    r["robust"].append(tr - f_star)
                    r["beat_p"].append(tp < f_nat)
                    r["beat_r"].append(tr < f_nat)
                    r["share"].append((sp, tp < f_nat))
    print(
        "| estimator | cases | true regret plain | robust | robust better | beats natural "
        "plain | robust | share when it truly beats / not |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        if not r["plain"]:
            continue
        p, q = np.array(r["plain"]), np.array(r["robust"])
        sh = [(s, b) for s, b in r["share"] if s is not None]
        yes = [s for s, b in sh if b]
        no = [s for s, b in sh if not b]
        print(
            f"| {name} | {p.size} | {p.mean():.4f} | {q.mean():.4f} | "
            f"{np.mean(q < p - 1e-9):.0%} (worse {np.mean(q > p + 1e-9):.0%}) | "
            f"{np.mean(r['beat_p']):.0%} | {np.mean(r['beat_r']):.0%} | "
            f"{np.mean(yes) if yes else float('nan'):.2f} / "
            f"{np.mean(no) if no else float('nan'):.2f} |"
        )
    print(f"({time.perf_counter() - t0:.0f} s)")


def _plain_and_robust(name, X, y, nat, n_boot, seed, allow=True):
    """((plain mixture, its survival share), (robust mixture, share)) or None."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            est = _fit(name, X, y)
        except (ValueError, np.linalg.LinAlgError):
            return None
        kw = dict(
            X=X,
            Y=y[:, None],
            n_boot=n_boot,
            prior=nat,
            random_state=seed,
            allow_extrapolation=allow,
            n_samples=20_000,
        )
        try:
            rec = recommend(est, robust=True, **kw)
        except OffSupportError:
            return None
    wp = np.array(rec["robust"]["plain_mixture"])
    return (wp, rec["robust"]["plain_share_beating"]), (
        np.array(rec["mixture"]),
        rec["survival"]["share_beating"],
    )


# -- RegMix, judged on held-out runs -------------------------------------------------------------
def regmix_section(n_boot: int) -> None:
    print("\n== RegMix: 4 disjoint quarters of 128 runs, judged by a GP on the other 384 ==")
    X, y, _ = load_regmix(default_data_dir())
    nat = X.mean(axis=0)
    perm = np.random.default_rng(0).permutation(X.shape[0])
    rows: dict[str, dict[str, list]] = {n: {"p": [], "r": [], "off": []} for n in ESTIMATORS}
    t0 = time.perf_counter()
    for q in range(4):
        tr, te = perm[q * 128 : (q + 1) * 128], np.setdiff1d(perm, perm[q * 128 : (q + 1) * 128])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            judge = _fit("gp", X[te], y[te])
        j_nat = float(np.ravel(judge.predict_objective(nat[None]))[0])
        bound = support_bound(X[tr])
        for name in ESTIMATORS:
            res = _plain_and_robust(name, X[tr], y[tr], nat, n_boot, q, allow=False)
            if res is None:
                continue
            (wp, _), (wr, _) = res
            jp = float(np.ravel(judge.predict_objective(wp[None]))[0]) - j_nat
            jr = float(np.ravel(judge.predict_objective(wr[None]))[0]) - j_nat
            rows[name]["p"].append(jp)
            rows[name]["r"].append(jr)
            rows[name]["off"].append((bool(np.any(wp > bound)), bool(np.any(wr > bound))))
    print(
        "| estimator | judged loss - natural, plain (per quarter) | robust | off support "
        "plain / robust |"
    )
    print("|---|---|---|---|")
    for name, r in rows.items():
        if not r["p"]:
            continue
        off_p = sum(a for a, _ in r["off"])
        off_r = sum(b for _, b in r["off"])
        print(
            f"| {name} | {np.mean(r['p']):+.4f} ({', '.join(f'{v:+.3f}' for v in r['p'])}) | "
            f"{np.mean(r['r']):+.4f} ({', '.join(f'{v:+.3f}' for v in r['r'])}) | "
            f"{off_p}/{len(r['off'])} / {off_r}/{len(r['off'])} |"
        )
    print(f"({time.perf_counter() - t0:.0f} s)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--section",
        nargs="+",
        default=["support", "synthetic", "regmix"],
        choices=["support", "synthetic", "regmix"],
    )
    ap.add_argument("--n-boot", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=2, help="synthetic worlds per domain count")
    ap.add_argument("--mixinglaws-dir", type=Path, default=MIXINGLAWS)
    args = ap.parse_args(argv)
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    if "support" in args.section:
        support_section(settings(args.mixinglaws_dir))
    if "synthetic" in args.section:
        synthetic_section(args.n_boot, tuple(range(args.seeds)))
    if "regmix" in args.section:
        regmix_section(args.n_boot)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
