"""A mixture written out for the trainers that consume it, and for the tools that propose one.

One module, pure serialisation (no database, no HTTP): the API routes
(``GET .../recommendations/{id}/export``, ``.../baselines/{name}/export``,
``.../online-sessions/{id}/export``) and the dashboard's buttons all call :func:`render`.
Every file is produced by a serialiser (``json``, ``yaml.safe_dump``, Python ``repr`` of a
JSON string) from data, never by pasting a user's name or path into code, so a name such as
``"; rm -rf ~ #`` or ``$(touch x)`` stays a string in every output.

Formats (each checked against the library it targets, see ``tests/exports``):

``json``
    mixopt's own: the mixture with where it came from (fit, estimator, prediction), the target
    scale and the constraints.
``olmo-core``
    ``olmo_core_mixture.yaml``, the fields of ``olmo_core.data.source_mixture.
    SourceMixtureDatasetConfig`` (ai2-olmo-core 3.x: ``source_list.sources[]`` with
    ``source_name``, ``target_ratio``, ``paths`` (tokenised ``.npy``), ``max_repetition_ratio``
    >= 1 and ``max_source_fraction`` <= 1 for the epoch cap; ``requested_tokens``,
    ``global_batch_size`` in tokens, ``seed``), loaded by ``SourceMixtureDatasetConfig.from_yaml``,
    plus ``olmo_core_mixture.py`` that loads, validates and builds it.
``megatron``
    ``data_args.txt`` for ``--data-args-path`` (Megatron-LM splits it on whitespace and reads
    ``weight prefix`` pairs with ``megatron.core.datasets.utils.get_blend_from_list``) and
    ``per_split_data_args.json`` for ``--per-split-data-args-path`` (``{"train": [...],
    "valid": ..., "test": ...}``; valid/test from ``trainer_paths["megatron:valid"]`` and
    ``["megatron:test"]`` when declared, else null). Prefixes are the ``..._text_document`` stems.
``hf``
    a self-contained Python script for Hugging Face ``datasets``: one
    ``load_dataset(builder, data_files=...)`` per domain, ``interleave_datasets`` with
    per-example probabilities ``p_i ∝ w_i / (tokens_i / documents_i)`` (mixopt's weights are
    token shares), a seed, each domain capped at ``documents_i x max_epochs_i`` examples and the
    stream cut at the token budget.
``levanter``
    Levanter/Marin ``data:`` section (``LMMixtureDatasetConfig``: ``configs`` of
    ``train_urls`` and ``train_weights``, a dict, or for an online session the staged
    ``[[step, weights], ...]`` form).
``regmix``
    RegMix's trainer YAML (sail-sg/regmix ``mixture_config``: ``train: {train_<domain>: w}``,
    ``valid: {valid_<domain>: w}`` when the objective names domains).
``olmix``
    olmix's proposal file (``olmix/fit``'s ``*_optimal.json``: ``[{"domain", "weight"}]``).

Whatever a trainer needs and the project does not say (tokenised paths, token budget,
sequence length, batch size, seed, document counts) is an :class:`ExportError` naming the
field, which the API answers with a 422; no value is made up.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import zipfile
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

from app.services.errors import Invalid

FORMATS = ("json", "olmo-core", "megatron", "hf", "levanter", "regmix", "olmix")
LABELS = {"json": "JSON", "olmo-core": "OLMo-core", "megatron": "Megatron", "hf": "HF datasets",
          "levanter": "Levanter", "regmix": "RegMix", "olmix": "olmix"}
_MEDIA = {".json": "application/json", ".yaml": "application/yaml", ".py": "text/x-python",
          ".txt": "text/plain"}


class ExportError(Invalid):
    """Something a format needs is missing or unusable (a 422); ``field`` names where to fix it."""

    def __init__(self, message: str, field: str):
        super().__init__(message, field=field)


@dataclass
class MixtureExport:
    """What is exported: the weights and everything the trainers read besides them.

    ``domains`` are the project's domains in order, as dicts with ``name``, ``token_count``,
    ``documents``, ``source`` and ``trainer_paths``. ``constraints`` is the project's
    constraints dict; ``scale`` the recommendation's target scale (``model_params``,
    ``train_tokens``, ``train_steps``). ``schedule`` is an online session's trajectory
    ``[(step, weights), ...]``; ``origin`` describes where the mixture came from (JSON only).
    """

    mixture: dict[str, float]
    domains: list[dict[str, Any]]
    constraints: dict[str, Any] = field(default_factory=dict)
    scale: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, Any] = field(default_factory=dict)
    objective: dict[str, float] | None = None
    schedule: list[tuple[int, dict[str, float]]] | None = None
    slug: str = "mixture"
    #: a staged recommendation's phases (``name``, ``tokens``, ``start_tokens``, ``mixture_by_domain``)
    phases: list[dict[str, Any]] | None = None


@dataclass
class Bundle:
    """The files of one export: ``{filename: text}`` in the order a person reads them."""

    files: dict[str, str]

    def media_type(self, name: str) -> str:
        return _MEDIA.get(os.path.splitext(name)[1], "text/plain")

    def zip_bytes(self) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, text in self.files.items():
                info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))  # byte-identical re-exports
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, text)
        return buf.getvalue()


def rounded_weights(mixture: dict[str, float], digits: int = 6) -> dict[str, float]:
    """Weights rounded to ``digits`` decimals that still sum to exactly 1 at that precision
    (largest-remainder rounding), so trainers that check the sum accept them."""
    if not mixture:
        return {}
    scale = 10**digits
    total = math.fsum(mixture.values())
    if not total > 0 or not math.isfinite(total):
        raise ValueError("the mixture's weights sum to zero")
    exact = {k: v / total * scale for k, v in mixture.items()}
    floors = {k: math.floor(x) for k, x in exact.items()}
    missing = scale - sum(floors.values())
    for k in sorted(exact, key=lambda k: exact[k] - floors[k], reverse=True)[:missing]:
        floors[k] += 1
    return {k: floors[k] / scale for k in mixture}


# -- what the project says ------------------------------------------------------------------
def _weights(spec: MixtureExport) -> dict[str, float]:
    names = [d["name"] for d in spec.domains]
    unknown = sorted(set(spec.mixture) - set(names))
    if unknown:
        raise ExportError(f"the mixture names domains the project does not have: {unknown}", "mixture")
    return rounded_weights({n: float(spec.mixture.get(n, 0.0)) for n in names})


def _field_of(spec: MixtureExport, name: str) -> str:
    i = next(i for i, d in enumerate(spec.domains) if d["name"] == name)
    return f"domains[{i}]"


def _used(spec: MixtureExport, weights: dict[str, float]) -> list[tuple[dict[str, Any], float]]:
    by_name = {d["name"]: d for d in spec.domains}
    return [(by_name[n], w) for n, w in weights.items() if w > 0]


def _constraint(spec: MixtureExport, key: str, fmt: str, what: str) -> Any:
    value = (spec.constraints or {}).get(key)
    if value is None:
        raise ExportError(f"the {fmt} export needs {what}: set constraints.{key} on the project", f"constraints.{key}")
    return value


def token_budget(spec: MixtureExport, fmt: str) -> int:
    """Tokens to train on: the recommendation's target scale (``train_tokens``, or
    ``train_steps`` x ``constraints.global_batch_tokens``), else ``constraints.target_tokens``."""
    scale, cons = spec.scale or {}, spec.constraints or {}
    if scale.get("train_tokens"):
        return int(scale["train_tokens"])
    if scale.get("train_steps") and cons.get("global_batch_tokens"):
        return int(scale["train_steps"]) * int(cons["global_batch_tokens"])
    if cons.get("target_tokens"):
        return int(cons["target_tokens"])
    raise ExportError(f"the {fmt} export needs a token budget: the recommendation's target_scale.train_tokens "
                      "(or train_steps with constraints.global_batch_tokens) or constraints.target_tokens",
                      "constraints.target_tokens")


def max_epochs(spec: MixtureExport, name: str) -> float | None:
    """The domain's repetition cap (``max_epochs_per_domain``, else ``max_epochs``), or None."""
    cons = spec.constraints or {}
    value = (cons.get("max_epochs_per_domain") or {}).get(name, cons.get("max_epochs"))
    return None if value is None else float(value)


