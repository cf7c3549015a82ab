"""``levanter``: the Levanter/Marin ``data:`` section (``LMMixtureDatasetConfig``:
``configs`` of ``train_urls`` and ``train_weights``, a dict, or for an online session or a
staged recommendation the staged ``[[step, weights], ...]`` form)."""

from __future__ import annotations

from typing import Any

from mixopt.exports.spec import MixtureExport, raw_files, rounded_weights, yaml_text

FORMAT = "levanter"
LABEL = "Levanter"
#: a staged recommendation: one file, the phases as a step schedule
STAGED: str | None = "schedule"


def write(spec: MixtureExport, weights: dict[str, float]) -> dict[str, str]:
    fmt = "levanter"
    stages = [
        (int(step), rounded_weights({n: float(w.get(n, 0.0)) for n in weights}))
        for step, w in spec.schedule or []
    ]
    # Levanter wants the same names in configs and train_weights: every domain with a weight
    # somewhere (it needs files), and zero-weight domains only when they declare files
    used = {n for n, w in weights.items() if w > 0} | {
        n for _, w in stages for n, x in w.items() if x > 0
    }
    configs = {}
    for d in spec.domains:
        has_files = bool(
            (d.get("trainer_paths") or {}).get(fmt) or (d.get("source") or {}).get("path")
        )
        if d["name"] in used or has_files:
            configs[d["name"]] = {"train_urls": raw_files(spec, d, fmt)[0]}
    train_weights: Any
    if stages:
        if stages[0][0] != 0:
            stages.insert(0, (0, stages[0][1]))
        train_weights = [[step, {n: w[n] for n in configs}] for step, w in stages]
    else:
        train_weights = {n: weights[n] for n in configs}
    return {
        "levanter_data.yaml": yaml_text(
            {"data": {"configs": configs, "train_weights": train_weights}}
        )
    }
