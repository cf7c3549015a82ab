"""One recommendation, plain (one phase) and staged (two phases), exported for every trainer and
read back the way the trainer reads it: the token budget, every phase's ratios and the epoch
caps (issue 26, item 1).

Real packages where they install beside this stack: OLMo-core's
``SourceMixtureDatasetConfig`` (built on real ``.npy`` token files), megatron-core's
``get_blend_from_list`` (what Megatron-LM's ``--data-args-path`` feeds), Hugging Face
``datasets`` (the exported scripts run on real JSONL files). RegMix's trainer
(``model_training/pretrain/tinyllama.py``, sail-sg/regmix) is a script that imports lightning
and lit_gpt at module level, and Levanter pins pydantic 1 and jax: their readers are
re-implemented here from their source (:func:`regmix_reader`, :func:`levanter_reader`), the
steps that matter kept as they are written there.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from mixopt import exports as E

pytestmark = pytest.mark.science

SEQ, BATCH = 64, 64 * 256  # 256 sequences a batch
TOKENS = {"web": 600_000, "code": 150_000, "math": 100_000}
WORDS = 50  # words (= tokens here) per document of the JSONL domains
BUDGET = 524_288  # constraints.target_tokens: 32 steps
FLAT = {"web": 0.6, "code": 0.3, "math": 0.1}
#: the anneal starts at 400,000 tokens = step 24.4: Levanter's stage goes to step 24 (a multiple
#: of 8 steps = one 2048-sequence block at 256 sequences a step)
PHASES = [
    {
        "name": "main",
        "tokens": 400_000,
        "start_tokens": 0,
        "mixture_by_domain": {"web": 0.7, "code": 0.2, "math": 0.1},
    },
    {
        "name": "anneal",
        "tokens": BUDGET - 400_000,
        "start_tokens": 400_000,
        "mixture_by_domain": {"web": 0.3, "code": 0.4, "math": 0.3},
    },
]
CAPS = {"web": 2.0, "code": 1.5, "math": 2.0}


def _domains(root: Path) -> list[dict]:
    """Each domain's tokens as a uint32 ``.npy`` file (OLMo-core), its text as JSONL of
    ``WORDS``-word documents tagged with the domain and the document's index (HF, Levanter),
    and a Megatron prefix."""
    out = []
    for name, tokens in TOKENS.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        np.arange(tokens, dtype=np.uint32).tofile(folder / "part-0.npy")
        docs = tokens // WORDS
        with (folder / "part-0.jsonl").open("w") as fh:
            for i in range(docs):
                fh.write(
                    json.dumps({"text": " ".join([name.upper(), str(i)] + ["w"] * (WORDS - 2))})
                )
                fh.write("\n")
        out.append(
            {
                "name": name,
                "token_count": tokens,
                "documents": docs,
                "source": {"path": str(folder / "part-0.jsonl"), "format": "jsonl"},
                "trainer_paths": {
                    "olmo-core": [str(folder / "part-0.npy")],
                    "megatron": [f"/tok/{name}_text_document"],
                },
            }
        )
    return out


def _spec(root: Path, staged: bool, **kw) -> E.MixtureExport:
    """The recommendation as ``app.services.exports`` hands it over: no target scale asked for,
    so the budget is the project's ``target_tokens``."""
    return E.MixtureExport(
        mixture=dict(kw.pop("mixture", FLAT if not staged else PHASES[0]["mixture_by_domain"])),
        domains=_domains(root),
        constraints={
            "target_tokens": BUDGET,
            "max_epochs": 2.0,
            "max_epochs_per_domain": {"code": 1.5},
            "sequence_length": SEQ,
            "global_batch_tokens": BATCH,
            "seed": 3,
        },
        scale={},
        origin={"kind": "test"},
        phases=[dict(p) for p in PHASES] if staged else None,
        slug="rec",
        **kw,
    )


#: the phases on whole batches (a trainer runs whole steps): the anneal starts at step 24
ON_BATCHES = (24 * BATCH, 8 * BATCH)


def _expected(staged: bool) -> list[tuple[str, dict[str, float], int]]:
    """(phase, mixture, tokens) the export must carry."""
    if not staged:
        return [("all", FLAT, BUDGET)]
    return [(p["name"], p["mixture_by_domain"], t) for p, t in zip(PHASES, ON_BATCHES, strict=True)]


def _epochs(staged: bool) -> dict[str, float]:
    """Epochs of each domain over the whole training, by hand, as recommended."""
    parts = [(p["mixture_by_domain"], p["tokens"]) for p in PHASES] if staged else [(FLAT, BUDGET)]
    return {d: sum(m[d] * t for m, t in parts) / TOKENS[d] for d in TOKENS}


