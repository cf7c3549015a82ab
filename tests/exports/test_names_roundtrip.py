"""Every export round-trips every domain name the API accepts (issue 24, item 5).

The names are drawn from the whole alphabet of ``app.schemas.common.Name`` (1 to 200 code
points, none in U+0000..U+001F; lone surrogates are refused by pydantic), weighted toward what
breaks serialisers: Unicode line breaks (NEL U+0085, LS U+2028, PS U+2029), YAML indicators,
shell metacharacters, quotes, bidi marks, C1 controls, BOM, non-characters. Every registered
format's files, flat and staged, are read back with the consumer's parser (``yaml.safe_load``,
``json.loads``, Megatron's whitespace split and ``shlex.split``, ``ast`` for the HF script) to
exactly the names and weights written.
"""

from __future__ import annotations

import ast
import json
import shlex
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from app.schemas.common import Name
from mixopt import exports
from mixopt.exports import WRITERS, MixtureExport, rounded_weights

API_NAME = TypeAdapter(Name)
#: what ``Name`` accepts, one code point: anything from U+0020 on but surrogates
ACCEPTED = st.characters(min_codepoint=0x20, exclude_categories=("Cs",))
#: what breaks serialisers, spliced into the names
FRAGMENTS = [
    *"\x85\u2028\u2029",  # Unicode line breaks
    *"&*!|>%@`#'\"\\{}[],~=<",  # YAML indicators, quotes
    "- ",
    "? ",
    ": ",
    " #",
    " ",
    "---",
    "...",
    "$(touch x)",
    "`id`",
    ";",
    "&&",
    "${HOME}",
    *"\u200e\u200f\u202e\u2066\u061c",  # bidi marks
    *"\x7f\x80\x9f\xa0\ufeff\ufffe\uffff\U0010ffff\U0001f600",
    "null",
    "yes",
    "0x1F",
    "1e3",
    "2001-12-14",
    "_val_loss",
    "val_loss/",
]
NAMES = st.one_of(
    st.lists(
        st.one_of(st.sampled_from(FRAGMENTS), st.text(ACCEPTED, min_size=1, max_size=6)),
        min_size=1,
        max_size=10,
    ).map("".join),
    st.text(ACCEPTED, min_size=1, max_size=200),
)
SEQ, BATCH = 1024, 8192
PHASE_TOKENS = (1_500_000, 500_000)


def domain(i: int, name: str) -> dict[str, Any]:
    """A domain as ``app.services.exports`` hands it over (see ``test_writers.DOMAINS``); the
    paths hold the name where the format allows it (Megatron's prefixes hold no whitespace)."""
    return {
        "name": name,
        "token_count": 1_000_000 + i,
        "documents": 1_000,
        "group": None,
        "source": {"path": f"/data/{name}/part.jsonl", "format": "jsonl"},
        "trainer_paths": {
            "olmo-core": [f"/tok/{name}-000.npy"],
            "megatron": [f"/tok/d{i}_text_document"],
        },
    }


def project(names: list[str], flat: list[int], main: list[int], anneal: list[int]) -> MixtureExport:
    """A project of these domains, built the way ``test_writers.spec`` does, with a mixture
    and a two-phase schedule (weights in the domains' order)."""
    phases = [
        {
            "name": label,
            "tokens": tokens,
            "start_tokens": start,
            "mixture_by_domain": {m: float(w) for m, w in zip(names, ws, strict=True)},
        }
        for label, tokens, start, ws in (
            ("main", PHASE_TOKENS[0], 0, main),
            ("anneal", PHASE_TOKENS[1], PHASE_TOKENS[0], anneal),
        )
    ]
    return MixtureExport(
        mixture={m: float(w) for m, w in zip(names, flat, strict=True)},
        domains=[domain(i, m) for i, m in enumerate(names)],
        constraints={
            "target_tokens": sum(PHASE_TOKENS),
            "max_epochs": 2.0,
            "sequence_length": SEQ,
            "global_batch_tokens": BATCH,
            "seed": 7,
        },
        # the validation metrics RegMix's ``valid:`` section names
        objective={f"val_loss/{m}": 1.0 for m in names},
        phases=phases,
        slug="rt",
    )


