"""``megatron``: ``data_args.txt`` for ``--data-args-path`` (Megatron-LM splits it on
whitespace and reads ``weight prefix`` pairs with ``megatron.core.datasets.utils.
get_blend_from_list``) and ``per_split_data_args.json`` for ``--per-split-data-args-path``
(``{"train": [...], "valid": ..., "test": ...}``; valid/test from ``trainer_paths[
"megatron:valid"]`` and ``["megatron:test"]`` when declared, else null). Prefixes are the
``..._text_document`` stems.

Megatron does not enforce epoch caps: its blended dataset draws each prefix's share of the
samples and repeats a prefix as often as that takes. ``MEGATRON_NOTES.txt`` (and the API's
``X-Mixopt-Notes`` header) says so, with the expected repetition of each domain, ``weight x
budget / tokens`` summed over the phases (:func:`mixopt.exports.spec.epoch_report`), beside
its cap. ``data_args.txt`` cannot carry the note: Megatron-LM reads it with
``get_blend_from_list(f.read().split())``, so a comment would be read as weights and prefixes."""

from __future__ import annotations

import json
import re
from typing import Any

from mixopt.exports.spec import (
    ExportError,
    MixtureExport,
    batch_phases,
    epoch_report,
    field_of,
    trainer_paths,
    weighted_domains,
)

FORMAT = "megatron"
LABEL = "Megatron"
#: a staged recommendation: one file set per phase (``phaseK-name/``)
STAGED: str | None = "per-phase"
#: where :func:`notes` go in the bundle (beside ``data_args.txt``, which cannot hold comments)
NOTES_FILE = "MEGATRON_NOTES.txt"


def notes(spec: MixtureExport) -> list[str]:
    """Megatron repeats a domain as often as its weight needs (no epoch caps): the expected
    repetition of each domain (:func:`~mixopt.exports.spec.epoch_report`) and its cap."""
    head = (
        "Megatron does not enforce epoch caps: it repeats each domain as often as its weight "
        "needs over the training."
    )
    try:
        rows = epoch_report(spec, "megatron")
    except ExportError:
        return [
            head + " The expected repetition of a domain is weight x training tokens / its "
            "tokens (set constraints.target_tokens for the figures)."
        ]
    lines = [
        head
        + " Expected repetition per domain (weight x training tokens / domain tokens"
        + (f", summed over {len(spec.phases)} phases" if spec.phases else "")
        + "), against its cap:"
    ]
    for r in rows:
        e = "unknown (no token count)" if r["epochs"] is None else f"{r['epochs']:.4g} epochs"
        cap = "no cap" if r["cap"] is None else f"cap {r['cap']:g}"
        flag = "  EXCEEDS THE CAP" if r["over"] else ""
        lines.append(f"  {r['name']!r}: {e}, {cap}{flag}")
    return ["\n".join(lines), *_phase_notes(spec)]


def _phase_notes(spec: MixtureExport) -> list[str]:
    """A staged export: how long to train on each phase's ``data_args.txt`` (its tokens, on
    whole batches, as ``--train-samples`` when the sequence length is known)."""
    if not spec.phases:
        return []
    seq = (spec.constraints or {}).get("sequence_length")
    lines = ["Phases: train on each phase's data_args.txt for its tokens, in order:"]
    for k, p in enumerate(batch_phases(spec)):
        samples = f" (--train-samples {int(p['tokens']) // int(seq)})" if seq else ""
        lines.append(
            f"  phase{k}-{p['name']}/: {int(p['tokens'])} tokens from token "
            f"{int(p['start_tokens'])}{samples}"
        )
    return ["\n".join(lines)]


def prefix(spec: MixtureExport, d: dict[str, Any], key: str) -> str:
    f = field_of(spec, d["name"])
    paths = trainer_paths(spec, d, key)
    if len(paths) != 1:
        raise ExportError(
            f"Megatron weights each prefix on its own: give domain {d['name']!r} one prefix "
            "(merge its shards with tools/merge_datasets.py)",
            f"{f}.trainer_paths.{key}",
        )
    prefix = paths[0]
    if re.search(r"\s", prefix):
        raise ExportError(
            f"Megatron's --data-args-path is split on whitespace, so the prefix {prefix!r} of "
            f"domain {d['name']!r} cannot be written: rename it without spaces",
            f"{f}.trainer_paths.{key}",
        )
    if re.search(r"\.(bin|idx|jsonl?|parquet|txt)$", prefix):
        raise ExportError(
            f"Megatron reads a preprocessed prefix (the path without .bin/.idx, e.g. "
            f"..._text_document), not {prefix!r}",
            f"{f}.trainer_paths.{key}",
        )
    return prefix


def write(spec: MixtureExport, weights: dict[str, float]) -> dict[str, str]:
    used = weighted_domains(spec, weights)
    blend = [x for d, w in used for x in (repr(w), prefix(spec, d, "megatron"))]
    per_split: dict[str, list[str] | None] = {"train": blend}
    for split in ("valid", "test"):
        # held-out prefixes, when every weighted domain declares one: the same mixture
        key = f"megatron:{split}"
        declared = [bool((d.get("trainer_paths") or {}).get(key)) for d, _ in used]
        if any(declared) and not all(declared):
            missing = next(d for (d, _), ok in zip(used, declared, strict=True) if not ok)
            raise ExportError(
                f"domain {missing['name']!r} has no {key} prefix while others do",
                f"{field_of(spec, missing['name'])}.trainer_paths.{key}",
            )
        per_split[split] = (
            [x for d, w in used for x in (repr(w), prefix(spec, d, key))] if all(declared) else None
        )
    return {
        "data_args.txt": " ".join(blend) + "\n",
        "per_split_data_args.json": json.dumps(per_split, indent=2, ensure_ascii=False) + "\n",
    }