def phase_epoch_caps(spec: MixtureExport) -> list[dict[str, float]]:
    """Each phase's share of the project's epoch cap, for trainers that cap a source per config
    (OLMo-core's ``max_repetition_ratio`` / ``max_source_fraction``, one config per phase).

    The cap ``R_i`` is counted across phases (``sum_p w_{p,i} tokens_p <= R_i tokens_i``), so
    writing ``R_i`` into every phase's config would let the phases together repeat a domain up
    to ``P x R_i`` times. Phase ``p`` gets ``R_i x w_{p,i} tokens_p / sum_q w_{q,i} tokens_q``:
    the caps add up to ``R_i`` and each is at least what the phase's mixture needs (rounded up
    at 1e-6, so the trainer's integer token counts never fall below the need).
    """
    phases = spec.phases or []
    used = {d["name"]: sum(float(p["mixture_by_domain"].get(d["name"], 0.0)) * float(p["tokens"]) for p in phases)
            for d in spec.domains}
    out = []
    for p in phases:
        caps = {}
        for name, total in used.items():
            cap, share = max_epochs(spec, name), float(p["mixture_by_domain"].get(name, 0.0)) * float(p["tokens"])
            if cap is not None and math.isfinite(cap) and total > 0 and share > 0:
                caps[name] = math.ceil(cap * share / total * 1e6) / 1e6
        out.append(caps)
    return out