@st.composite
def projects(draw: st.DrawFn) -> MixtureExport:
    """1 to 4 accepted names, a mixture and two phases (some weights zero, never all)."""
    names = draw(st.lists(NAMES, min_size=1, max_size=4, unique=True))
    weights = st.lists(st.integers(0, 1000), min_size=len(names), max_size=len(names))
    return project(names, *(draw(weights.filter(any)) for _ in range(3)))


Pairs = list[tuple[str, float]]


def mixtures(spec: MixtureExport) -> list[Pairs]:
    """The mixtures written, in the project's domain order: the flat one, then each phase's."""
    names = [d["name"] for d in spec.domains]
    out = [list(exports.rounded_weights(spec.mixture).items())]
    for p in spec.phases or []:
        out.append(list(rounded_weights({m: p["mixture_by_domain"][m] for m in names}).items()))
    return out


def positive(pairs: Pairs) -> Pairs:
    return [(m, w) for m, w in pairs if w > 0]


def by_phase(files: dict[str, str], suffix: str, read: Callable[[str], Any]) -> list[Any]:
    """Each file ending in ``suffix``, read, in the order written (one, or one per phase)."""
    return [read(text) for name, text in files.items() if name.endswith(suffix)]


# -- each format as its consumer reads it: [(name, weight), ...] per mixture -------------------
def read_json(spec: MixtureExport, files: dict[str, str]) -> list[Pairs]:
    (body,) = by_phase(files, ".json", json.loads)
    assert body["domains"] == [d["name"] for d in spec.domains]
    return [list(body["mixture"].items())] + [
        list(p["mixture"].items()) for p in body.get("phases", [])
    ]


def read_olmix(spec: MixtureExport, files: dict[str, str]) -> list[Pairs]:
    return [
        [(e["domain"], e["weight"]) for e in body]
        for body in by_phase(files, "_optimal.json", json.loads)
    ]


def read_regmix(spec: MixtureExport, files: dict[str, str]) -> list[Pairs]:
    out = []
    for config in by_phase(files, "-regmix.yaml", yaml.safe_load):
        valid = [d["name"] for d in spec.domains]
        assert config["valid"] == {
            f"valid_{m}": w for m, w in rounded_weights(dict.fromkeys(valid, 1.0)).items()
        }
        assert all(k.startswith("train_") for k in config["train"])
        out.append([(k.removeprefix("train_"), w) for k, w in config["train"].items()])
    return out


def read_olmo_core(spec: MixtureExport, files: dict[str, str]) -> list[Pairs]:
    for script in by_phase(files, ".py", ast.parse):
        assert script.body
    out = []
    for config in by_phase(files, "olmo_core_mixture.yaml", yaml.safe_load):
        sources = config["source_list"]["sources"]
        assert [s["paths"] for s in sources] == [
            [f"/tok/{s['source_name']}-000.npy"] for s in sources
        ]
        out.append([(s["source_name"], s["target_ratio"]) for s in sources])
    return out


def read_megatron(spec: MixtureExport, files: dict[str, str]) -> list[Pairs]:
    """``--data-args-path`` is read with ``str.split()`` (Megatron-LM), and reads the same as
    shell words; the prefixes name the domains."""
    by_prefix = {f"/tok/d{i}_text_document": d["name"] for i, d in enumerate(spec.domains)}
    out = []
    args = by_phase(files, "data_args.txt", str)
    per_split = by_phase(files, "per_split_data_args.json", json.loads)
    for text, split in zip(args, per_split, strict=True):
        words = text.split()
        assert shlex.split(text) == words == split["train"]
        out.append([(by_prefix[p], float(w)) for w, p in zip(words[::2], words[1::2], strict=True)])
    return out


def spec_literal(script: str) -> dict[str, Any]:
    """``SPEC = json.loads(<literal>)`` in the HF script, evaluated as Python reads it."""
    for node in ast.parse(script).body:
        if isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == ["SPEC"]:
            assert isinstance(node.value, ast.Call) and ast.unparse(node.value.func) == "json.loads"
            return json.loads(ast.literal_eval(node.value.args[0]))
    raise AssertionError("no SPEC in the HF script")


def read_hf(spec: MixtureExport, files: dict[str, str]) -> list[Pairs]:
    out = []
    for plan in by_phase(files, ".py", spec_literal):
        for row in plan["domains"]:
            assert row["data_files"] == [f"/data/{row['name']}/part.jsonl"]
        out.append([(row["name"], row["weight"]) for row in plan["domains"]])
    return out