def _phase_files(files: dict[str, str], suffix: str, staged: bool) -> list[tuple[str, str]]:
    """The files ending in ``suffix``: one, or one per phase under ``phaseK-<name>/``."""
    got = [(n, t) for n, t in files.items() if n.endswith(suffix)]
    if staged:
        assert [n.split("/")[0] for n, _ in got] == ["phase0-main", "phase1-anneal"]
    else:
        assert len(got) == 1 and "/" not in got[0][0]
    return got


STAGES = pytest.mark.parametrize("staged", [False, True], ids=["one-phase", "two-phase"])


# -- OLMo-core ------------------------------------------------------------------------------
@STAGES
def test_olmo_core_builds_each_phase_with_its_budget_ratios_and_cap_share(tmp_path, staged):
    pytest.importorskip("olmo_core", reason="ai2-olmo-core is a test dependency")
    from olmo_core.data.source_mixture import SourceMixtureDatasetConfig

    files = E.render("olmo-core", _spec(tmp_path, staged)).files
    configs = _phase_files(files, "olmo_core_mixture.yaml", staged)
    cap_sums = dict.fromkeys(TOKENS, 0.0)
    for (name, text), (_, mixture, tokens) in zip(configs, _expected(staged), strict=True):
        path = tmp_path / name.replace("/", "-")
        path.write_text(text)
        config = SourceMixtureDatasetConfig.from_yaml(str(path))
        config.validate()
        assert config.requested_tokens == tokens  # the phase's (or the project's) budget
        assert config.global_batch_size == BATCH and config.seed == 3
        assert {s.source_name: s.target_ratio for s in config.source_list.sources} == mixture
        built = config.build(npdtype=np.uint32, sequence_length=SEQ)
        got = {s.name: sum(p.tokens for p in s.path_tokens) for s in built.sources}
        total = sum(got.values())
        # OLMo-core draws whole batches: the phase's tokens, rounded up to a batch
        assert tokens <= total <= tokens + BATCH, (name, total)
        for d, w in mixture.items():
            assert got[d] / total == pytest.approx(w, abs=0.005), (name, d)
        for s in config.source_list.sources:
            cap = s.max_repetition_ratio * s.max_source_fraction
            # each phase's cap holds what the phase reads
            assert cap * TOKENS[s.source_name] >= got[s.source_name] - SEQ
            cap_sums[s.source_name] += cap
    # the caps of all phases add up to the project's cap (one phase: the cap itself)
    assert cap_sums == pytest.approx(CAPS, abs=1e-5)  # each share rounded up at 1e-6


def test_olmo_core_refuses_a_mixture_beyond_its_cap(tmp_path):
    """The cap is OLMo-core's to enforce: 0.5 of ``BUDGET`` from ``code`` is 1.75 epochs > 1.5."""
    pytest.importorskip("olmo_core", reason="ai2-olmo-core is a test dependency")
    from olmo_core.data.source_mixture import SourceMixtureDatasetConfig

    spec = _spec(tmp_path, False, mixture={"web": 0.4, "code": 0.5, "math": 0.1})
    (tmp_path / "over.yaml").write_text(E.render("olmo-core", spec).files["olmo_core_mixture.yaml"])
    with pytest.raises(Exception, match="Insufficient tokens"):
        SourceMixtureDatasetConfig.from_yaml(str(tmp_path / "over.yaml")).build(
            npdtype=np.uint32, sequence_length=SEQ
        )


# -- Megatron -------------------------------------------------------------------------------
def _notes_epochs(text: str) -> dict[str, tuple[float, bool]]:
    """``{domain: (expected epochs, flagged)}`` from ``MEGATRON_NOTES.txt``."""
    out = {}
    for line in text.splitlines():
        if line.startswith("  '"):
            name, rest = line.strip().split(": ", 1)
            out[name.strip("'")] = (float(rest.split(" epochs")[0]), "EXCEEDS THE CAP" in rest)
    return out


