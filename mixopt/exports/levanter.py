"""``levanter``: the Levanter/Marin ``data:`` section (``LMMixtureDatasetConfig``:
``configs`` of ``train_urls`` and ``train_weights``, a dict, or for an online session or a
staged recommendation the staged ``[[step, weights], ...]`` form), with ``mixture_block_size``
and, when the budget is known, the ``trainer:`` keys that make it (``train_batch_size`` in
sequences, ``num_train_steps``).

Levanter's rule for stages (``levanter.data.mixture.MixtureDataset`` and
``rescale_mixture_schedule_for_batch_schedule``, stanford-crfm/levanter): a stage's ``step``
becomes the sequence index ``step x train_batch_size``, which must be a multiple of
``mixture_block_size`` (2048 by default), the first stage starts at 0 and the starts increase.
So a stage starts on a batch boundary (a whole step) whose sequence index is a whole number of
blocks: a multiple of ``block / gcd(block, batch)`` steps, the one nearest the phase's start in
tokens. A staged recommendation whose phase would start on the same step as the one before is
a 422 naming the phase; an online session's trajectory keeps, per aligned step, the weights of
its last version there.
"""

from __future__ import annotations

import math
from typing import Any

from mixopt.exports.spec import (
    ExportError,
    MixtureExport,
    constraint,
    raw_files,
    rounded_weights,
    token_budget,
    yaml_text,
)

FORMAT = "levanter"
LABEL = "Levanter"
#: a staged recommendation: the writer reads ``spec.phases`` itself (one file, the stages)
STAGED: str | None = "self"
#: Levanter's default ``LMMixtureDatasetConfig.mixture_block_size`` (written out explicitly)
BLOCK = 2048


def batch_sequences(spec: MixtureExport, why: str) -> int:
    """Levanter's ``train_batch_size``: ``global_batch_tokens / sequence_length``."""
    fmt = "levanter"
    seq = int(constraint(spec, "sequence_length", fmt, f"the sequence length ({why})"))
    batch = int(
        constraint(spec, "global_batch_tokens", fmt, f"the global batch size in tokens ({why})")
    )
    if seq <= 0 or batch <= 0 or batch % seq:
        raise ExportError(
            f"Levanter's batch is a whole number of sequences: global_batch_tokens ({batch}) must "
            f"be a positive multiple of sequence_length ({seq})",
            "constraints.global_batch_tokens",
        )
    return batch // seq


def stage_steps(spec: MixtureExport) -> list[tuple[int, dict[str, float]]]:
    """The stages as ``(step, weights)`` on the steps Levanter accepts (module docstring)."""
    why = "stages start on a step whose sequence index is a multiple of mixture_block_size"
    b = batch_sequences(spec, why)
    every = BLOCK // math.gcd(BLOCK, b)  # steps between two allowed stage starts
    batch_tokens = b * int(spec.constraints["sequence_length"])
    out: list[tuple[int, dict[str, float]]] = []
    if spec.phases:
        for k, p in enumerate(spec.phases):
            start = float(p.get("start_tokens") or 0.0)
            step = 0 if k == 0 else int(round(start / batch_tokens / every)) * every
            if out and step <= out[-1][0]:
                raise ExportError(
                    f"phase {k} ({p['name']!r}) would start on step {step}, as the phase before: "
                    f"Levanter starts a stage every {every} steps ({every * batch_tokens} tokens, "
                    f"mixture_block_size {BLOCK} sequences / {b} a batch), so a phase must span "
                    "at least that many tokens",
                    f"phases[{k}].tokens",
                )
            out.append((step, dict(p["mixture_by_domain"])))
        return out
    for step, w in spec.schedule or []:
        s = int(round(int(step) / every)) * every
        if out and s == out[-1][0]:
            out[-1] = (s, dict(w))  # the last version in force at that step
        else:
            out.append((s, dict(w)))
    return out


def write(spec: MixtureExport, weights: dict[str, float]) -> dict[str, str]:
    fmt = "levanter"
    staged = bool(spec.phases or spec.schedule)
    stages = [
        (step, rounded_weights({n: float(w.get(n, 0.0)) for n in weights}))
        for step, w in (stage_steps(spec) if staged else [])
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
    out: dict[str, Any] = {
        "data": {
            "configs": configs,
            "train_weights": train_weights,
            "mixture_block_size": BLOCK,
        }
    }
    trainer = _trainer(spec)
    if trainer:
        out["trainer"] = trainer
    return {"levanter_data.yaml": yaml_text(out)}


def _trainer(spec: MixtureExport) -> dict[str, int]:
    """``train_batch_size`` and ``num_train_steps`` (the budget, rounded up to whole steps) when
    the project gives the batch and the budget is known; else nothing (Levanter's own)."""
    cons = spec.constraints or {}
    if not (cons.get("sequence_length") and cons.get("global_batch_tokens")):
        return {}
    try:
        budget = (
            sum(int(p["tokens"]) for p in spec.phases)
            if spec.phases
            else token_budget(spec, "levanter")
        )
    except ExportError:
        return {}
    b = batch_sequences(spec, "the trainer's batch")
    batch_tokens = b * int(cons["sequence_length"])
    return {"train_batch_size": b, "num_train_steps": math.ceil(budget / batch_tokens)}
