"""``mixopt runs import-mlflow`` and ``import-wandb`` end to end: a store the real MLflow client
writes and a W&B CSV export, imported into a project on the test server, with the duplicate
handling of every import and the CLI's exit codes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner, Result

import mixopt.extras
from mixopt.cli import ExitStatus
from mixopt.cli import app as cli
from mixopt.client import MixoptClient
from tests.integrations.test_run_import import WANDB_CSV, _log_runs


def _cli(env: dict, *args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def _failed(r: Result, status: ExitStatus, *words: str) -> None:
    assert r.exit_code == status, (r.exit_code, r.stdout, r.stderr)
    assert r.stdout == "" and r.stderr.startswith("error: "), (r.stdout, r.stderr)
    for word in words:
        assert word in " ".join(r.stderr.split()), r.stderr


@pytest.fixture
def env(live_server, admin_token) -> dict:
    return {"MIXOPT_URL": live_server, "MIXOPT_TOKEN": admin_token, "COLUMNS": "300"}


@pytest.fixture
def mlruns(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.chdir(tmp_path)
    _log_runs((tmp_path / "mlruns").as_uri())
    mlflow.set_tracking_uri(None)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    return tmp_path / "mlruns"


def test_import_mlflow_twice(env, live_server, admin_token, mlruns):
    c = MixoptClient(live_server, admin_token)
    project = c.create_project("from-mlflow", domains=["web", "code"]).id
    args = ["runs", "import-mlflow", project, "--tracking-uri", mlruns, "--experiment", "mixes"]
    r = _cli(env, *args, "--json", "--tag", "mlflow")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["created"], out["skipped"], out["runs"]) == (2, 0, 2)
    runs = {run.name: run for run in c.list_runs(project)}
    assert set(runs) == {"proxy-0", "proxy-1"}
    web = runs["proxy-1"]
    assert web.mixture == pytest.approx({"web": 0.7, "code": 0.3})
    assert web.metrics == {"val_loss/web": pytest.approx(2.9), "val_loss/code": pytest.approx(2.7)}
    assert web.model_params == 1_000_000 and web.tags == ["mlflow"] and web.status == "succeeded"
    assert len(web.external_id) == 32
    # the loss histories became curves: eval/web/loss at steps 0-2, eval/code/loss at step 2
    assert out["curves"] == 2
    curve = c.get_curve(project, web.id)["points"]
    assert [p["step"] for p in curve] == [0, 1, 2]
    assert [p["metrics"]["val_loss/web"] for p in curve] == pytest.approx([3.9, 3.4, 2.9])
    assert curve[2]["metrics"]["val_loss/code"] == pytest.approx(2.7)
    assert "val_loss/code" not in curve[0]["metrics"]

    _failed(_cli(env, *args), ExitStatus.API_REFUSED, "already imported", "--on-duplicate skip")
    r = _cli(env, *args, "--on-duplicate", "skip")
    assert r.exit_code == 0, r.stderr
    assert "imported 0 runs" in r.stdout and "skipped 2 already imported" in r.stdout
    assert len(c.list_runs(project)) == 2


def test_import_mlflow_without_curves(env, live_server, admin_token, mlruns):
    c = MixoptClient(live_server, admin_token)
    project = c.create_project("no-curves", domains=["web", "code"]).id
    args = ["runs", "import-mlflow", project, "--tracking-uri", mlruns, "--experiment", "mixes"]
    r = _cli(env, *args, "--no-curves", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["curves"] == 0
    assert all(c.get_curve(project, run.id)["points"] == [] for run in c.list_runs(project))


def test_import_mlflow_errors(env, live_server, admin_token, mlruns, tmp_path, monkeypatch):
    c = MixoptClient(live_server, admin_token)
    project = c.create_project("mlflow-errors", domains=["web", "code"]).id
    base = ["runs", "import-mlflow", project, "--tracking-uri"]
    _failed(_cli(env, *base, tmp_path / "nope"), ExitStatus.USAGE, "neither a directory nor a URI")
    _failed(
        _cli(env, *base, mlruns, "--experiment", "other"),
        ExitStatus.USAGE,
        "no run to import (1 left out",
        "no mixture parameters (mix.<domain>)",
    )
    _failed(
        _cli(env, *base, mlruns, "--experiment", "missing"),
        ExitStatus.USAGE,
        "no experiment named ['missing']",
    )
    _failed(
        _cli(env, *base, mlruns, "--loss-metrics", "eval/(\\w+)"),
        ExitStatus.USAGE,
        "(?P<domain>...)",
    )
    monkeypatch.setitem(mixopt.extras.EXTRA_MODULES, "mlflow", ("no_such_module_x",))
    _failed(_cli(env, *base, mlruns), ExitStatus.MISSING_EXTRA, "pip install 'mixopt[mlflow]'")


def test_import_wandb_csv(env, live_server, admin_token, tmp_path):
    c = MixoptClient(live_server, admin_token)
    project = c.create_project("from-wandb", domains=["web", "code"]).id
    export = tmp_path / "wandb_export.csv"
    export.write_text(WANDB_CSV)
    r = _cli(env, "runs", "import-wandb", project, export)
    assert r.exit_code == 0, r.stderr
    assert "imported 2 runs" in r.stdout
    runs = {run.external_id: run for run in c.list_runs(project)}
    assert set(runs) == {"a1b2", "e5f6"}  # the crashed run is not read
    assert runs["a1b2"].name == "brisk-sun-1" and runs["e5f6"].model_params == 2_000_000
    assert runs["e5f6"].metrics == {"val_loss/web": 3.0, "val_loss/code": 2.5}
    # one scale per upload: the duplicate check is per scale, as for every import
    _failed(_cli(env, "runs", "import-wandb", project, export), ExitStatus.API_REFUSED, "409")
    r = _cli(env, "runs", "import-wandb", project, export, "--on-duplicate", "skip", "--json")
    assert json.loads(r.stdout)["skipped"] == 2


def test_import_wandb_dry_run_and_unreachable_server(tmp_path):
    export = tmp_path / "runs.json"
    export.write_text(
        json.dumps([{"id": "x", "config": {"mix.web": 1}, "summary": {"eval/web/loss": 2}}])
    )
    env = {"MIXOPT_URL": "http://127.0.0.1:9", "MIXOPT_TOKEN": "x", "COLUMNS": "300"}
    r = _cli(env, "runs", "import-wandb", 1, export, "--dry-run", "--json")
    assert r.exit_code == 0, r.stderr
    plan = json.loads(r.stdout)["plan"]
    assert plan == [
        {
            "external_id": "x",
            "name": None,
            "mixture": {"web": 1.0},
            "metrics": {"val_loss/web": 2.0},
            "scale": {},
            "curve_points": 0,
        }
    ]
    _failed(_cli(env, "runs", "import-wandb", 1, export), ExitStatus.SERVER, "cannot reach")
    _failed(_cli(env, "runs", "import-wandb", 1, tmp_path / "none.csv"), ExitStatus.USAGE)
