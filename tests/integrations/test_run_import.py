"""The mapping of tracked runs to mixopt runs, and the MLflow and W&B readers (stores that the
real MLflow client writes; exports in the shapes W&B writes)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from mixopt.integrations import mlflow_import, run_import, wandb_import
from mixopt.integrations.run_import import RunMapping, by_scale, csv_pair, plan

pytestmark = pytest.mark.science


def test_mixture_from_prefixed_params_is_normalised():
    m = RunMapping()
    params = {"mix.web": "3", "mix.code": "1", "lr": "0.1", "mix.": "x"}
    assert m.mixture(params) == {"web": 0.75, "code": 0.25}


def test_mixture_from_a_json_param():
    m = RunMapping(mixture_json="mixture")
    assert m.mixture({"mixture": '{"web": 1, "code": 1}'}) == {"web": 0.5, "code": 0.5}
    assert m.mixture({"mixture": {"web": 2, "code": 2}}) == {"web": 0.5, "code": 0.5}
    for params, words in (
        ({}, "no parameter 'mixture'"),
        ({"mixture": "{web"}, "not JSON"),
        ({"mixture": "[1, 2]"}, "not a JSON object"),
        ({"mixture": '{"web": "x"}'}, "'web' is not a number"),
        ({"mixture": '{"web": 0}'}, "sums to 0"),
    ):
        with pytest.raises(ValueError) as e:
            m.mixture(params)
        assert words in str(e.value), (params, str(e.value))


def test_losses_by_pattern_and_by_regex():
    metrics = {"eval/web/loss": 3.0, "eval/code/loss": "2.5", "eval/web/acc": 0.4, "loss": 9}
    assert RunMapping().losses(metrics) == {"val_loss/web": 3.0, "val_loss/code": 2.5}
    m = RunMapping(loss_metrics=r"^(?P<domain>\w+)_val_loss$")
    assert m.losses({"web_val_loss": 1.5, "web_loss": 2.0}) == {"val_loss/web": 1.5}
    assert RunMapping().losses({"eval/web/loss": float("nan")}) == {}
    with pytest.raises(ValueError, match="domain"):
        RunMapping(loss_metrics=r"^eval/(\w+)/loss$")
    with pytest.raises(ValueError, match="not a regular expression"):
        RunMapping(loss_metrics=r"(unclosed")


def test_scale_from_params_renamed_or_fixed():
    m = RunMapping(scale_params={"model_params": "n_params"}, fixed_scale={"train_tokens": 10**9})
    scale = m.scale(
        {"n_params": "1e6", "model_params": "5", "train_tokens": "7", "train_steps": 2.5}
    )
    assert scale == {"model_params": 10**6, "train_tokens": 10**9}  # 2.5 steps is no scale
    with pytest.raises(ValueError, match="unknown scales"):
        RunMapping(scale_params={"layers": "n_layers"})


def test_curve_from_metric_histories():
    m = RunMapping(loss_metrics="eval/{domain}/loss")
    curve = m.curve(
        {
            "eval/web/loss": [(20, 2.5), (10, 3.0), (10, 2.9), (30, float("nan")), (-1, 1.0)],
            "eval/code/loss": [(20, "1.5"), (2.5, 9.0)],
            "train/loss": [(10, 5.0)],  # not a loss under the mapping
        }
    )
    # step order; a step logged twice keeps the last value; NaN, negative, fractional steps out
    assert curve == [
        {"step": 10, "metrics": {"val_loss/web": 2.9}},
        {"step": 20, "metrics": {"val_loss/web": 2.5, "val_loss/code": 1.5}},
    ]
    assert m.curve({"eval/web/loss": [(5, 2.0)]}) == []  # one value is not a curve
    assert m.loss_keys(["eval/web/loss", "train/loss", "eval/code/loss"]) == [
        "eval/web/loss",
        "eval/code/loss",
    ]


def test_long_histories_are_thinned_to_the_limit(monkeypatch):
    monkeypatch.setattr(run_import, "MAX_CURVE_POINTS", 5)
    curve = RunMapping().curve({"eval/web/loss": [(s, 1.0 / (s + 1)) for s in range(101)]})
    assert [p["step"] for p in curve] == [0, 25, 50, 75, 100]


def test_plan_leaves_out_runs_with_reasons():
    records = [
        ("r1", "one", {"mix.a": 1, "mix.b": 1}, {"eval/a/loss": 2.0}),
        ("r2", None, {"lr": 1}, {"eval/a/loss": 2.0}),
        ("r3", None, {"mix.a": 1}, {"train/loss": 2.0}),
        ("r1", None, {"mix.a": 1}, {"eval/a/loss": 2.0}),
    ]
    p = plan(records, RunMapping())
    assert [r.external_id for r in p.runs] == ["r1"]
    reasons = dict(p.skipped[:2]) | {"dup": p.skipped[2][1]}
    assert "no mixture parameters (mix.<domain>)" in reasons["r2"]
    assert "no loss metric matches 'eval/{domain}/loss'" in reasons["r3"]
    assert reasons["dup"] == "the same id twice in the input"


def test_csv_pair_reads_back_and_groups_by_scale():
    p = plan(
        [
            ("r1", "one", {"mix.a": 1, "model_params": 10}, {"eval/a/loss": 2.0}),
            ("r2", "two", {"mix.a": 1, "mix.b": 3, "model_params": 20}, {"eval/b/loss": 1.0}),
            ("r3", None, {"mix.b": 1, "model_params": 10}, {"eval/a/loss": 0.5}),
        ],
        RunMapping(),
    )
    groups = by_scale(p.runs)
    assert sorted(groups) == [(("model_params", 10),), (("model_params", 20),)]
    ratios, metrics = csv_pair(groups[(("model_params", 10),)])
    rows = list(csv.DictReader(io.StringIO(ratios)))
    assert [(r["run"], r["name"], float(r["a"]), float(r["b"])) for r in rows] == [
        ("r1", "one", 1.0, 0.0),
        ("r3", "", 0.0, 1.0),
    ]
    assert list(csv.DictReader(io.StringIO(metrics)))[1] == {"run": "r3", "val_loss/a": "0.5"}


# -- MLflow -----------------------------------------------------------------------------------


def _log_runs(uri: str) -> None:
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("mixes")
    for i, (web, loss) in enumerate([(0.2, 3.1), (0.7, 2.9)]):
        with mlflow.start_run(run_name=f"proxy-{i}"):
            mlflow.log_params({"mix.web": web, "mix.code": 1 - web, "model_params": 1_000_000})
            for step in range(3):  # the latest value is the run's metric
                mlflow.log_metric("eval/web/loss", loss + 1 - step / 2, step=step)
            mlflow.log_metric("eval/code/loss", 2.0 + web, step=2)
    with mlflow.start_run(run_name="crashed"):
        mlflow.log_params({"mix.web": 1})
        mlflow.log_metric("eval/web/loss", 9.0)
        mlflow.end_run(status="FAILED")
    mlflow.set_experiment("other")
    with mlflow.start_run(run_name="unrelated"):
        mlflow.log_param("lr", 0.1)


@pytest.fixture(params=["file", "sqlite"])
def mlflow_store(request, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.chdir(tmp_path)
    if request.param == "file":
        location = str(tmp_path / "mlruns")
        _log_runs((tmp_path / "mlruns").as_uri())
    else:
        location = f"sqlite:///{tmp_path / 'mlflow.db'}"
        _log_runs(location)
    import mlflow

    mlflow.set_tracking_uri(None)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    return location


def test_mlflow_store_written_by_mlflow(mlflow_store):
    p = mlflow_import.import_plan(mlflow_store, RunMapping(), experiments=["mixes"])
    got = sorted((r.name, r.mixture["web"], r.metrics, r.scale) for r in p.runs)
    assert [g[0] for g in got] == ["proxy-0", "proxy-1"]  # the FAILED run is not read
    assert got[0][1] == pytest.approx(0.2) and got[1][1] == pytest.approx(0.7)
    assert got[0][2] == {"val_loss/web": pytest.approx(3.1), "val_loss/code": pytest.approx(2.2)}
    assert got[1][3] == {"model_params": 1_000_000}
    assert all(len(r.external_id) == 32 for r in p.runs)  # MLflow's run ids
    proxy0 = next(r for r in p.runs if r.name == "proxy-0")
    assert [(pt["step"], sorted(pt["metrics"])) for pt in proxy0.curve] == [
        (0, ["val_loss/web"]),
        (1, ["val_loss/web"]),
        (2, ["val_loss/code", "val_loss/web"]),
    ]
    flat = mlflow_import.import_plan(mlflow_store, RunMapping(), ["mixes"], curves=False)
    assert all(r.curve == [] for r in flat.runs)
    everything = mlflow_import.import_plan(
        mlflow_store, RunMapping(), statuses=["FINISHED", "FAILED"]
    )
    assert len(everything.runs) == 3
    assert [why for _, why in everything.skipped] == ["no mixture parameters (mix.<domain>)"]
    with pytest.raises(ValueError, match=r"no experiment named \['nope'\]"):
        mlflow_import.import_plan(mlflow_store, RunMapping(), experiments=["nope"])


def test_mlflow_location_must_exist(tmp_path):
    with pytest.raises(ValueError, match="neither a directory nor a URI"):
        mlflow_import.tracking_uri(str(tmp_path / "missing"))
    assert mlflow_import.tracking_uri("http://host:5000") == "http://host:5000"


# -- W&B --------------------------------------------------------------------------------------

WANDB_CSV = (
    "\ufeffName,ID,State,Notes,User,Tags,Created,Runtime,Sweep,mix.web,mix.code,model_params,"
    "eval/web/loss,eval/code/loss,_step\n"
    "brisk-sun-1,a1b2,finished,-,me,,2026-01-01T00:00:00.000Z,120,,0.25,0.75,1000000,"
    "3.5,2.25,300\n"
    "calm-sea-2,c3d4,crashed,-,me,,2026-01-01T00:00:00.000Z,12,,0.5,0.5,1000000,4.0,3.0,20\n"
    "dry-leaf-3,e5f6,finished,-,me,,2026-01-01T00:00:00.000Z,120,,0.9,0.1,2000000,3.0,2.5,300\n"
)


def test_wandb_csv_as_the_ui_exports_it(tmp_path):
    path = tmp_path / "wandb_export.csv"
    path.write_text(WANDB_CSV)
    p = wandb_import.import_plan(path, RunMapping())
    assert [(r.external_id, r.name) for r in p.runs] == [
        ("a1b2", "brisk-sun-1"),
        ("e5f6", "dry-leaf-3"),
    ]
    assert p.runs[0].mixture == {"web": 0.25, "code": 0.75}
    assert p.runs[0].metrics == {"val_loss/web": 3.5, "val_loss/code": 2.25}
    assert p.runs[1].scale == {"model_params": 2_000_000}
    assert len(wandb_import.import_plan(path, RunMapping(), states=[]).runs) == 3


def test_wandb_csv_without_an_id_column_uses_the_name(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text("Name,mix.web,mix.code,eval/web/loss\nr-1,1,0,2.5\n")
    assert [r.external_id for r in wandb_import.import_plan(path, RunMapping()).runs] == ["r-1"]
    path.write_text("State,mix.web\nfinished,1\n")
    with pytest.raises(ValueError, match="neither an ID nor a Name"):
        wandb_import.import_plan(path, RunMapping())


def test_wandb_json_of_api_runs(tmp_path):
    runs = [
        {
            "id": "x1",
            "name": "first",
            "state": "finished",
            "config": {
                "mix": {"web": 0.6, "code": 0.4},
                "train_tokens": {"value": 5e8, "desc": None},
            },
            "summary": {"eval": {"web": {"loss": 3.25}}, "eval/code/loss": 2.5, "_runtime": 3},
        },
        {"id": "x2", "name": "running", "state": "running", "config": {}, "summary": {}},
    ]
    path = tmp_path / "runs.json"
    path.write_text(json.dumps({"runs": runs}))
    (r,) = wandb_import.import_plan(path, RunMapping()).runs
    assert (r.external_id, r.name, r.mixture) == ("x1", "first", {"web": 0.6, "code": 0.4})
    assert r.metrics == {"val_loss/web": 3.25, "val_loss/code": 2.5}
    assert r.scale == {"train_tokens": 500_000_000}


@pytest.mark.parametrize(
    "text, words",
    [
        ("[1, 2]", "runs[0]: expected an object with an id"),
        ('{"runs": 3}', "expected a list of runs"),
        ("[{", "not JSON"),
        ('[{"id": "a", "config": [1]}]', "config and summary must be objects"),
    ],
)
def test_wandb_bad_json_is_named(tmp_path, text, words):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ValueError) as e:
        wandb_import.import_plan(path, RunMapping())
    assert words in str(e.value)
