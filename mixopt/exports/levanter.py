"""``levanter``: the Levanter/Marin ``data:`` section (``LMMixtureDatasetConfig``:
``configs`` of ``train_urls`` and ``train_weights``, a dict, or for an online session or a
staged recommendation the staged ``[[step, weights], ...]`` form), with ``mixture_block_size``
and, when the budget is known, the ``trainer:`` keys that make it (``train_batch_size`` in
sequences, ``num_train_steps``).

Levanter's rule for stages (``levanter.data.mixture.MixtureDataset`` and
``rescale_mixture_schedule_for_batch_schedule``, stanford-crfm/levanter): a stage's ``step``
becomes the sequence index ``step x train_batch_size``, which must be a multiple of
``mixture_block_size`` (2048 by default, below 2**16), the first stage starts at 0 and the
starts increase. Each stage starts on a batch boundary, the step nearest its start in tokens,
and the file's ``mixture_block_size`` is the largest block of at most 2048 sequences that
divides every start's sequence index; when that block would be under 512 sequences (each
domain's share of a block is drawn in whole sequences), the block stays 2048 and the stages
move to the nearest multiple of ``2048 / gcd(2048, batch)`` steps. A staged recommendation
whose phase would then start on the same step as the one before is a 422 naming the phase;
an online session's trajectory keeps, per step, the weights of its last version there.
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
#: Levanter's default ``LMMixtureDatasetConfig.mixture_block_size``, the largest written
BLOCK = 2048
#: the smallest block written (a block draws each domain's share in whole sequences)
MIN_BLOCK = 512


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


def _largest_divisor(n: int, at_most: int) -> int:
    """The largest divisor of ``n`` (> 0) that is at most ``at_most``."""
    best = 1
    for d in range(1, math.isqrt(n) + 1):
        if n % d == 0:
            for x in (d, n // d):
                if best < x <= at_most:
                    best = x
    return best


def stage_steps(spec: MixtureExport) -> tuple[list[tuple[int, dict[str, float]]], int]:
    """The stages as ``(step, weights)`` and the ``mixture_block_size`` that lets Levanter take
    them (module docstring): each stage on its own nearest step when the largest block of at
    most :data:`BLOCK` sequences that divides every start is at least :data:`MIN_BLOCK` (the
    weights' resolution in a block); else on the nearest multiple of ``BLOCK / gcd(BLOCK,
    batch)`` steps with the default block."""
    why = "stages start on a step whose sequence index is a multiple of mixture_block_size"
    b = batch_sequences(spec, why)
    batch_tokens = b * int(spec.constraints["sequence_length"])
    wanted: list[float]  # where each stage would start, in (fractional) steps
    if spec.phases:
        wanted = [
            0.0 if k == 0 else float(p.get("start_tokens") or 0.0) / batch_tokens
            for k, p in enumerate(spec.phases)
        ]
        exact = [int(round(x)) for x in wanted]
    else:
        wanted = [float(step) for step, _ in spec.schedule or []]
        exact = [int(step) for step, _ in spec.schedule or []]
    starts = math.gcd(*[x * b for x in exact if x > 0]) if any(exact) else BLOCK
    block = _largest_divisor(starts, BLOCK)
    if block >= MIN_BLOCK and len(set(exact)) == len(exact):
        steps = exact
    else:
        every = BLOCK // math.gcd(BLOCK, b)  # steps between two allowed stage starts
        block = BLOCK
        steps = [int(round(x / every)) * every for x in wanted]
    weights = (
        [dict(p["mixture_by_domain"]) for p in spec.phases]
        if spec.phases
        else [dict(w) for _, w in spec.schedule or []]
    )
    out: list[tuple[int, dict[str, float]]] = []
    for k, (step, w) in enumerate(zip(steps, weights, strict=True)):
        if out and step <= out[-1][0]:
            if spec.phases:
                raise ExportError(
                    f"phase {k} ({spec.phases[k]['name']!r}) would start on step {step}, as the "
                    f"phase before: Levanter starts a stage on a whole mixture block "
                    f"({block} sequences, {b} a step), so a phase must span at least "
                    f"{block // math.gcd(block, b) * batch_tokens} tokens",
                    f"phases[{k}].tokens",
                )
            out[-1] = (step, w)  # the last version in force at that step
        else:
            out.append((step, w))
    return out, block


def write(spec: MixtureExport, weights: dict[str, float]) -> dict[str, str]:
    fmt = "levanter"
    staged, block = stage_steps(spec) if spec.phases or spec.schedule else ([], BLOCK)
    stages = [
        (step, rounded_weights({n: float(w.get(n, 0.0)) for n in weights})) for step, w in staged
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
            "mixture_block_size": block,
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
