"""The writer registry (``mixopt.exports.WRITERS``): every registered format writes files that
its consumer's parser reads back (YAML, JSON, Megatron's whitespace-split data args, Python
source), flat and staged, and the registry is the one list of formats."""

from __future__ import annotations

import ast
import json
import shlex

import pytest
import yaml

from mixopt import exports
from mixopt.exports import WRITERS, MixtureExport

DOMAINS = [
    {
        "name": name,
        "token_count": tokens,
        "documents": docs,
        "group": None,
        "source": {"path": f"/data/{name}", "format": "jsonl"},
        "trainer_paths": {
            "olmo-core": [f"/tok/{name}-000.npy"],
            "megatron": [f"/tok/{name}_text_document"],
        },
    }
    for name, tokens, docs in (("web", 4_000_000, 4_000), ("code", 1_000_000, 500))
]
CONSTRAINTS = {
    "target_tokens": 2_000_000,
    "max_epochs": 2.0,
    "sequence_length": 1024,
    "global_batch_tokens": 8192,
    "seed": 7,
}
PHASES = [
    {
        "name": "main",
        "tokens": 1_500_000,
        "start_tokens": 0,
        "mixture_by_domain": {"web": 0.7, "code": 0.3},
    },
    {
        "name": "anneal",
        "tokens": 500_000,
        "start_tokens": 1_500_000,
        "mixture_by_domain": {"web": 0.4, "code": 0.6},
    },
]


def parse(name: str, text: str) -> object:
    """The file as its consumer reads it."""
    if name.endswith(".yaml"):
        return yaml.safe_load(text)
    if name.endswith(".json"):
        return json.loads(text)
    if name.endswith("_NOTES.txt"):  # prose for a person (what the trainer will not enforce)
        return text.strip() or None
    if name.endswith(".txt"):
        return shlex.split(text)
    if name.endswith(".py"):
        return ast.parse(text)
    raise AssertionError(f"no parser for {name}")


def spec(**kw) -> MixtureExport:
    return MixtureExport(
        mixture={"web": 0.75, "code": 0.25},
        domains=DOMAINS,
        constraints=dict(CONSTRAINTS),
        objective={"val_loss/web": 1.0},
        slug="test",
        **kw,
    )


def test_the_registry_is_the_list_of_formats():
    assert exports.FORMATS == tuple(WRITERS)
    assert set(exports.LABELS) == set(WRITERS)
    for fmt, module in WRITERS.items():
        assert module.FORMAT == fmt and module.LABEL
        # every format holds the phases of a staged recommendation (none keeps the first alone)
        assert module.STAGED in ("per-phase", "self")
        assert callable(module.write)


@pytest.mark.parametrize("fmt", list(WRITERS))
@pytest.mark.parametrize("staged", [False, True], ids=["flat", "staged"])
def test_every_format_writes_files_that_parse_back(fmt, staged):
    bundle = exports.render(fmt, spec(phases=PHASES if staged else None))
    assert bundle.files
    for name, text in bundle.files.items():
        assert parse(name, text) is not None, name
        assert bundle.media_type(name)
    if staged and WRITERS[fmt].STAGED == "per-phase":
        top = {n.split("/")[0] for n in bundle.files} - {getattr(WRITERS[fmt], "NOTES_FILE", "")}
        assert top == {"phase0-main", "phase1-anneal"}


def test_megatron_data_args_pair_weights_with_prefixes():
    files = exports.render("megatron", spec()).files
    args = parse("data_args.txt", files["data_args.txt"])
    assert args == ["0.75", "/tok/web_text_document", "0.25", "/tok/code_text_document"]


def test_a_missing_requirement_names_the_field():
    bare = MixtureExport(mixture={"web": 1.0}, domains=[{"name": "web"}])
    with pytest.raises(exports.ExportError) as err:
        exports.render("olmo-core", bare)
    assert err.value.field.startswith("domains[0].trainer_paths")


def test_a_format_without_phases_refuses_a_staged_export(monkeypatch):
    """A writer that cannot hold phases (``STAGED = None``) answers a staged recommendation with
    a 422 naming the format, never with its first phase alone; a flat one it writes."""
    import types

    flat_only = types.SimpleNamespace(
        FORMAT="flat", LABEL="Flat", STAGED=None, write=lambda s, w: {"f.json": json.dumps(w)}
    )
    monkeypatch.setitem(WRITERS, "flat", flat_only)
    monkeypatch.setattr(exports, "FORMATS", (*exports.FORMATS, "flat"))
    staged = PHASES
    with pytest.raises(exports.ExportError, match="cannot hold the 2 phases") as err:
        exports.render("flat", spec(phases=staged))
    assert err.value.field == "format"
    assert json.loads(exports.render("flat", spec()).files["f.json"]) == {"web": 0.75, "code": 0.25}