def _trainer_paths(spec: MixtureExport, domain: dict[str, Any], fmt: str) -> list[str]:
    paths = (domain.get("trainer_paths") or {}).get(fmt) or []
    if not paths:
        f = _field_of(spec, domain["name"])
        raise ExportError(f"domain {domain['name']!r} has no {fmt} paths: declare {f}.trainer_paths[{fmt!r}] "
                          f"(the files {fmt} reads)", f"{f}.trainer_paths.{fmt}")
    return [str(p) for p in paths]


_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".txt": "text",
             ".jsonl.gz": "json", ".json.gz": "json", ".txt.gz": "text", ".jsonl.zst": "json"}


def _raw_files(spec: MixtureExport, domain: dict[str, Any], fmt: str) -> tuple[list[str], str]:
    """The raw text files a trainer that tokenises itself reads (``trainer_paths[fmt]``, else
    the domain's ``source.path``), and the ``datasets`` builder for them."""
    src = domain.get("source") or {}
    f = _field_of(spec, domain["name"])
    paths = [str(p) for p in (domain.get("trainer_paths") or {}).get(fmt) or []]
    if not paths:
        if not src.get("path"):
            raise ExportError(f"domain {domain['name']!r} has neither trainer_paths[{fmt!r}] nor a source path",
                              f"{f}.trainer_paths.{fmt}")
        paths = [str(src["path"])]
    declared = {"jsonl": "json", "parquet": "parquet", "txt": "text"}.get(src.get("format") or "auto")
    builders = set()
    out = []
    for p in paths:
        ext = next((e for e in sorted(_BUILDERS, key=len, reverse=True) if p.lower().endswith(e)), None)
        if ext is None:
            if declared is None:
                raise ExportError(f"cannot tell the file type of {p!r} (domain {domain['name']!r}): give files "
                                  f"or globs ending in .jsonl/.parquet/.txt, or set {f}.source.format",
                                  f"{f}.trainer_paths.{fmt}")
            # a directory: every file of the declared type under it
            ext = {"json": ".jsonl", "parquet": ".parquet", "text": ".txt"}[declared]
            p = p.rstrip("/") + "/**/*" + ext
        builders.add(_BUILDERS[ext])
        out.append(p)
    if len(builders) > 1:
        raise ExportError(f"domain {domain['name']!r} mixes file types {sorted(builders)}", f"{f}.trainer_paths.{fmt}")
    return out, builders.pop()


