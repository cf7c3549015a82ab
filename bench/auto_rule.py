"""Evidence for ``auto``'s single-scale rule (issue 23, item 4): which estimator, chosen from
runs of ONE scale, ranks the mixtures at a larger scale best?

Settings (``../shared/data/mixinglaws``, read at run time, never copied; the objective is the
Pile validation loss weighted by ``valid_weight.json`` over the setting's validation domains):
each size of a setting with at least K + 3 mixtures at a common step is a source; every larger
size (same step, or the largest step it reached) whose mixtures the source also ran is a target.
Per (source -> target) and candidate: the 5-fold CV Spearman at the source (what ``auto`` sees)
and the Spearman of its predictions at the target (what the user needs). Then each rule of
:mod:`mixopt.mixing.auto` is applied to the source CV table and scored by its gap to the best
single estimator at the target. The RegMix 1M -> 1B figures of issue 23 (no 1B runs are bundled)
are printed beside them as quoted evidence, not recomputed.

    .venv/bin/python -m bench.auto_rule [--mixinglaws-dir DIR] [--json FILE]
        [--targets weighted|per_domain]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import warnings  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from mixopt.mixing.auto import LAW_MARGIN, choose  # noqa: E402
from mixopt.mixing.base import get_estimator  # noqa: E402
from mixopt.mixing.fidelity import cross_validate  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MIXINGLAWS = REPO.parent / "shared" / "data" / "mixinglaws"
CANDIDATES = ["mixing_law", "law_gp", "gp", "regmix_lgbm", "regmix_linear"]
SIZE_ORDER = ["70M", "160M", "305M", "410M", "1B"]
#: a target Spearman on fewer mixtures is noise (4 points: 24 orderings); 2Mix has 5
MIN_TARGET = 5
#: the rules scored: best CV, and "law first" over a grid of margins (inf: the law always)
RULES = [("cv", 0.0)] + [
    ("law_first", m) for m in sorted({0.02, 0.05, LAW_MARGIN, 0.15, 0.2, 0.3, float("inf")})
]

#: issue 23 (measured through the API): RegMix, 1B Spearman on 64 held-out 1B mixtures from
#: the first n 1M runs, and the 1M CV Spearman of the same estimators (README's fidelity table)
REGMIX_QUOTED = {
    "RegMix 1M->1B, 512 runs": {
        "cv": {"gp": 0.989, "mixing_law": 0.956, "regmix_lgbm": 0.983, "regmix_linear": 0.879},
        "target": {"gp": 0.964, "mixing_law": 0.986, "law_gp": 0.964, "regmix_lgbm": 0.967},
    },
    "RegMix 1M->1B, 128 runs": {
        "cv": {"gp": 0.986, "mixing_law": 0.942, "law_gp": 0.962, "regmix_lgbm": 0.958},
        "target": {"gp": 0.932, "mixing_law": 0.990, "law_gp": 0.934, "regmix_lgbm": 0.915},
    },
    "RegMix 1M->1B, 64 runs": {
        "cv": {"gp": 0.948, "mixing_law": 0.894, "regmix_lgbm": 0.803, "regmix_linear": 0.779},
        "target": {"gp": 0.917, "mixing_law": 0.989, "law_gp": 0.985, "regmix_lgbm": 0.898},
    },
}


def load_runs(data_dir: Path) -> dict[tuple[str, str], dict[str, dict]]:
    """{(setting, size): {mixture string: {"x": mixture, "curve": {step: weighted loss}}}};
    special mixtures (ids > 900) are left out as the paper does."""
    weights = json.loads((data_dir / "valid_weight.json").read_text())
    acc: dict = defaultdict(lambda: defaultdict(dict))
    with open(data_dir / "tidy_long.csv") as f:
        for r in csv.DictReader(f):
            rid = r["run_id"].split("_")[-1]
            if not r["step"] or (rid.isdigit() and int(rid) > 900):
                continue
            key = (r["setting"], r["model_size"], r["mixture"])
            acc[key][int(float(r["step"]))][r["valid_domain"]] = float(r["loss"])
    n_valid: dict[str, int] = defaultdict(int)
    for (setting, _, _), curve in acc.items():
        for L in curve.values():
            n_valid[setting] = max(n_valid[setting], len(L))
    out: dict = defaultdict(dict)
    for (setting, size, mix), curve in acc.items():
        pts, per = {}, {}
        for s, L in curve.items():
            if len(L) == n_valid[setting]:
                doms = sorted(L)
                w = np.array([weights[d] for d in doms])
                per[s] = (np.array([L[d] for d in doms]), w / w.sum())
                pts[s] = float(np.dot(w / w.sum(), per[s][0]))
        out[(setting, size)][mix] = {
            "x": [float(v) for v in mix.split("-")],
            "curve": pts,
            "domains": per,
        }
    return out


def _at(runs: dict[str, dict], step: int) -> dict[str, float]:
    return {m: r["curve"][step] for m, r in runs.items() if step in r["curve"]}


def settings(data_dir: Path, targets: str = "weighted") -> list[dict]:
    """Source (one size, one step) -> target (a larger size, at its mixtures) pairs.
    ``targets="per_domain"``: the source's losses per validation domain (``Y``, objective
    weights ``w``), what Ye et al. 2024 fit the mixing law on; the target stays the weighted
    loss."""
    runs = load_runs(data_dir)
    out = []
    for setting in sorted({s for s, _ in runs}):
        sizes = sorted({z for s, z in runs if s == setting}, key=SIZE_ORDER.index)
        for i, src in enumerate(sizes):
            srcr = runs[(setting, src)]
            k = len(next(iter(srcr.values()))["x"])
            steps = sorted({s for r in srcr.values() for s in r["curve"]})
            # the step most of the source's mixtures reached
            step = max(steps, key=lambda s: (sum(s in r["curve"] for r in srcr.values()), s))
            source = _at(srcr, step)
            if len(source) < k + 3:
                continue
            for tgt in sizes[i + 1 :]:
                tgtr = runs[(setting, tgt)]
                tsteps = sorted({s for r in tgtr.values() for s in r["curve"]})
                tstep = (
                    step
                    if sum(step in r["curve"] for r in tgtr.values()) >= 4
                    else max(tsteps, key=lambda s: (sum(s in r["curve"] for r in tgtr.values()), s))
                )
                target = _at(tgtr, tstep)
                if len(target) < MIN_TARGET:
                    continue
                case = {
                    "name": f"{setting} {src}@{step // 1000}k -> {tgt}@{tstep // 1000}k",
                    "X": np.array([srcr[m]["x"] for m in source]),
                    "y": np.array(list(source.values())),
                    "Xt": np.array([tgtr[m]["x"] for m in target]),
                    "yt": np.array(list(target.values())),
                }
                if targets == "per_domain":
                    case["Y"] = np.array([srcr[m]["domains"][step][0] for m in source])
                    case["w"] = srcr[next(iter(source))]["domains"][step][1]
                out.append(case)
    return out


def evaluate(case: dict, seed: int = 0) -> dict:
    """Each candidate's source CV (5 folds, grouped by mixture) and target Spearman."""
    cv, target = {}, {}
    Y = case.get("Y", case["y"][:, None])
    w = case.get("w", np.ones(1))
    for name in CANDIDATES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                res = cross_validate(
                    get_estimator(name),
                    case["X"],
                    Y,
                    objective_weights=w if w.size > 1 else None,
                    n_folds=5,
                    random_state=seed,
                )
                est = get_estimator(name).fit(case["X"], Y)
            except (ValueError, np.linalg.LinAlgError):
                continue
        cv[name] = {k: res["pooled"][k] for k in ("spearman", "mae")}
        p = np.asarray(est.predict(case["Xt"]), dtype=float) @ w
        target[name] = float(spearmanr(case["yt"], p)[0]) if np.ptp(p) > 0 else None
    return {"cv": cv, "target": target}


