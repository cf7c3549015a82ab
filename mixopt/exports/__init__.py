"""A mixture written out for the trainers that consume it, and for the tools that propose one.

Pure serialisation (no database, no HTTP): one writer module per format and the
:data:`WRITERS` registry below. The server loads what to export from the store
(:mod:`app.services.exports`) and calls :func:`render`.

**A new format** is one module here (``FORMAT``, ``LABEL``, ``STAGED`` (``"per-phase"`` or
``"self"``: how it holds a staged recommendation, see :func:`render`), ``write(spec, weights)
-> {filename: text}`` built on :mod:`mixopt.exports.spec`, optionally ``notes(spec)`` and
``NOTES_FILE``) and one line in :data:`WRITERS`;
``tests/exports/test_writers.py`` then checks that its files parse back.
Every file is produced by a serialiser (``json``, the safe YAML dumper of
:func:`mixopt.exports.spec.yaml_text`, Python ``repr`` of a JSON string) from data, never by
pasting a user's name or path into code, so a name such as ``"; rm -rf ~ #`` or ``$(touch x)``
stays a string in every output; ``tests/exports/test_names_roundtrip.py`` checks that every
format, flat and staged, reads back to exactly the names and weights written for any name the
API accepts (NEL/LS/PS, YAML indicators, quotes and bidi marks included).

Formats (each checked against the library it targets, see ``tests/exports``; each module's
docstring has the details):

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
    Megatron does not enforce epoch caps: ``MEGATRON_NOTES.txt`` (and the API's
    ``X-Mixopt-Notes`` header) give each domain's expected repetition beside its cap.
``hf``
    a self-contained Python script for Hugging Face ``datasets``: one
    ``load_dataset(builder, data_files=...)`` per domain, ``interleave_datasets`` with
    per-example probabilities ``p_i ∝ w_i / (tokens_i / documents_i)`` (mixopt's weights are
    token shares), a seed, each domain capped at ``documents_i x max_epochs_i`` examples and the
    stream cut at the token budget; staged: one script per phase, each reading on where the
    earlier phases stopped.
``levanter``
    Levanter/Marin ``data:`` section (``LMMixtureDatasetConfig``: ``configs`` of
    ``train_urls`` and ``train_weights``, a dict, or for a staged recommendation or an online
    session the staged ``[[step, weights], ...]`` form, each stage on a step whose sequence
    index is a multiple of ``mixture_block_size``), with ``trainer.train_batch_size`` and
    ``num_train_steps`` when the budget is known.
``regmix``
    RegMix's trainer YAML (sail-sg/regmix ``mixture_config``: ``train: {train_<domain>: w}``,
    always ``valid: {valid_<domain>: w}`` (the objective's domains, else every domain),
    ``data_seed``, ``global_batch_size`` and ``max_step``); staged: one file per phase.
``olmix``
    olmix's proposal file (``olmix/fit``'s ``*_optimal.json``: ``[{"domain", "weight"}]``);
    staged: one per phase. (olmix's fit config is read as a project file by
    :mod:`mixopt.exports.olmix_config`.)

The token budget is the recommendation's target (``target_scale`` as asked for: see
``app.services.exports.requested_scale``), else ``constraints.target_tokens``; never the
proxy runs' scale.

Whatever a trainer needs and the project does not say (tokenised paths, token budget,
sequence length, batch size, seed, document counts) is an :class:`ExportError` naming the
field, which the API answers with a 422; no value is made up.
"""

from __future__ import annotations

from dataclasses import replace
from types import ModuleType

from mixopt.exports import hf, levanter, megatron, mixopt_json, olmix, olmo_core, regmix
from mixopt.exports.spec import (
    Bundle,
    ExportError,
    MixtureExport,
    batch_phases,
    epoch_report,
    epoch_warnings,
    epochs_read,
    max_epochs,
    phase_epoch_caps,
    rounded_weights,
    token_budget,
    weights_of,
)

__all__ = [
    "FORMATS",
    "LABELS",
    "WRITERS",
    "Bundle",
    "ExportError",
    "MixtureExport",
    "batch_phases",
    "epoch_report",
    "epoch_warnings",
    "epochs_read",
    "max_epochs",
    "phase_epoch_caps",
    "render",
    "rounded_weights",
    "token_budget",
]

#: format -> its writer module, in the order the API and the dashboard list them
WRITERS: dict[str, ModuleType] = {
    m.FORMAT: m
    for m in (
        mixopt_json,
        olmo_core,
        megatron,
        hf,
        levanter,
        regmix,
        olmix,
    )
}
FORMATS = tuple(WRITERS)
LABELS = {fmt: m.LABEL for fmt, m in WRITERS.items()}


def render(fmt: str, spec: MixtureExport) -> Bundle:
    """The export of ``spec`` in ``fmt`` (one of :data:`FORMATS`); :class:`ExportError` names
    what the project must declare when something the format needs is missing.

    A staged recommendation (``spec.phases``) is written by the writer itself when its format
    holds phases (``STAGED = "self"``: JSON, Levanter's stages) or as one file set per phase
    under ``phaseK-<name>/`` (``STAGED = "per-phase"``), each with the phase's mixture, token
    budget, share of the epoch caps (:func:`phase_epoch_caps`), start and what the earlier
    phases read; a writer that holds no phases (``STAGED = None``) is a 422 naming the format,
    never its first phase alone. A writer's optional ``notes(spec)`` says what its trainer
    will not enforce (:attr:`Bundle.notes`, written to its ``NOTES_FILE`` as well).
    """
    if fmt not in WRITERS:
        raise ExportError(f"format must be one of {list(FORMATS)}, not {fmt!r}", "format")
    weights = weights_of(spec)
    writer = WRITERS[fmt]
    notes = list(writer.notes(spec)) if hasattr(writer, "notes") else []
    if spec.phases and writer.STAGED == "per-phase":
        files = _per_phase(writer, spec)
    elif spec.phases and writer.STAGED != "self":
        raise ExportError(
            f"the {fmt} format cannot hold the {len(spec.phases)} phases of a staged "
            "recommendation: export it as json, olmo-core, megatron, hf, levanter, regmix or "
            "olmix",
            "format",
        )
    else:
        files = writer.write(spec, weights)
    if notes and getattr(writer, "NOTES_FILE", None):
        files[writer.NOTES_FILE] = "\n\n".join(notes) + "\n"
    return Bundle(files, notes)


def _per_phase(writer: ModuleType, spec: MixtureExport) -> dict[str, str]:
    """One file set per phase, ``phaseK-<name>/<file>`` (see :func:`render`)."""
    files: dict[str, str] = {}
    phases = batch_phases(spec)
    read: dict[str, float] = {}
    for k, (p, caps) in enumerate(zip(phases, phase_epoch_caps(spec), strict=True)):
        cons = dict(spec.constraints or {})
        if caps:
            cons["max_epochs_per_domain"] = {**(cons.get("max_epochs_per_domain") or {}), **caps}
        sub = replace(
            spec,
            mixture=dict(p["mixture_by_domain"]),
            phases=None,
            constraints=cons,
            scale={**(spec.scale or {}), "train_tokens": int(p["tokens"]), "train_steps": None},
            slug=f"{spec.slug}-phase{k}-{p['name']}",
            start_tokens=int(p.get("start_tokens") or 0),
            read_before=dict(read),
        )
        for name, text in writer.write(sub, weights_of(sub)).items():
            files[f"phase{k}-{p['name']}/{name}"] = text
        for d, w in p["mixture_by_domain"].items():
            read[d] = read.get(d, 0.0) + float(w) * float(p["tokens"])
    return files