@STAGES
def test_megatron_blends_each_phase_and_says_it_does_not_cap(tmp_path, staged):
    pytest.importorskip("megatron.core", reason="megatron-core is a test dependency")
    from megatron.core.datasets.utils import get_blend_from_list

    bundle = E.render("megatron", _spec(tmp_path, staged))
    args = _phase_files(bundle.files, "data_args.txt", staged)
    for (_, text), (_, mixture, _) in zip(args, _expected(staged), strict=True):
        prefixes, weights = get_blend_from_list(text.split())  # what --data-args-path does
        assert dict(zip(prefixes, weights, strict=True)) == {
            f"/tok/{d}_text_document": w for d, w in mixture.items()
        }
    # no comment in data_args.txt (it is split on whitespace); the notes are their own file
    notes = bundle.files["MEGATRON_NOTES.txt"]
    assert bundle.notes and "does not enforce epoch caps" in notes
    got = _notes_epochs(notes)
    assert {d: e for d, (e, _) in got.items()} == pytest.approx(_epochs(staged), rel=1e-3)
    assert not any(flag for _, flag in got.values())
    if staged:  # how long each phase's blend trains, on whole batches
        assert "phase0-main/: 393216 tokens from token 0 (--train-samples 6144)" in notes
        assert "phase1-anneal/: 131072 tokens from token 393216 (--train-samples 2048)" in notes
    # beyond the cap: said, since Megatron will repeat it anyway
    over = E.render(
        "megatron", _spec(tmp_path, False, mixture={"web": 0.4, "code": 0.5, "math": 0.1})
    )
    assert _notes_epochs(over.files["MEGATRON_NOTES.txt"])["code"] == (
        pytest.approx(1.748, abs=1e-3),
        True,
    )


# -- Hugging Face datasets ------------------------------------------------------------------
def _run_hf(folder: Path, script: str) -> list[tuple[str, int, int]]:
    """Every example the script's ``MIXED`` yields: (domain tag, document index, words)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hf_mixture.py").write_text(script)
    driver = (
        "import json, sys\nsys.path.insert(0, '.')\nimport hf_mixture\n"
        "print(json.dumps([(t[0], int(t[1]), len(t)) for t in "
        "(e['text'].split() for e in hf_mixture.MIXED)]))\n"
    )
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    env["HF_HOME"] = str(folder / "hf")
    out = subprocess.run(
        [sys.executable, "-c", driver],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return [tuple(x) for x in json.loads(out.stdout.strip().splitlines()[-1])]


@STAGES
def test_hf_scripts_stream_each_phase_at_its_ratios_and_read_on(tmp_path, staged):
    pytest.importorskip("datasets", reason="datasets is a test dependency")
    files = E.render("hf", _spec(tmp_path, staged)).files
    scripts = _phase_files(files, "hf_mixture.py", staged)
    first_index: list[dict[str, int]] = []
    for (name, script), (_, mixture, tokens) in zip(scripts, _expected(staged), strict=True):
        samples = _run_hf(tmp_path / "run" / name.replace("/", "-"), script)
        words = {d: sum(n for t, _, n in samples if t == d.upper()) for d in TOKENS}
        total = sum(words.values())
        assert total == pytest.approx(tokens, rel=0.01)  # the budget
        for d, w in mixture.items():
            assert words[d] / total == pytest.approx(w, abs=0.02), (name, d)
        first_index.append({d: min(i for t, i, _ in samples if t == d.upper()) for d in TOKENS})
    if staged:
        # the anneal reads on from where the main phase is expected to stop, not from the start
        for d, w in PHASES[0]["mixture_by_domain"].items():
            assert first_index[1][d] == round(w * ON_BATCHES[0] / WORDS), d


# -- RegMix ---------------------------------------------------------------------------------
#: the globals of sail-sg/regmix model_training/pretrain/tinyllama.py a config file may set
REGMIX_GLOBALS = {
    "model_name",
    "global_batch_size",
    "max_step",
    "micro_batch_size",
    "num_of_devices",
}


def regmix_reader(text: str) -> tuple[list, list, dict]:
    """What ``setup(data_yaml_file=...)`` of RegMix's ``tinyllama.py`` does with the file:
    ``yaml.safe_load``; ``data_seed``; ``train`` items as ``(name, float(w))``; ``valid`` items
    as ``[(name, float(w))]``; then ``del config["train"]`` and ``del config["valid"]``
    unconditionally (the ``KeyError`` the issue saw); the other keys set the script's globals."""
    config = yaml.safe_load(text)
    updates = {}
    if "data_seed" in config:
        updates["data_seed"] = int(config["data_seed"])
    train = [(k, float(v)) for k, v in config["train"].items()] if "train" in config else []
    valid = [[(k, float(v))] for k, v in config["valid"].items()] if "valid" in config else []
    del config["train"]
    del config["valid"]
    updates |= {k: v for k, v in config.items() if k in REGMIX_GLOBALS}
    return train, valid, updates


@STAGES
def test_regmix_config_loads_in_its_reader_with_budget_and_valid(tmp_path, staged):
    files = E.render("regmix", _spec(tmp_path, staged)).files
    configs = _phase_files(files, "-regmix.yaml", staged)
    end = 0
    for (_, text), (_, mixture, tokens) in zip(configs, _expected(staged), strict=True):
        train, valid, updates = regmix_reader(text)
        assert dict(train) == {f"train_{d}": w for d, w in mixture.items()}
        # the default objective (mean of the per-domain losses): every domain is validated
        assert [v[0][0] for v in valid] == [f"valid_{d}" for d in TOKENS]
        assert updates["data_seed"] == 3 and updates["global_batch_size"] == BATCH // SEQ
        # max_step counts from the start of training (a later phase resumes from the last)
        end += tokens
        assert updates["max_step"] == math.ceil(end / BATCH)
    assert end == BUDGET