def _objective_domains(spec: MixtureExport) -> dict[str, float]:
    """The objective's weights per domain, when every objective metric names a domain
    (``<d>``, ``val_loss/<d>``, ``<d>_val_loss``, ``metric/<d>_val_loss``)."""
    names = {d["name"] for d in spec.domains}
    out: dict[str, float] = {}
    for metric, w in (spec.objective or {}).items():
        m = re.sub(r"^(metric/|val_loss/|valid_)", "", metric)
        m = re.sub(r"_val_loss$", "", m)
        if m not in names:
            return {}
        out[m] = out.get(m, 0.0) + float(w)
    return out


# -- the formats ----------------------------------------------------------------------------
def _json(spec: MixtureExport, weights: dict[str, float]) -> dict[str, str]:
    body = {"format": "mixopt.mixture/1", "mixture": weights, "domains": [d["name"] for d in spec.domains],
            "origin": spec.origin, "scale": spec.scale, "constraints": spec.constraints}
    if spec.schedule:
        body["schedule"] = [{"step": s, "mixture": rounded_weights(w)} for s, w in spec.schedule]
    if spec.phases:
        body["phases"] = [{"name": p["name"], "tokens": p["tokens"], "start_tokens": p["start_tokens"],
                           "mixture": rounded_weights(p["mixture_by_domain"])} for p in spec.phases]
    from mixopt.mixing.hierarchy import group_totals

    totals = group_totals(weights, {d["name"]: d["group"] for d in spec.domains if d.get("group")})
    if totals:
        body["group_totals"] = {g: round(t, 6) for g, t in totals.items()}
    return {f"{spec.slug}.json": json.dumps(body, indent=2, ensure_ascii=False) + "\n"}


def _yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1000)


OLMO_CORE_SCRIPT = '''"""Build the mixture exported by mixopt with OLMo-core (ai2-olmo-core >= 3).

    python olmo_core_mixture.py DTYPE      # DTYPE: the dtype your .npy token files use, e.g. uint32

The sources, ratios, repetition caps, token budget, batch size and seed are in
olmo_core_mixture.yaml next to this file; to train, pass the config as
NumpyFSLDatasetConfig.from_src_mix(config, ...) in your OLMo-core training script.
"""

import json
import sys
from pathlib import Path

from olmo_core.data.source_mixture import SourceMixtureDatasetConfig

HERE = Path(__file__).resolve().parent
SEQUENCE_LENGTH = json.loads(%(seq)s)

config = SourceMixtureDatasetConfig.from_yaml(str(HERE / "olmo_core_mixture.yaml"))
config.validate()

if __name__ == "__main__":
    import numpy as np

    if len(sys.argv) != 2:
        sys.exit("usage: python olmo_core_mixture.py DTYPE   (the dtype of your .npy token files)")
    mixture = config.build(npdtype=np.dtype(sys.argv[1]).type, sequence_length=SEQUENCE_LENGTH)
    for source in mixture.sources:
        print(source.name, sum(p.tokens for p in source.path_tokens))
'''


def _olmo_core(spec: MixtureExport, weights: dict[str, float]) -> dict[str, str]:
    fmt = "olmo-core"
    sources = []
    for d, w in _used(spec, weights):
        entry: dict[str, Any] = {"source_name": d["name"], "target_ratio": w, "paths": _trainer_paths(spec, d, fmt)}
        epochs = max_epochs(spec, d["name"])
        if epochs is not None:
            # OLMo-core caps a source at population x max_source_fraction x max_repetition_ratio
            if epochs >= 1:
                entry["max_repetition_ratio"] = epochs
            else:
                entry["max_source_fraction"] = epochs
        sources.append(entry)
    seq = int(_constraint(spec, "sequence_length", fmt, "the sequence length"))
    batch = int(_constraint(spec, "global_batch_tokens", fmt, "the global batch size in tokens"))
    if batch % seq:
        raise ExportError(f"OLMo-core needs global_batch_tokens ({batch}) to be a multiple of sequence_length ({seq})",
                          "constraints.global_batch_tokens")
    config = {"source_list": {"sources": sources}, "requested_tokens": token_budget(spec, fmt),
              "global_batch_size": batch, "seed": int(_constraint(spec, "seed", fmt, "a seed"))}
    script = OLMO_CORE_SCRIPT % {"seq": repr(json.dumps(seq))}
    return {"olmo_core_mixture.yaml": _yaml(config), "olmo_core_mixture.py": script}


