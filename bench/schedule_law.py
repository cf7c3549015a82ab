"""Does a learning-rate-annealing steps law extrapolate the Data Mixing Laws curves better?

A probe of issue 23's steps-law bias, run by hand: ``python -m bench.schedule_law``. The law of
Tissue et al. 2024 ("Scaling Law with Learning Rate Annealing", Eq. 1):

    L(s) = L0 + A * S1(s)^(-alpha) - C * S2(s)

with ``S1`` the forward area (sum of the learning rates up to ``s``) and ``S2`` the annealing
area (sum of the momentum of the learning-rate drops, decay ``LAMBDA`` = 0.999, the paper's
value). ``alpha`` is shared by the runs of one size (as the pipeline shares the power law's
exponent); ``L0, A, C >= 0`` per run by bounded least squares for each ``alpha`` of a grid.

The public files do not give the runs' schedules, so each is an assumption, the same rule for
every setting: ``constant`` (the annealing law reduces to a power law in steps, the reference
point of this probe), ``cosine_setting`` (cosine to the setting's longest budget: 2Mix 30k,
3Mix 60k, 5Mix 100k; the 5Mix 30k runs would be cut from 100k schedules, which their smooth
slopes through 30k suggest), ``cosine_run`` (cosine to each run's own last step). Warm-up 1% of
the setting's budget, floor 10% of the peak (Pythia's).

Cases: ``bench.transfer.steps_errors``'s: (a) every curve cut at a third of its size's budget
predicts the budget; (b) the 5Mix runs trained to 90k-100k, cut at 30k, predict their end.
Prints the signed and absolute mean relative error per case and pooled.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.optimize import lsq_linear

from bench.transfer import have_mixinglaws, load_setting

LAMBDA = 0.999
WARMUP = 0.01
FLOOR = 0.1
ALPHAS = np.linspace(0.2, 1.2, 41)
#: the longest budget of each setting (the data's README)
LONGEST = {"2Mix": 30_000, "3Mix": 60_000, "5Mix": 100_000}
SCHEDULES = ("constant", "cosine_setting", "cosine_run")


def learning_rates(n_steps: int, total: float, warmup: int) -> np.ndarray:
    """Linear warm-up, then cosine from 1 to ``FLOOR`` at ``total`` (flat after it)."""
    s = np.arange(1, n_steps + 1, dtype=float)
    frac = np.clip((s - warmup) / max(total - warmup, 1.0), 0.0, 1.0)
    cos = FLOOR + (1 - FLOOR) * 0.5 * (1 + np.cos(np.pi * frac))
    return np.where(s < warmup, s / warmup, cos)


def areas(eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward area ``S1`` and annealing area ``S2`` after each step (Tissue et al., Eq. 1)."""
    drop = np.concatenate([[0.0], eta[:-1] - eta[1:]])
    m = np.empty_like(eta)
    acc = 0.0
    for i, d in enumerate(drop):
        acc = LAMBDA * acc + d
        m[i] = acc
    return np.cumsum(eta), np.cumsum(m)


def _design(S1, S2, steps, alpha, anneal):
    i = steps.astype(int) - 1
    cols = [np.ones(i.size), S1[i] ** -alpha] + ([-S2[i]] if anneal else [])
    return np.stack(cols, 1)


def fit_and_predict(curves, areas_of, cut, targets, fit_from, anneal):
    """One ``alpha`` for the curves of one size; each curve's prediction at its target."""
    best = None
    for a in ALPHAS:
        sse, params = 0.0, []
        for (x, L), (S1, S2) in zip(curves, areas_of, strict=True):
            k = (x <= cut * (1 + 1e-9)) & (x >= fit_from * cut)
            M = _design(S1, S2, x[k], a, anneal)
            r = lsq_linear(M, L[k], bounds=(0.0, np.inf))
            sse += float(np.sum((M @ r.x - L[k]) ** 2))
            params.append(r.x)
        if best is None or sse < best[0]:
            best = (sse, a, params)
    _, a, params = best
    return [
        float((_design(S1, S2, np.array([t]), a, anneal) @ p)[0])
        for p, (S1, S2), t in zip(params, areas_of, targets, strict=True)
    ]


def run(schedule: str, fit_from: float) -> dict[tuple[str, str, str], list[float]]:
    out: dict[tuple[str, str, str], list[float]] = {}
    for setting, longest in LONGEST.items():
        for size, runs in load_setting(setting).items():
            lasts = [r.curve[-1][0] for r in runs]
            budget = max(set(lasts), key=lasts.count)
            cases = (
                ("a: budget/3 -> budget", budget / 3, lambda r, b=budget: b, lambda r: True),
                (
                    "b: 30k -> 90-100k",
                    budget,
                    lambda r: r.curve[-1][0],
                    lambda r, b=budget: r.curve[-1][0] >= 3 * b * (1 - 1e-9),
                ),
            )
            for label, cut, target, wanted in cases:
                # every run of the size shares alpha (as in the pipeline); the wanted ones count
                curves, areas_of, targets, actual = [], [], [], []
                for r in runs:
                    x = np.array([s for s, _ in r.curve], dtype=float)
                    L = np.array([v for _, v in r.curve])
                    t = int(target(r))
                    if ((x <= cut * (1 + 1e-9)) & (x >= fit_from * cut)).sum() < 4:
                        continue
                    total = {"constant": 1e12, "cosine_setting": longest, "cosine_run": x.max()}
                    eta = learning_rates(
                        int(max(x.max(), longest, t)),
                        total[schedule],
                        max(1, int(WARMUP * longest)),
                    )
                    curves.append((x, L))
                    areas_of.append(areas(eta))
                    targets.append(t)
                    ok = wanted(r) and r.at(t) is not None and x.max() >= t
                    actual.append(float(r.at(t)) if ok else None)
                if not any(a is not None for a in actual):
                    continue
                pred = fit_and_predict(
                    curves, areas_of, cut, targets, fit_from, anneal=schedule != "constant"
                )
                out[(setting, size, label)] = [
                    (p - a) / a for p, a in zip(pred, actual, strict=True) if a is not None
                ]
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--fit-from",
        type=float,
        default=1 / 3,
        help="fit the points from this share of the cut on (the pipeline's third; 0.05: "
        "nearly the whole curve, as Tissue et al. fit)",
    )
    args = ap.parse_args(argv)
    if not have_mixinglaws():
        print("(no ../shared/data/mixinglaws: nothing to probe)")
        return
    t0 = time.perf_counter()
    res = {s: run(s, args.fit_from) for s in SCHEDULES}
    print(f"signed / |mean| relative error, fitted from {args.fit_from:.2f} of the cut")
    print(f"{'case':40s} {'runs':>4s} " + " ".join(f"{s:>22s}" for s in SCHEDULES))
    for key in res["constant"]:
        cells = []
        for s in SCHEDULES:
            e = np.array(res[s].get(key, []))
            cells.append(
                f"{e.mean() * 100:+7.2f}% / {np.abs(e).mean() * 100:5.2f}%" if e.size else "n/a"
            )
        n = len(res["constant"][key])
        print(f"{' '.join(key):40s} {n:4d} " + " ".join(f"{c:>22s}" for c in cells))
    pooled = [
        f"{np.mean(np.abs(np.concatenate([np.array(v) for v in res[s].values()]))) * 100:.2f}%"
        for s in SCHEDULES
    ]
    print(f"{'pooled |mean|':45s} " + " ".join(f"{p:>22s}" for p in pooled))
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
