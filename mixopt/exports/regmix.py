"""``regmix``: RegMix's trainer YAML (sail-sg/regmix ``mixture_config``: ``train:
{train_<domain>: w}``, ``valid: {valid_<domain>: w}`` when the objective names domains)."""

from __future__ import annotations

from typing import Any

from mixopt.exports.spec import MixtureExport, objective_domains, rounded_weights, yaml_text

FORMAT = "regmix"
LABEL = "RegMix"
#: a staged recommendation: the writer reads ``spec.phases`` itself, if at all
STAGED: str | None = None


def write(spec: MixtureExport, weights: dict[str, float]) -> dict[str, str]:
    config: dict[str, Any] = {"train": {f"train_{n}": w for n, w in weights.items()}}
    valid = objective_domains(spec)
    if valid:
        config["valid"] = {f"valid_{n}": w for n, w in rounded_weights(valid).items()}
    return {f"{spec.slug}-regmix.yaml": yaml_text(config)}