# -- Levanter -------------------------------------------------------------------------------
def levanter_reader(text: str) -> list[tuple[int, dict[str, float]]]:
    """``LMMixtureDatasetConfig.__post_init__`` and ``train_set`` (stanford-crfm/levanter
    ``src/levanter/data/text.py``), ``rescale_mixture_schedule_for_batch_schedule`` and
    ``MixtureDataset.__init__`` (``data/mixture.py``) on the exported file, with the batch
    the file's ``trainer.train_batch_size``: the stages as ``(sequence index, weights)``."""
    config = yaml.safe_load(text)
    data, batch = config["data"], config["trainer"]["train_batch_size"]
    weights = data["train_weights"]
    block = data.get("mixture_block_size", 2048)
    stages = [(0, weights)] if isinstance(weights, dict) else [tuple(s) for s in weights]
    for _, w in stages:
        if not all(name in data["configs"] for name in w):
            raise ValueError("Weight keys must be subset of config keys")
    if isinstance(weights, list):
        stages = [(step * batch, w) for step, w in stages]  # a constant batch schedule
    for i, (start, _) in enumerate(stages):
        if i == 0:
            assert start == 0
        else:
            assert start % block == 0, (
                "start_seq_index for a stage must be a multiple of block_size"
            )
            assert start > stages[i - 1][0], "Weights list must be sorted"
    assert block < 2**16
    return stages


@STAGES
def test_levanter_stages_start_on_blocks_with_the_budget(tmp_path, staged):
    text = E.render("levanter", _spec(tmp_path, staged)).files["levanter_data.yaml"]
    stages = levanter_reader(text)
    trainer = yaml.safe_load(text)["trainer"]
    assert trainer["train_batch_size"] == BATCH // SEQ
    assert trainer["num_train_steps"] == math.ceil(BUDGET / BATCH)
    expected = _expected(staged)
    assert [w for _, w in stages] == [m for _, m, _ in expected]
    if staged:
        # 400,000 tokens = step 24.4: the block-aligned step is 24 (8 steps a block)
        assert [s for s, _ in stages] == [0, 24 * BATCH // SEQ]


def test_levanter_block_fits_the_stage_or_the_stage_moves_to_a_block(tmp_path):
    """A stage on step 2 (512 sequences): a 512-sequence block takes it as it is; on step 1
    (256 sequences, below the 512-sequence smallest block) the stage moves to a multiple of 8
    steps, which here is step 0 again: a 422 naming the phase."""
    spec = _spec(tmp_path, True)
    spec.phases[0]["tokens"] = spec.phases[1]["start_tokens"] = 2 * BATCH
    text = E.render("levanter", spec).files["levanter_data.yaml"]
    assert [s for s, _ in levanter_reader(text)] == [0, 2 * BATCH // SEQ]
    assert yaml.safe_load(text)["data"]["mixture_block_size"] == 512
    spec.phases[0]["tokens"] = spec.phases[1]["start_tokens"] = BATCH
    with pytest.raises(E.ExportError, match="at least") as exc:
        E.render("levanter", spec)
    assert exc.value.field == "phases[1].tokens"


# -- olmix ----------------------------------------------------------------------------------
@STAGES
def test_olmix_proposal_per_phase(tmp_path, staged):
    files = E.render("olmix", _spec(tmp_path, staged)).files
    proposals = _phase_files(files, "_optimal.json", staged)
    for (_, text), (_, mixture, _) in zip(proposals, _expected(staged), strict=True):
        assert json.loads(text) == [{"domain": d, "weight": w} for d, w in mixture.items()]


# -- the figure the notes and the dashboard show ----------------------------------------------
@STAGES
def test_epoch_report_is_the_staged_science_figure(tmp_path, staged):
    rows = E.epoch_report(_spec(tmp_path, staged), "json")
    assert {r["name"]: r["epochs"] for r in rows} == pytest.approx(_epochs(staged))
    assert {r["name"]: r["cap"] for r in rows} == CAPS
    # the flat mixture of the staged spec (its first phase) at the whole budget is not it
    if staged:
        flat = {d: PHASES[0]["mixture_by_domain"][d] * BUDGET / TOKENS[d] for d in TOKENS}
        assert flat["code"] != pytest.approx(_epochs(True)["code"], rel=0.05)
