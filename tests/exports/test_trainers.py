"""Every export loaded by the library it targets, with hostile names and paths.

Real packages (test dependencies, CPU wheels from the registry): ai2-olmo-core (OLMo-core's
``SourceMixtureDatasetConfig``), megatron-core (``get_blend_from_list``, the helper
Megatron-LM's ``--data-args-path``/``--per-split-data-args-path`` use) and Hugging Face
``datasets``. Levanter does not install beside this stack (it pins pydantic 1 and pulls jax
and ray), so its export is checked against the documented schema of
``levanter.data.text.LMMixtureDatasetConfig`` (``configs`` + ``train_weights``, a dict or a
``[(step, weights)]`` list); RegMix's trainer YAML and olmix's proposal JSON have no package
to load them and are checked against their published files' layout.
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
from mixopt.exports.hf import hf_plan

pytestmark = pytest.mark.science

#: names and paths that would run something if an export pasted them into code or a shell
HOSTILE = [
    'we\'b "$(touch PWNED_1)"',
    "co`touch PWNED_2`de",
    "ma;th && touch PWNED_3 #",
    "naïve 文本 \\n",
]


def _no_pwned(root: Path) -> None:
    found = [p for p in root.rglob("PWNED*")] + [p for p in Path.cwd().glob("PWNED*")]
    assert not found, f"an export ran a command: {found}"


def _spec(domains, mixture, **constraints) -> E.MixtureExport:
    return E.MixtureExport(
        mixture=mixture, domains=domains, constraints=constraints, scale={}, origin={"kind": "test"}
    )


# -- OLMo-core ------------------------------------------------------------------------------
def test_olmo_core_yaml_validates_builds_the_ratios_and_the_script_runs(tmp_path):
    pytest.importorskip(
        "olmo_core", reason="ai2-olmo-core is a test dependency (pip install -e '.[test]')"
    )
    from olmo_core.data.source_mixture import SourceMixtureDatasetConfig

    seq, tokens_per_file = 64, 64 * 400
    domains, mixture = [], {}
    weights = [0.5, 0.3, 0.15, 0.05]
    for i, (name, w) in enumerate(zip(HOSTILE, weights, strict=True)):
        folder = (
            tmp_path / f"tok $(touch PWNED_dir{i}) '{i}'\nimport os; os.system('touch PWNED_nl{i}')"
        )
        folder.mkdir()
        path = folder / "part-0.npy"
        np.arange(tokens_per_file, dtype=np.uint32).tofile(path)  # OLMo-core reads raw token arrays
        domains.append(
            {
                "name": name,
                "token_count": tokens_per_file,
                "source": {"path": f"/raw/{i}.jsonl"},
                "trainer_paths": {"olmo-core": [str(path)]},
            }
        )
        mixture[name] = w
    spec = _spec(
        domains,
        mixture,
        target_tokens=64 * 600,
        max_epochs=2.0,
        max_epochs_per_domain={HOSTILE[0]: 0.9},
        sequence_length=seq,
        global_batch_tokens=seq * 8,
        seed=3,
    )
    bundle = E.render("olmo-core", spec)
    for name, text in bundle.files.items():
        (tmp_path / name).write_text(text)

    config = SourceMixtureDatasetConfig.from_yaml(str(tmp_path / "olmo_core_mixture.yaml"))
    config.validate()
    assert [s.source_name for s in config.source_list.sources] == HOSTILE
    assert [s.target_ratio for s in config.source_list.sources] == weights
    assert (
        config.requested_tokens == 64 * 600 and config.global_batch_size == 512 and config.seed == 3
    )
    first = config.source_list.sources[0]
    assert (first.max_repetition_ratio, first.max_source_fraction) == (1.0, 0.9)
    assert config.source_list.sources[1].max_repetition_ratio == 2.0

    built = config.build(npdtype=np.uint32, sequence_length=seq)
    got = {s.name: sum(p.tokens for p in s.path_tokens) for s in built.sources}
    total = sum(got.values())
    for name, w in mixture.items():
        assert abs(got[name] / total - w) < 0.01, (name, got[name] / total, w)

    # the cap is what OLMo-core enforces: half an epoch of the first source is too little
    tight = _spec(
        domains,
        mixture,
        target_tokens=64 * 600,
        max_epochs_per_domain={HOSTILE[0]: 0.5},
        sequence_length=seq,
        global_batch_tokens=seq * 8,
        seed=3,
    )
    (tmp_path / "tight.yaml").write_text(
        E.render("olmo-core", tight).files["olmo_core_mixture.yaml"]
    )
    with pytest.raises(Exception, match="Insufficient tokens"):
        SourceMixtureDatasetConfig.from_yaml(str(tmp_path / "tight.yaml")).build(
            npdtype=np.uint32, sequence_length=seq
        )

    # the generated script loads the YAML next to it and builds (and runs nothing else)
    out = subprocess.run(
        [sys.executable, "olmo_core_mixture.py", "uint32"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert HOSTILE[1] in out.stdout
    _no_pwned(tmp_path)


def test_olmo_core_needs_what_it_reads():
    domains = [
        {"name": "web", "token_count": 10, "trainer_paths": {"olmo-core": ["/t/web.npy"]}},
        {"name": "code", "token_count": 10, "source": {"path": "/raw/code.jsonl"}},
    ]
    with pytest.raises(E.ExportError) as exc:
        E.render("olmo-core", _spec(domains, {"web": 0.5, "code": 0.5}, target_tokens=100))
    assert exc.value.field == "domains[1].trainer_paths.olmo-core"
    full = [domains[0], {**domains[1], "trainer_paths": {"olmo-core": ["/t/code.npy"]}}]
    for missing, field in (
        ("sequence_length", "constraints.sequence_length"),
        ("global_batch_tokens", "constraints.global_batch_tokens"),
        ("seed", "constraints.seed"),
        ("target_tokens", "constraints.target_tokens"),
    ):
        cons = {"target_tokens": 100, "sequence_length": 8, "global_batch_tokens": 64, "seed": 1}
        del cons[missing]
        with pytest.raises(E.ExportError) as exc:
            E.render("olmo-core", _spec(full, {"web": 0.5, "code": 0.5}, **cons))
        assert exc.value.field == field, missing
    with pytest.raises(E.ExportError, match="multiple of sequence_length"):
        E.render(
            "olmo-core",
            _spec(
                full,
                {"web": 0.5, "code": 0.5},
                target_tokens=100,
                sequence_length=8,
                global_batch_tokens=60,
                seed=1,
            ),
        )


# -- Megatron -------------------------------------------------------------------------------
def test_megatron_data_args_parse_with_megatron_core_into_the_right_pairs(tmp_path):
    pytest.importorskip(
        "megatron.core", reason="megatron-core is a test dependency (pip install -e '.[test]')"
    )
    from megatron.core.datasets.utils import get_blend_from_list

    prefixes = [
        '/data/we\'b_"$(reboot)"_text_document',
        "/data/co`id`de_text_document",
        "/data/*_text_document",
        "/données/数学;rm_text_document",
    ]
    names = ["web", "code", "glob", "math"]
    domains = [
        {"name": n, "trainer_paths": {"megatron": [p]}}
        for n, p in zip(names, prefixes, strict=True)
    ]
    domains.append({"name": "unused", "trainer_paths": {}})
    mixture = {"web": 0.4, "code": 0.3, "glob": 0.2, "math": 0.1, "unused": 0.0}
    bundle = E.render("megatron", _spec(domains, mixture))
    (tmp_path / "data_args.txt").write_text(bundle.files["data_args.txt"])
    # what Megatron-LM does with --data-args-path: read, split on whitespace, get_blend_from_list
    got_prefixes, got_weights = get_blend_from_list(
        (tmp_path / "data_args.txt").read_text().split()
    )
    assert got_prefixes == prefixes and got_weights == [0.4, 0.3, 0.2, 0.1]
    per_split = json.loads(bundle.files["per_split_data_args.json"])
    assert get_blend_from_list(per_split["train"]) == (prefixes, [0.4, 0.3, 0.2, 0.1])
    assert per_split["valid"] is None and per_split["test"] is None
    _no_pwned(tmp_path)


def test_megatron_per_split_blend_from_declared_held_out_prefixes():
    pytest.importorskip(
        "megatron.core", reason="megatron-core is a test dependency (pip install -e '.[test]')"
    )
    from megatron.core.datasets.utils import get_blend_from_list

    domains = [
        {
            "name": n,
            "trainer_paths": {
                "megatron": [f"/tr/{n}_text_document"],
                "megatron:valid": [f"/va/{n}_text_document"],
            },
        }
        for n in ("a", "b")
    ]
    per_split = json.loads(
        E.render("megatron", _spec(domains, {"a": 0.25, "b": 0.75})).files[
            "per_split_data_args.json"
        ]
    )
    assert get_blend_from_list(per_split["valid"]) == (
        ["/va/a_text_document", "/va/b_text_document"],
        [0.25, 0.75],
    )
    assert per_split["test"] is None
    domains[1]["trainer_paths"].pop("megatron:valid")
    with pytest.raises(E.ExportError) as exc:
        E.render("megatron", _spec(domains, {"a": 0.25, "b": 0.75}))
    assert exc.value.field == "domains[1].trainer_paths.megatron:valid"


@pytest.mark.parametrize(
    "prefix,message",
    [
        ("/data/with space_text_document", "split on whitespace"),
        ("/data/new\nline_text_document", "split on whitespace"),
        ("/data/web.jsonl", "preprocessed prefix"),
        ("/data/web_text_document.bin", "preprocessed prefix"),
    ],
)
def test_megatron_refuses_prefixes_it_would_misread(prefix, message):
    domains = [
        {"name": "web", "trainer_paths": {"megatron": [prefix]}},
        {"name": "b", "trainer_paths": {"megatron": ["/b"]}},
    ]
    with pytest.raises(E.ExportError, match=message) as exc:
        E.render("megatron", _spec(domains, {"web": 0.5, "b": 0.5}))
    assert exc.value.field == "domains[0].trainer_paths.megatron"


# -- Hugging Face datasets ------------------------------------------------------------------
def _jsonl_domain(folder: Path, name: str, n_docs: int, words: int, tag: str) -> dict:
    folder.mkdir(parents=True)
    path = folder / "part-0.jsonl"
    rng = np.random.default_rng(len(tag))
    lengths = rng.integers(max(1, words // 2), words * 3 // 2 + 1, size=n_docs)
    with path.open("w") as fh:
        for i, k in enumerate(lengths):
            fh.write(
                json.dumps({"body": " ".join([tag] + [f"w{i}"] * (int(k) - 1)), "id": i}) + "\n"
            )
    return {
        "name": name,
        "token_count": int(lengths.sum()),
        "documents": n_docs,
        "source": {"path": str(path), "format": "jsonl", "text_field": "body"},
    }


def _run_hf(tmp_path: Path, script: str, take: int) -> list[str]:
    (tmp_path / "hf_mixture.py").write_text(script)
    driver = (
        "import json, sys\nsys.path.insert(0, '.')\nimport hf_mixture\n"
        f"print(json.dumps([e['text'].split()[0] + ' ' + str(len(e['text'].split())) "
        f"for _, e in zip(range({take}), hf_mixture.MIXED)]))\n"
    )
    env = {
        **os.environ,
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
    }
    out = subprocess.run(
        [sys.executable, "-c", driver],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_hf_interleaves_token_shares_within_2_percent(tmp_path):
    pytest.importorskip(
        "datasets", reason="datasets is a test dependency (pip install -e '.[test]')"
    )
    # documents of very different lengths: per-example probabilities must not equal the weights
    specs = [
        ("web", 8000, 60, "WEB"),
        ("code", 8000, 12, "CODE"),
        (HOSTILE[0], 8000, 30, "HOSTILE"),
    ]
    domains = [
        _jsonl_domain(
            tmp_path / f"d{i} $(touch PWNED_hf{i})\n')\nopen('PWNED_nl{i}', 'w')#",
            n,
            docs,
            words,
            tag,
        )
        for i, (n, docs, words, tag) in enumerate(specs)
    ]
    mixture = {"web": 0.5, "code": 0.2, HOSTILE[0]: 0.3}
    spec = _spec(domains, mixture, target_tokens=2_000_000, seed=11, max_epochs=4)
    plan = hf_plan(spec, E.rounded_weights(mixture))
    assert plan["examples"] > 20_000
    samples = _run_hf(tmp_path, E.render("hf", spec).files["hf_mixture.py"], 20_000)
    assert len(samples) == 20_000
    tokens: dict[str, int] = {}
    for s in samples:
        tag, n = s.split()
        tokens[tag] = tokens.get(tag, 0) + int(n)
    total = sum(tokens.values())
    shares = {
        "web": tokens["WEB"] / total,
        "code": tokens["CODE"] / total,
        HOSTILE[0]: tokens["HOSTILE"] / total,
    }
    for name, w in mixture.items():
        assert abs(shares[name] - w) < 0.02, (name, shares[name], w)
    # per-example probabilities are far from the token shares here (that is the point)
    assert abs(sum(1 for s in samples if s.startswith("CODE ")) / 20_000 - 0.2) > 0.1
    _no_pwned(tmp_path)


def test_hf_stops_within_the_epoch_caps(tmp_path):
    pytest.importorskip(
        "datasets", reason="datasets is a test dependency (pip install -e '.[test]')"
    )
    small = _jsonl_domain(tmp_path / "small", "small", 200, 20, "SMALL")
    big = _jsonl_domain(tmp_path / "big", "big", 5000, 20, "BIG")
    # a budget that would need the small domain ~10 times; its cap is 1.5 epochs
    spec = _spec(
        [small, big],
        {"small": 0.5, "big": 0.5},
        target_tokens=80_000,
        seed=5,
        max_epochs_per_domain={"small": 1.5},
        max_epochs=1.0,
    )
    samples = _run_hf(tmp_path, E.render("hf", spec).files["hf_mixture.py"], 100_000)
    n_small = sum(1 for s in samples if s.startswith("SMALL "))
    n_big = len(samples) - n_small
    assert n_small <= int(200 * 1.5) and n_big <= 5000
    assert n_small == 300  # the stream stopped when the small domain reached its cap


def test_hf_needs_documents_token_counts_seed_and_budget():
    d = {"name": "a", "token_count": 100, "documents": 10, "source": {"path": "/a.jsonl"}}
    for key, field in (
        ("documents", "domains[0].documents"),
        ("token_count", "domains[0].token_count"),
    ):
        with pytest.raises(E.ExportError) as exc:
            E.render("hf", _spec([{**d, key: None}], {"a": 1.0}, target_tokens=10, seed=1))
        assert exc.value.field == field
    with pytest.raises(E.ExportError) as exc:
        E.render("hf", _spec([d], {"a": 1.0}, target_tokens=10))
    assert exc.value.field == "constraints.seed"
    with pytest.raises(E.ExportError) as exc:
        E.render(
            "hf",
            _spec(
                [{**d, "source": {"path": "/data/dir", "format": "auto"}}],
                {"a": 1.0},
                target_tokens=10,
                seed=1,
            ),
        )
    assert "file type" in exc.value.message


# -- Levanter, RegMix, olmix, JSON ------------------------------------------------------------
def test_levanter_mixture_matches_lm_mixture_dataset_config():
    paths = [f"/raw/{i}\n- injected: `id` $(id) \"'.jsonl" for i in range(len(HOSTILE))]
    domains = [{"name": n, "source": {"path": p}} for n, p in zip(HOSTILE, paths, strict=True)]
    mixture = dict(zip(HOSTILE, [0.4, 0.3, 0.2, 0.1], strict=True))
    data = yaml.safe_load(
        E.render("levanter", _spec(domains, mixture)).files["levanter_data.yaml"]
    )["data"]
    assert [data["configs"][n]["train_urls"] for n in HOSTILE] == [
        [p] for p in paths
    ]  # the YAML kept them whole
    # LMMixtureDatasetConfig: the same names in configs and train_weights, train_urls per source
    assert set(data["configs"]) == set(data["train_weights"]) == set(HOSTILE)
    assert (
        math.isclose(sum(data["train_weights"].values()), 1.0)
        and data["train_weights"][HOSTILE[0]] == 0.4
    )

    # an online session's trajectory, 16 sequences a step: a stage may start every 128 steps
    # (step x 16 a multiple of Levanter's 2048-sequence mixture block)
    schedule = [
        (100, {HOSTILE[0]: 1.0}),
        (300, {HOSTILE[1]: 1.0}),
        (310, {HOSTILE[0]: 0.5, HOSTILE[3]: 0.5}),
    ]
    staged = E.MixtureExport(
        mixture=mixture,
        domains=domains,
        schedule=schedule,
        constraints={"sequence_length": 64, "global_batch_tokens": 64 * 16},
    )
    stages = yaml.safe_load(E.render("levanter", staged).files["levanter_data.yaml"])["data"][
        "train_weights"
    ]
    # [(step, weights)]: the first stage starts at step 0, steps increase on whole blocks, every
    # stage names every source; two versions on one aligned step: the later one holds
    assert [s[0] for s in stages] == [0, 128, 256]
    assert all(set(w) == set(HOSTILE) and math.isclose(sum(w.values()), 1.0) for _, w in stages)
    assert stages[2][1][HOSTILE[3]] == 0.5 and stages[1][1][HOSTILE[0]] == 1.0
    with pytest.raises(E.ExportError) as exc:  # without the batch, no step can be placed
        E.render("levanter", E.MixtureExport(mixture=mixture, domains=domains, schedule=schedule))
    assert exc.value.field == "constraints.sequence_length"


def test_regmix_and_olmix_files():
    domains = [{"name": n} for n in HOSTILE]
    mixture = dict(zip(HOSTILE, [0.4, 0.3, 0.2, 0.1], strict=True))
    spec = E.MixtureExport(
        mixture=mixture, domains=domains, objective={f"val_loss/{HOSTILE[2]}": 1.0}, slug="m"
    )
    config = yaml.safe_load(E.render("regmix", spec).files["m-regmix.yaml"])
    # sail-sg/regmix mixture_config/*.yaml: train: {train_<domain>: w}, valid: {valid_<domain>: w}
    assert config["train"] == {f"train_{n}": w for n, w in mixture.items()}
    assert config["valid"] == {f"valid_{HOSTILE[2]}": 1.0}
    proposal = json.loads(E.render("olmix", spec).files["m_optimal.json"])
    # olmix/fit writes [{"domain": name, "weight": w}] in the domains' order
    assert proposal == [{"domain": n, "weight": w} for n, w in mixture.items()]


def test_json_export_says_where_the_mixture_came_from():
    a, b = HOSTILE[0], HOSTILE[3]
    spec = E.MixtureExport(
        mixture={a: 1 / 3, b: 2 / 3},
        domains=[{"name": a}, {"name": b}],
        constraints={"max_epochs": 2},
        scale={"model_params": 10**9},
        origin={"kind": "recommendation", "fit": {"id": 4, "estimator": "regmix_lgbm"}},
        slug="r",
    )
    body = json.loads(E.render("json", spec).files["r.json"])
    assert body["mixture"] == {a: 0.333333, b: 0.666667} and sum(body["mixture"].values()) == 1.0
    assert body["origin"]["fit"]["estimator"] == "regmix_lgbm" and body["scale"] == {
        "model_params": 10**9
    }
    assert body["constraints"] == {"max_epochs": 2}
    with pytest.raises(E.ExportError) as exc:
        E.render("json", E.MixtureExport(mixture={"zz": 1.0}, domains=[{"name": a}]))
    assert exc.value.field == "mixture"
    with pytest.raises(E.ExportError) as exc:
        E.render("yaml", spec)
    assert exc.value.field == "format"


def test_staged_olmo_core_phases_share_the_epoch_cap(tmp_path):
    """One epoch of ``a`` (6,400 tokens) over two phases: the main phase draws 4,800 tokens of it
    and the anneal 1,600, so their configs cap ``a`` at 0.75 and 0.25 of its tokens (not 1.0
    each, which would allow two epochs in all); OLMo-core builds each phase within its cap."""
    pytest.importorskip(
        "olmo_core", reason="ai2-olmo-core is a test dependency (pip install -e '.[test]')"
    )
    from olmo_core.data.source_mixture import SourceMixtureDatasetConfig

    domains = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.npy"
        np.arange(6400, dtype=np.uint32).tofile(path)
        domains.append(
            {"name": name, "token_count": 6400, "trainer_paths": {"olmo-core": [str(path)]}}
        )
    phases = [
        {
            "name": "main",
            "tokens": 6400,
            "start_tokens": 0,
            "mixture_by_domain": {"a": 0.75, "b": 0.25},
        },
        {
            "name": "anneal",
            "tokens": 3200,
            "start_tokens": 6400,
            "mixture_by_domain": {"a": 0.5, "b": 0.5},
        },
    ]
    spec = E.MixtureExport(
        mixture=phases[0]["mixture_by_domain"],
        domains=domains,
        scale={},
        origin={"kind": "test"},
        phases=phases,
        constraints={
            "max_epochs": 1.0,
            "sequence_length": 64,
            "global_batch_tokens": 640,
            "seed": 1,
        },
    )
    assert E.phase_epoch_caps(spec) == [{"a": 0.75, "b": 0.5}, {"a": 0.25, "b": 0.5}]
    bundle = E.render("olmo-core", spec)
    caps = {}
    for k, name in enumerate(("main", "anneal")):
        (tmp_path / f"{k}.yaml").write_text(bundle.files[f"phase{k}-{name}/olmo_core_mixture.yaml"])
        config = SourceMixtureDatasetConfig.from_yaml(str(tmp_path / f"{k}.yaml"))
        caps[name] = {
            s.source_name: s.max_source_fraction * s.max_repetition_ratio
            for s in config.source_list.sources
        }
        built = config.build(npdtype=np.uint32, sequence_length=64)
        got = {s.name: sum(p.tokens for p in s.path_tokens) for s in built.sources}
        assert got["a"] == pytest.approx(
            phases[k]["tokens"] * phases[k]["mixture_by_domain"]["a"], abs=64
        )
    assert caps == {"main": {"a": 0.75, "b": 0.5}, "anneal": {"a": 0.25, "b": 0.5}}
    assert caps["main"]["a"] + caps["anneal"]["a"] == pytest.approx(
        1.0
    )  # the project's one epoch, shared
