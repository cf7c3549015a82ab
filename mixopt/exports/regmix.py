"""``regmix``: RegMix's trainer YAML (sail-sg/regmix ``mixture_config``, read by
``model_training/pretrain/tinyllama.py``'s ``setup``): ``train: {train_<domain>: w}`` and
always ``valid: {valid_<domain>: w}`` (the reader deletes ``config["valid"]`` unconditionally,
so a file without it is a ``KeyError``): the domains the objective names, else every domain
(mixopt's default objective, the mean of the per-domain losses). The other keys the reader
takes are the script's globals: ``data_seed`` (the project's seed), ``global_batch_size`` in
sequences and ``max_step`` (the budget in whole steps), written when the project gives the
sequence length and the batch. A staged recommendation is one file per phase
(``phaseK-<name>/``); ``max_step`` is then where the phase ends, counted from the start of
training, since RegMix resumes (``--resume True``) from the previous phase's checkpoint and
counts steps from there."""

from __future__ import annotations

import math
from typing import Any

from mixopt.exports.spec import (
    ExportError,
    MixtureExport,
    objective_domains,
    rounded_weights,
    token_budget,
    yaml_text,
)

FORMAT = "regmix"
LABEL = "RegMix"
#: a staged recommendation: one config per phase (``phaseK-name/``)
STAGED: str | None = "per-phase"


def write(spec: MixtureExport, weights: dict[str, float]) -> dict[str, str]:
    config: dict[str, Any] = {"train": {f"train_{n}": w for n, w in weights.items()}}
    valid = objective_domains(spec) or {d["name"]: 1.0 for d in spec.domains}
    config["valid"] = {f"valid_{n}": w for n, w in rounded_weights(valid).items()}
    cons = spec.constraints or {}
    if cons.get("seed") is not None:
        config["data_seed"] = int(cons["seed"])
    config.update(_steps(spec))
    return {f"{spec.slug}-regmix.yaml": yaml_text(config)}


def _steps(spec: MixtureExport) -> dict[str, int]:
    """``global_batch_size`` (sequences) and ``max_step`` when the project gives the sequence
    length, the batch and a budget (RegMix recomputes its iterations only when
    ``global_batch_size`` is in the file, so the two go together); else nothing."""
    cons = spec.constraints or {}
    seq, batch = cons.get("sequence_length"), cons.get("global_batch_tokens")
    if not (seq and batch):
        return {}
    if int(batch) % int(seq):
        raise ExportError(
            f"RegMix's global_batch_size is in sequences: global_batch_tokens ({batch}) must be a "
            f"multiple of sequence_length ({seq})",
            "constraints.global_batch_tokens",
        )
    try:
        budget = token_budget(spec, "regmix")
    except ExportError:
        return {}
    end = int(spec.start_tokens) + int(budget)
    return {"global_batch_size": int(batch) // int(seq), "max_step": math.ceil(end / int(batch))}
