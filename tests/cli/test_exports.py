"""``MixoptClient.export_mixture`` and ``mixopt mixture export`` / ``mixopt runs import`` scale
options against a real server."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
import yaml
from typer.testing import CliRunner

from app.store.models import Recommendation
from mixopt.cli import app as cli
from mixopt.client import MixoptClient, MixoptError
from tests.conftest import REGMIX_DIR, count_rows

DOMAINS = [
    {"name": "web", "token_count": 3000, "trainer_paths": {"olmo-core": ["/t/web.npy"]}},
    {"name": "code", "token_count": 1000, "trainer_paths": {"olmo-core": ["/t/code.npy"]}},
]
CONSTRAINTS = {"target_tokens": 4000, "sequence_length": 8, "global_batch_tokens": 64, "seed": 1}


def test_client_export_mixture(live_server, admin_token, session):
    c = MixoptClient(live_server, admin_token)
    p = c.create_project("x", domains=DOMAINS, constraints=CONSTRAINTS)
    rec = Recommendation(
        project_id=p["id"],
        source="gp",
        mixture={"web": 0.6, "code": 0.4},
        constraints={},
        target_scale={},
        binding=[],
        details={},
    )
    session.add(rec)
    session.commit()
    name, data = c.export_mixture(p["id"], rec.id, format="regmix")
    config = yaml.safe_load(data)
    assert name.endswith("-regmix.yaml")
    assert config["train"] == {"train_web": 0.6, "train_code": 0.4}
    # RegMix's reader deletes config["valid"] unconditionally: always there (every domain here)
    assert config["valid"] == {"valid_web": 0.5, "valid_code": 0.5}
    name, data = c.export_mixture(p["id"], baseline="natural", format="olmo-core")
    assert name.endswith(".zip")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert (
            yaml.safe_load(zf.read("olmo_core_mixture.yaml"))["source_list"]["sources"][0][
                "target_ratio"
            ]
            == 0.75
        )
    with pytest.raises(MixoptError) as exc:
        c.export_mixture(p["id"], rec.id, format="hf")
    assert exc.value.status == 422 and "documents" in exc.value.detail
    with pytest.raises(ValueError):
        c.export_mixture(p["id"], rec.id, baseline="natural")


def test_cli_mixture_export_and_import_options(live_server, admin_token, tmp_path):
    runner = CliRunner()
    env = {"MIXOPT_URL": live_server, "MIXOPT_TOKEN": admin_token}
    c = MixoptClient(live_server, admin_token)
    p = c.create_project("x", domains=DOMAINS, constraints=CONSTRAINTS)
    r = runner.invoke(
        cli,
        [
            "mixture",
            "export",
            "--project",
            str(p["id"]),
            "--baseline",
            "uniform",
            "--format",
            "olmix",
        ],
        env=env,
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == [
        {"domain": "web", "weight": 0.5},
        {"domain": "code", "weight": 0.5},
    ]
    out = tmp_path / "mix.zip"
    r = runner.invoke(
        cli,
        [
            "mixture",
            "export",
            "-p",
            str(p["id"]),
            "--baseline",
            "uniform",
            "--format",
            "olmo-core",
            "-o",
            str(out),
        ],
        env=env,
    )
    assert r.exit_code == 0, r.output
    assert zipfile.ZipFile(out).namelist() == ["olmo_core_mixture.yaml", "olmo_core_mixture.py"]
    r = runner.invoke(
        cli, ["mixture", "export", "9999", "-p", str(p["id"]), "--format", "json"], env=env
    )
    assert r.exit_code == 1 and "not found" in r.output

    # runs import: the scale options and --on-duplicate, as the API spells them
    q = c.create_project("pile")
    mix, loss = str(REGMIX_DIR / "train_mixture_1m.csv"), str(REGMIX_DIR / "train_pile_loss_1m.csv")
    for params in ("1000000", "60000000"):
        r = runner.invoke(
            cli,
            [
                "runs",
                "import",
                str(q["id"]),
                mix,
                loss,
                "--model-params",
                params,
                "--train-tokens",
                "1000000000",
            ],
            env=env,
        )
        assert r.exit_code == 0 and "imported 512 runs" in r.output, r.output
    r = runner.invoke(
        cli,
        [
            "runs",
            "import",
            str(q["id"]),
            mix,
            loss,
            "--model-params",
            "60000000",
            "--train-tokens",
            "1000000000",
        ],
        env=env,
    )
    assert r.exit_code == 1 and "--on-duplicate skip" in r.output
    r = runner.invoke(
        cli,
        [
            "runs",
            "import",
            str(q["id"]),
            mix,
            loss,
            "--model-params",
            "60000000",
            "--train-tokens",
            "1000000000",
            "--on-duplicate",
            "skip",
        ],
        env=env,
    )
    assert r.exit_code == 0 and "imported 0 runs" in r.output and "skipped 512" in r.output
    assert count_rows("run") == 1024


def test_megatron_notes_reach_the_client_and_the_cli(live_server, admin_token, tmp_path):
    """Megatron does not enforce epoch caps; the API says so in ``X-Mixopt-Notes``. The client's
    ``export_mixture_file`` returns that text and ``mixopt mixture export`` prints it on stderr
    (and as ``notes`` with ``--json``), also when only ``data_args.txt`` is asked for."""
    domains = [
        {**d, "trainer_paths": {"megatron": [f"/tok/{d['name']}_text_document"]}} for d in DOMAINS
    ]
    c = MixoptClient(live_server, admin_token)
    p = c.create_project("meg", domains=domains, constraints={**CONSTRAINTS, "max_epochs": 2})
    f = c.export_mixture_file(p["id"], baseline="natural", format="megatron", part="data_args.txt")
    assert f.name == "data_args.txt"
    assert "does not enforce epoch caps" in f.notes and "'web'" in f.notes
    assert c.export_mixture(p["id"], baseline="natural", format="json")[0].endswith(".json")
    assert c.export_mixture_file(p["id"], baseline="natural", format="json").notes == ""
    runner = CliRunner()
    env = {"MIXOPT_URL": live_server, "MIXOPT_TOKEN": admin_token}
    args = ["mixture", "export", "-p", str(p["id"]), "--baseline", "natural"]
    args += ["--format", "megatron", "--part", "data_args.txt"]
    r = runner.invoke(cli, args, env=env)
    assert r.exit_code == 0, r.output
    assert "/tok/web_text_document" in r.stdout and "does not enforce" not in r.stdout
    assert "note:" in r.stderr and "does not enforce epoch caps" in r.stderr
    r = runner.invoke(cli, [*args, "--json"], env=env)
    assert r.exit_code == 0, r.output
    assert "does not enforce epoch caps" in json.loads(r.stdout)["notes"]