def _megatron_prefix(spec: MixtureExport, d: dict[str, Any], key: str) -> str:
    f = _field_of(spec, d["name"])
    paths = _trainer_paths(spec, d, key)
    if len(paths) != 1:
        raise ExportError(f"Megatron weights each prefix on its own: give domain {d['name']!r} one prefix "
                          "(merge its shards with tools/merge_datasets.py)", f"{f}.trainer_paths.{key}")
    prefix = paths[0]
    if re.search(r"\s", prefix):
        raise ExportError(f"Megatron's --data-args-path is split on whitespace, so the prefix {prefix!r} of "
                          f"domain {d['name']!r} cannot be written: rename it without spaces",
                          f"{f}.trainer_paths.{key}")
    if re.search(r"\.(bin|idx|jsonl?|parquet|txt)$", prefix):
        raise ExportError(f"Megatron reads a preprocessed prefix (the path without .bin/.idx, e.g. "
                          f"..._text_document), not {prefix!r}", f"{f}.trainer_paths.{key}")
    return prefix


def _megatron(spec: MixtureExport, weights: dict[str, float]) -> dict[str, str]:
    used = _used(spec, weights)
    blend = [x for d, w in used for x in (repr(w), _megatron_prefix(spec, d, "megatron"))]
    per_split: dict[str, list[str] | None] = {"train": blend}
    for split in ("valid", "test"):
        # held-out prefixes, when every weighted domain declares one: the same mixture
        key = f"megatron:{split}"
        declared = [bool((d.get("trainer_paths") or {}).get(key)) for d, _ in used]
        if any(declared) and not all(declared):
            missing = next(d for (d, _), ok in zip(used, declared, strict=True) if not ok)
            raise ExportError(f"domain {missing['name']!r} has no {key} prefix while others do",
                              f"{_field_of(spec, missing['name'])}.trainer_paths.{key}")
        per_split[split] = [x for d, w in used for x in (repr(w), _megatron_prefix(spec, d, key))] \
            if all(declared) else None
    return {"data_args.txt": " ".join(blend) + "\n",
            "per_split_data_args.json": json.dumps(per_split, indent=2, ensure_ascii=False) + "\n"}