def read_levanter(spec: MixtureExport, files: dict[str, str]) -> list[Pairs]:
    (config,) = by_phase(files, ".yaml", yaml.safe_load)
    data = config["data"]
    # every domain declares files, so every one is a config (zero weights included)
    assert list(data["configs"]) == [d["name"] for d in spec.domains]
    for m, c in data["configs"].items():
        assert c == {"train_urls": [f"/data/{m}/part.jsonl"]}
    weights = data["train_weights"]
    if isinstance(weights, dict):
        return [list(weights.items())]
    # the stage starts on the step nearest the phase's start, its sequence index a multiple of
    # the mixture block (Levanter's rule)
    assert [step for step, _ in weights] == [0, round(PHASE_TOKENS[0] / BATCH)]
    assert weights[1][0] * (BATCH // SEQ) % data["mixture_block_size"] == 0
    return [list(w.items()) for _, w in weights]


READERS: dict[str, Callable[[MixtureExport, dict[str, str]], list[Pairs]]] = {
    "json": read_json,
    "olmix": read_olmix,
    "regmix": read_regmix,
    "olmo-core": read_olmo_core,
    "megatron": read_megatron,
    "hf": read_hf,
    "levanter": read_levanter,
}
#: formats whose trainers take only the domains with a weight (a source needs a positive ratio)
POSITIVE_ONLY = {"olmo-core", "megatron", "hf"}


def expected(fmt: str, spec: MixtureExport, staged: bool) -> list[Pairs]:
    """What ``fmt`` must read back: the flat mixture, or each phase's (one config per phase, or
    a schedule); JSON keeps the mixture beside the phases."""
    flat, *phases = mixtures(spec)
    how = WRITERS[fmt].STAGED if staged else None
    out = [flat, *phases] if staged and fmt == "json" else phases if how else [flat]
    return [positive(p) for p in out] if fmt in POSITIVE_ONLY else out


def test_every_format_has_a_reader():
    assert set(READERS) == set(WRITERS)


def test_the_names_are_what_the_api_accepts():
    """The generator's alphabet is the API's: U+0000..U+001F, 0 or 201 code points and lone
    surrogates are refused, everything else is taken."""
    for bad in ("", "a" * 201, "a\tb", "a\nb", "\x1f", "\ud800"):
        with pytest.raises(ValidationError):
            API_NAME.validate_python(bad)
    for good in ("a" * 200, " ", *FRAGMENTS):
        assert API_NAME.validate_python(good) == good


ISSUE = project(  # the names measured in the issue
    ["a\x85b", "&anchor", "- item", "a$(touch x)", "x\u2028y\u2029", "web_val_loss", " #'\u200f\""],
    [1, 2, 3, 4, 5, 6, 7],
    [7, 6, 5, 4, 3, 2, 1],
    [1, 0, 2, 0, 3, 0, 4],
)


@pytest.mark.parametrize("fmt", list(WRITERS))
@settings(
    max_examples=200,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(spec=projects())
@example(spec=ISSUE)
def test_every_export_round_trips_every_accepted_name(fmt, spec):
    for d in spec.domains:
        assert API_NAME.validate_python(d["name"]) == d["name"]
    for staged in (False, True):
        one = spec if staged else replace(spec, phases=None)
        files = exports.render(fmt, one).files
        assert READERS[fmt](one, files) == expected(fmt, one, staged), (staged, files)


def test_olmo_core_reads_the_issue_names_in_every_phase(tmp_path):
    """The staged OLMo-core export through ``SourceMixtureDatasetConfig.from_yaml``: every phase
    config names the issue's domains exactly (those with a weight in the phase)."""
    pytest.importorskip(
        "olmo_core", reason="ai2-olmo-core is a test dependency (pip install -e '.[test]')"
    )
    from olmo_core.data.source_mixture import SourceMixtureDatasetConfig

    files = exports.render("olmo-core", ISSUE).files
    read = []
    for name, text in files.items():
        if name.endswith(".yaml"):
            path = tmp_path / name.replace("/", "-")
            path.write_text(text, encoding="utf-8")
            config = SourceMixtureDatasetConfig.from_yaml(str(path))
            read.append([(s.source_name, s.target_ratio) for s in config.source_list.sources])
    assert read == expected("olmo-core", ISSUE, staged=True)
