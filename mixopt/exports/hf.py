"""``hf``: a self-contained Python script for Hugging Face ``datasets``: one
``load_dataset(builder, data_files=...)`` per domain, ``interleave_datasets`` with per-example
probabilities ``p_i ∝ w_i / (tokens_i / documents_i)`` (mixopt's weights are token shares), a
seed, each domain capped at ``documents_i x max_epochs_i`` examples and the stream cut at the
token budget. A staged recommendation is one script per phase (``phaseK-<name>/hf_mixture.py``):
each with its phase's mixture, tokens and share of the caps, and each domain's stream starting
after the examples the earlier phases are expected to read (``skip``), so the phases read on
through the files instead of starting them again."""

from __future__ import annotations

import json
import math
from typing import Any

from mixopt.exports.spec import (
    ExportError,
    MixtureExport,
    constraint,
    field_of,
    max_epochs,
    raw_files,
    token_budget,
    weighted_domains,
)

FORMAT = "hf"
LABEL = "HF datasets"
#: a staged recommendation: one script per phase (``phaseK-name/``)
STAGED: str | None = "per-phase"


HF_SCRIPT = '''"""Interleave the domains with Hugging Face datasets in the mixture \
exported by mixopt.

    python %(name)s                    # prints the first samples; import it to train on MIXED

Needs Hugging Face datasets >= 4 (IterableDataset.repeat, usable with split_dataset_by_node).

mixopt's weights are token shares; interleave_datasets draws examples, so each domain's
probability is its weight divided by its mean tokens per document. Each domain is repeated at
most its epoch cap (documents x max_epochs examples, read in order), the stream stops when a
domain reaches its cap ("first_exhausted") and is cut at the token budget. In a staged export
(one script per phase), a domain's stream skips what the earlier phases read ("skip").
"""

import json

from datasets import interleave_datasets, load_dataset

SPEC = json.loads(%(spec)s)


def domain_stream(d):
    ds = load_dataset(d["builder"], data_files=d["data_files"], split="train", streaming=True)
    ds = ds.select_columns([d["text_field"]])
    if d["text_field"] != "text":
        ds = ds.rename_column(d["text_field"], "text")
    if d["max_examples"] is None:
        return ds.skip(d["skip"]) if d["skip"] else ds
    return ds.repeat(d["repeats"]).skip(d["skip"]).take(d["max_examples"])


def build():
    streams = [domain_stream(d) for d in SPEC["domains"]]
    mixed = interleave_datasets(streams, probabilities=[d["probability"] for d in SPEC["domains"]],
                                seed=SPEC["seed"], stopping_strategy="first_exhausted")
    return mixed.take(SPEC["examples"])


MIXED = build()

if __name__ == "__main__":
    for i, example in enumerate(MIXED):
        if i == 5:
            break
        print(json.dumps(example)[:200])
'''


def hf_plan(spec: MixtureExport, weights: dict[str, float]) -> dict[str, Any]:
    """The numbers in the HF script: per-example probabilities from token shares, example
    caps from the epoch caps and the number of examples that makes the token budget."""
    fmt = "hf"
    budget = token_budget(spec, fmt)
    rows, per_example = [], []
    for d, w in weighted_domains(spec, weights):
        f = field_of(spec, d["name"])
        if not d.get("token_count"):
            raise ExportError(
                f"the hf export needs the token count of domain {d['name']!r} to turn token shares "
                "into per-example probabilities",
                f"{f}.token_count",
            )
        if not d.get("documents"):
            raise ExportError(
                f"the hf export needs the document count of domain {d['name']!r} "
                "(per-example probabilities = weight / mean tokens per document)",
                f"{f}.documents",
            )
        files, builder = raw_files(spec, d, fmt)
        mean_tokens = float(d["token_count"]) / float(d["documents"])
        epochs = max_epochs(spec, d["name"])
        # examples of this domain the earlier phases read (a staged export's later phase)
        skip = int(round(float((spec.read_before or {}).get(d["name"], 0.0)) / mean_tokens))
        max_examples = None if epochs is None else int(math.floor(d["documents"] * epochs))
        rows.append(
            {
                "name": d["name"],
                "builder": builder,
                "data_files": files,
                "text_field": (d.get("source") or {}).get("text_field") or "text",
                "weight": w,
                "mean_tokens": mean_tokens,
                "max_epochs": epochs,
                "max_examples": max_examples,
                "skip": skip,
                "repeats": None
                if max_examples is None
                else max(1, math.ceil((skip + max_examples) / int(d["documents"]))),
            }
        )
        per_example.append(w / mean_tokens)
    total = math.fsum(per_example)
    for row, p in zip(rows, per_example, strict=True):
        row["probability"] = p / total
    # tokens per example drawn = sum_i p_i m_i = 1 / sum_i (w_i / m_i)
    # (p_i = (w_i / m_i) / sum_j w_j / m_j)
    examples = int(round(budget * total))
    seed = int(constraint(spec, "seed", fmt, "a seed"))
    return {"domains": rows, "seed": seed, "tokens": budget, "examples": examples}


def write(spec: MixtureExport, weights: dict[str, float]) -> dict[str, str]:
    name = "hf_mixture.py"
    plan = hf_plan(spec, weights)
    return {name: HF_SCRIPT % {"name": name, "spec": repr(json.dumps(plan, ensure_ascii=False))}}