HF_SCRIPT = '''"""Interleave the domains with Hugging Face datasets in the mixture exported by mixopt.

    python %(name)s                    # prints the first samples; import it to train on MIXED

Needs Hugging Face datasets >= 4 (IterableDataset.repeat, usable with split_dataset_by_node).

mixopt's weights are token shares; interleave_datasets draws examples, so each domain's
probability is its weight divided by its mean tokens per document. Each domain is repeated at
most its epoch cap (documents x max_epochs examples, read in order), the stream stops when a
domain reaches its cap ("first_exhausted") and is cut at the token budget.
"""

import json
import math

from datasets import interleave_datasets, load_dataset

SPEC = json.loads(%(spec)s)


def domain_stream(d):
    ds = load_dataset(d["builder"], data_files=d["data_files"], split="train", streaming=True)
    ds = ds.select_columns([d["text_field"]])
    if d["text_field"] != "text":
        ds = ds.rename_column(d["text_field"], "text")
    if d["max_examples"] is None:
        return ds
    return ds.repeat(math.ceil(d["max_epochs"])).take(d["max_examples"])


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
    for d, w in _used(spec, weights):
        f = _field_of(spec, d["name"])
        if not d.get("token_count"):
            raise ExportError(f"the hf export needs the token count of domain {d['name']!r} to turn token shares "
                              "into per-example probabilities", f"{f}.token_count")
        if not d.get("documents"):
            raise ExportError(f"the hf export needs the document count of domain {d['name']!r} "
                              "(per-example probabilities = weight / mean tokens per document)", f"{f}.documents")
        files, builder = _raw_files(spec, d, fmt)
        mean_tokens = float(d["token_count"]) / float(d["documents"])
        epochs = max_epochs(spec, d["name"])
        rows.append({"name": d["name"], "builder": builder, "data_files": files,
                     "text_field": (d.get("source") or {}).get("text_field") or "text",
                     "weight": w, "mean_tokens": mean_tokens, "max_epochs": epochs,
                     "max_examples": None if epochs is None else int(math.floor(d["documents"] * epochs))})
        per_example.append(w / mean_tokens)
    total = math.fsum(per_example)
    for row, p in zip(rows, per_example, strict=True):
        row["probability"] = p / total
    # tokens per example drawn = sum_i p_i m_i = 1 / sum_i (w_i / m_i) (p_i = (w_i / m_i) / sum_j w_j / m_j)
    examples = int(round(budget * total))
    seed = int(_constraint(spec, "seed", fmt, "a seed"))
    return {"domains": rows, "seed": seed, "tokens": budget, "examples": examples}


def _hf(spec: MixtureExport, weights: dict[str, float]) -> dict[str, str]:
    name = "hf_mixture.py"
    plan = hf_plan(spec, weights)
    return {name: HF_SCRIPT % {"name": name, "spec": repr(json.dumps(plan, ensure_ascii=False))}}


def _levanter(spec: MixtureExport, weights: dict[str, float]) -> dict[str, str]:
    fmt = "levanter"
    stages = [(int(step), rounded_weights({n: float(w.get(n, 0.0)) for n in weights}))
              for step, w in spec.schedule or []]
    # Levanter wants the same names in configs and train_weights: every domain with a weight
    # somewhere (it needs files), and zero-weight domains only when they declare files
    used = {n for n, w in weights.items() if w > 0} | {n for _, w in stages for n, x in w.items() if x > 0}
    configs = {}
    for d in spec.domains:
        has_files = bool((d.get("trainer_paths") or {}).get(fmt) or (d.get("source") or {}).get("path"))
        if d["name"] in used or has_files:
            configs[d["name"]] = {"train_urls": _raw_files(spec, d, fmt)[0]}
    train_weights: Any
    if stages:
        if stages[0][0] != 0:
            stages.insert(0, (0, stages[0][1]))
        train_weights = [[step, {n: w[n] for n in configs}] for step, w in stages]
    else:
        train_weights = {n: weights[n] for n in configs}
    return {"levanter_data.yaml": _yaml({"data": {"configs": configs, "train_weights": train_weights}})}


def _regmix(spec: MixtureExport, weights: dict[str, float]) -> dict[str, str]:
    config: dict[str, Any] = {"train": {f"train_{n}": w for n, w in weights.items()}}
    valid = _objective_domains(spec)
    if valid:
        config["valid"] = {f"valid_{n}": w for n, w in rounded_weights(valid).items()}
    return {f"{spec.slug}-regmix.yaml": _yaml(config)}


def _olmix(spec: MixtureExport, weights: dict[str, float]) -> dict[str, str]:
    out = [{"domain": n, "weight": w} for n, w in weights.items()]
    return {f"{spec.slug}_optimal.json": json.dumps(out, ensure_ascii=False) + "\n"}


_RENDER = {"json": _json, "olmo-core": _olmo_core, "megatron": _megatron, "hf": _hf, "levanter": _levanter,
           "regmix": _regmix, "olmix": _olmix}


def render(fmt: str, spec: MixtureExport) -> Bundle:
    """The export of ``spec`` in ``fmt`` (one of :data:`FORMATS`); :class:`ExportError` names
    what the project must declare when something the format needs is missing."""
    if fmt not in _RENDER:
        raise ExportError(f"format must be one of {list(FORMATS)}, not {fmt!r}", "format")
    weights = _weights(spec)
    if spec.phases and fmt in ("olmo-core", "megatron"):
        # staged: one config per phase, each with the phase's mixture and token budget
        files: dict[str, str] = {}
        for k, (p, caps) in enumerate(zip(spec.phases, phase_epoch_caps(spec), strict=True)):
            cons = dict(spec.constraints or {})
            if caps:
                cons["max_epochs_per_domain"] = {**(cons.get("max_epochs_per_domain") or {}), **caps}
            sub = replace(spec, mixture=dict(p["mixture_by_domain"]), phases=None, constraints=cons,
                          scale={**(spec.scale or {}), "train_tokens": int(p["tokens"]), "train_steps": None},
                          slug=f"{spec.slug}-phase{k}-{p['name']}")
            for name, text in _RENDER[fmt](sub, _weights(sub)).items():
                files[f"phase{k}-{p['name']}/{name}"] = text
        return Bundle(files)
    if spec.phases and fmt == "levanter":
        batch = int(_constraint(spec, "global_batch_tokens", fmt, "the global batch size in tokens (phases start at a step)"))
        from mixopt.mixing.staged import levanter_weights

        spec = replace(spec, schedule=[(s, w) for s, w in levanter_weights({"phases": spec.phases}, batch)])
    return Bundle(_RENDER[fmt](spec, weights))


# -- from the store (the use cases the routes and the dashboard call) ------------------------
def _domains(project) -> list[dict[str, Any]]:
    return [{"name": d.name, "token_count": d.token_count, "documents": d.documents, "source": d.source,
             "trainer_paths": d.trainer_paths, "group": d.group_path} for d in project.domains]


def _base(project, mixture: dict[str, float], **kw: Any) -> MixtureExport:
    return MixtureExport(mixture=dict(mixture), domains=_domains(project), constraints=dict(project.constraints or {}),
                         objective=project.objective, **kw)


def for_recommendation(session, project, rec_id: int) -> MixtureExport:
    from app.services import fits as fit_service

    rec = fit_service.get_recommendation(session, project, rec_id)
    origin: dict[str, Any] = {"kind": "recommendation", "project_id": project.id, "recommendation_id": rec.id,
                              "source": rec.source, "fit_id": rec.fit_id, "predicted": rec.predicted,
                              "interval": [rec.interval_low, rec.interval_high], "binding": rec.binding,
                              "created_at": rec.created_at.isoformat() if rec.created_at else None}
    if rec.fit_id is not None:
        try:
            fit = fit_service.get_fit(session, project, rec.fit_id)
            origin["fit"] = {"id": fit.id, "estimator": fit.estimator, "params": fit.params, "target": fit.target,
                             "run_ids": fit.run_ids, "fidelity": fit.fidelity}
        except Exception:  # the fit was deleted: the recommendation keeps what it said
            origin["fit"] = None
    spec = _base(project, rec.mixture, scale=dict(rec.target_scale or {}), origin=origin,
                 slug=f"project-{project.id}-recommendation-{rec.id}",
                 phases=((rec.details or {}).get("staged") or {}).get("phases"))
    # the constraints the recommendation was made under, over the project's current ones
    spec.constraints = {**spec.constraints, **{k: v for k, v in (rec.constraints or {}).items() if v is not None}}
    return spec


def for_baseline(project, name: str) -> MixtureExport:
    from app.services import fits as fit_service
    from app.services.errors import NotFound

    out = fit_service.baselines(project)
    if name not in out["mixtures"]:
        raise NotFound(f"baseline {name!r} not found; baselines here: {sorted(out['mixtures'])}")
    origin = {"kind": "baseline", "project_id": project.id, "baseline": name}
    return _base(project, out["mixtures"][name], origin=origin, slug=f"project-{project.id}-{name}")


def for_online_session(session, project, session_id: int, which: str = "current") -> MixtureExport:
    """An online session's ``current`` weights, its ``final`` weights (the mixer's
    recommendation for a re-run, e.g. DoReMi's average), or its ``trajectory`` (every stored
    version with the step it applies from; Levanter trains on it as stages)."""
    from app.services import online as online_service
    from app.services.errors import Invalid

    row = online_service.get_session_row(session, project, session_id)
    origin = {"kind": "online", "project_id": project.id, "session_id": row.id, "algorithm": row.algorithm,
              "version": row.version, "weights": which}
    slug = f"project-{project.id}-online-{row.id}-{which}"
    if which == "current":
        return _base(project, row.weights, origin=origin, slug=slug)
    if which == "final":
        return _base(project, online_service.weights_view(session, row)["final_weights"], origin=origin, slug=slug)
    if which == "trajectory":
        versions = online_service.history(session, row)["weights"]
        schedule = [(int(v.step), dict(v.weights)) for v in versions] or [(0, dict(row.weights))]
        return _base(project, row.weights, origin=origin, schedule=schedule, slug=slug)
    raise Invalid(f"weights must be current, final or trajectory, not {which!r}", field="weights")