def rule_label(rule: str, margin: float) -> str:
    return rule if rule == "cv" else f"law>{margin:g}"


def rule_scores(ev: dict, n: int | None = None, n_targets: int = 1) -> dict[str, float | None]:
    """Target Spearman of what each rule (:data:`RULES`) chooses from the source CV table
    (measured on ``n`` distinct mixtures: ``choose`` keeps its unvalidated default when the best
    CV Spearman is not significantly above 0 there, the one for ``n_targets``; None: the rule
    alone)."""
    out = {}
    table = [
        {"name": n, "status": "ok", "spearman": m["spearman"], "mae": m["mae"]}
        for n, m in ev["cv"].items()
    ]
    for rule, margin in RULES:
        pick = choose(table, rule, "cv", margin, n=n, n_targets=n_targets)["name"]
        out[rule_label(rule, margin)] = ev["target"].get(pick)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mixinglaws-dir", type=Path, default=MIXINGLAWS)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--targets",
        choices=("weighted", "per_domain"),
        default="weighted",
        help="fit the weighted validation loss, or every validation domain's loss",
    )
    args = ap.parse_args(argv)
    rows = []
    for case in settings(args.mixinglaws_dir, args.targets):
        ev = evaluate(case)
        n = len(case["y"])
        n_targets = case["Y"].shape[1] if "Y" in case else 1
        rows.append((case["name"], n, len(case["yt"]), ev, rule_scores(ev, n, n_targets)))
    for name, q in REGMIX_QUOTED.items():
        ev = {"cv": {n: {"spearman": v, "mae": None} for n, v in q["cv"].items()}}
        ev["target"] = q["target"]
        n_runs = int(name.split(", ")[1].split()[0])  # "RegMix 1M->1B, 128 runs"
        rows.append((name + " (quoted)", None, 64, ev, rule_scores(ev, n_runs)))
    rules = [rule_label(r, m) for r, m in RULES]
    print(
        f"{'setting':34s} {'n':>3s} {'nt':>3s} "
        + " ".join(f"{c[:9]:>9s}" for c in CANDIDATES)
        + " | best  | "
        + " ".join(f"{r[:8]:>8s}" for r in rules)
    )
    gaps: dict[str, list[float]] = defaultdict(list)
    dump = []
    for name, n, nt, ev, rs in rows:
        vals = [v for v in ev["target"].values() if v is not None]
        best = max(vals) if vals else None
        cells = []
        for c in CANDIDATES:
            t, s = ev["target"].get(c), ev["cv"].get(c, {}).get("spearman")
            cells.append(
                f"{'-' if t is None else f'{t:.3f}':>5s}/{'-' if s is None else f'{s:.2f}'}"
            )
        rcells = []
        for r in rules:
            v = rs.get(r)
            if v is not None and best is not None:
                gaps[r].append(best - v)
            rcells.append(f"{'-' if v is None else f'{v:.3f}':>8s}")
        print(
            f"{name:34s} {n or '':>3} {nt:>3} "
            + " ".join(f"{c:>9s}" for c in cells)
            + f" | {best:.3f} | "
            + " ".join(rcells)
        )
        dump.append(
            {
                "setting": name,
                "n": n,
                "n_target": nt,
                "cv": ev["cv"],
                "target": ev["target"],
                "rules": rs,
                "best": best,
            }
        )
    print("cells: target Spearman / source CV Spearman; rules: target Spearman of the choice")
    for r in rules:
        g = np.array(gaps[r])
        print(
            f"rule {r:10s} gap to best single: mean {g.mean():.4f}  max {g.max():.4f}  "
            f"settings within 0.01: {int(np.sum(g <= 0.01))}/{g.size}"
        )
    if args.json:
        args.json.write_text(json.dumps(dump, indent=1, default=float))


if __name__ == "__main__":
    main()
