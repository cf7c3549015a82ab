"""``mixopt runs import-mlflow`` and ``mixopt runs import-wandb``: runs tracked elsewhere as
proxy runs, through the batch import API (the mapping: :mod:`mixopt.integrations.run_import`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from mixopt.cli._common import JsonOpt, TokenOpt, UrlOpt, kv, make_client
from mixopt.cli.errors import CliError, handles_errors
from mixopt.cli.output import console, err_console, print_json
from mixopt.integrations.run_import import ImportPlan, RunMapping, upload

MixtureParamsOpt = Annotated[
    str, typer.Option(help="prefix of the mixture parameters: <prefix><domain>")
]
MixtureJsonOpt = Annotated[
    str | None, typer.Option(help="one parameter holding the mixture as a JSON object")
]
LossOpt = Annotated[
    str,
    typer.Option(
        help="loss metrics: a pattern with {domain} or a regex with (?P<domain>...); "
        "each becomes val_loss/<domain>"
    ),
]
ScaleParamOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--scale-param", help="SCALE=PARAM: read model_params/train_tokens/train_steps from PARAM"
    ),
]
OnDuplicateOpt = Annotated[
    str, typer.Option(help="runs already imported at their scale: error or skip")
]
TagOpt = Annotated[
    list[str] | None, typer.Option("--tag", help="tag every imported run (repeatable)")
]
StatusOpt = Annotated[
    list[str] | None,
    typer.Option("--status", help="run states to read (repeatable; default finished only)"),
]
ModelParamsOpt = Annotated[int | None, typer.Option(help="model size of every run")]
TrainTokensOpt = Annotated[int | None, typer.Option(help="training tokens of every run")]
TrainStepsOpt = Annotated[int | None, typer.Option(help="training steps of every run")]
DryRunOpt = Annotated[bool, typer.Option(help="show what would be imported; send nothing")]


def _mapping(
    mixture_params: str,
    mixture_json: str | None,
    loss_metrics: str,
    scale_param: list[str] | None,
    fixed: dict[str, int | None],
) -> RunMapping:
    return RunMapping(
        mixture_params=mixture_params,
        mixture_json=mixture_json,
        loss_metrics=loss_metrics,
        scale_params=kv(scale_param, "--scale-param", cast=str),
        fixed_scale={k: int(v) for k, v in fixed.items() if v is not None},
    )


def _finish(
    project_id: int,
    found: ImportPlan,
    source: str,
    *,
    on_duplicate: str,
    tags: list[str] | None,
    dry_run: bool,
    as_json: bool,
    url: str | None,
    token: str | None,
) -> None:
    if on_duplicate not in ("error", "skip"):
        raise CliError("--on-duplicate: error or skip")
    if not found.runs:
        reasons = "; ".join(f"{i}: {why}" for i, why in found.skipped[:3])
        raise CliError(
            f"{source}: no run to import ({len(found.skipped)} left out"
            + (f": {reasons}{' ...' if len(found.skipped) > 3 else ''})" if reasons else ")")
        )
    for run_id, why in found.skipped:
        err_console.print(f"left out {escape(run_id)}: {escape(why)}", highlight=False)
    result: dict[str, Any]
    if dry_run:
        result = {"created": 0, "skipped": 0, "ids": [], "dry_run": True}
    else:
        client = make_client(url, token)
        result = upload(client, project_id, found.runs, on_duplicate=on_duplicate, tags=tags or [])
    result["runs"] = len(found.runs)
    result["left_out"] = [{"id": i, "reason": why} for i, why in found.skipped]
    if as_json:
        if dry_run:
            result["plan"] = [
                {k: v for k, v in r.__dict__.items() if k != "curve"}
                | {"curve_points": len(r.curve)}
                for r in found.runs
            ]
        print_json(result)
        return
    if dry_run:
        for r in found.runs:
            console.print(
                f"{escape(r.external_id)}: {len(r.mixture)} domains, "
                f"{len(r.metrics)} losses, scale {r.scale or '-'}"
                + (f", curve of {len(r.curve)} points" if r.curve else "")
            )
    console.print(
        f"{'would import' if dry_run else 'imported'} "
        f"{result['runs'] if dry_run else result['created']} runs from {escape(source)}, "
        f"skipped {result['skipped']} already imported, left out {len(found.skipped)}"
        + (f", {result['curves']} loss curves" if result.get("curves") else "")
    )


@handles_errors
def import_mlflow(
    project_id: Annotated[int, typer.Argument(help="project id")],
    tracking_uri: Annotated[
        str,
        typer.Option(help="an mlruns directory, sqlite:///mlflow.db, or http(s)://server"),
    ],
    experiment: Annotated[
        list[str] | None, typer.Option(help="experiment name (repeatable; default all)")
    ] = None,
    mixture_params: MixtureParamsOpt = "mix.",
    mixture_json: MixtureJsonOpt = None,
    loss_metrics: LossOpt = "eval/{domain}/loss",
    scale_param: ScaleParamOpt = None,
    model_params: ModelParamsOpt = None,
    train_tokens: TrainTokensOpt = None,
    train_steps: TrainStepsOpt = None,
    status: StatusOpt = None,
    on_duplicate: OnDuplicateOpt = "error",
    tag: TagOpt = None,
    curves: Annotated[
        bool,
        typer.Option(
            "--curves/--no-curves",
            help="import each loss metric's history as the run's loss curve",
        ),
    ] = True,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Import the runs of an MLflow tracking store: params as the mixture, metrics as losses,
    their histories as loss curves (README "Trainer integrations" has the mapping); needs the
    ``mlflow`` extra."""
    from mixopt.integrations import mlflow_import

    mapping = _mapping(
        mixture_params,
        mixture_json,
        loss_metrics,
        scale_param,
        {"model_params": model_params, "train_tokens": train_tokens, "train_steps": train_steps},
    )
    states = [s.upper() for s in status] if status else ["FINISHED"]
    found = mlflow_import.import_plan(tracking_uri, mapping, experiment or [], states, curves)
    _finish(
        project_id,
        found,
        tracking_uri,
        on_duplicate=on_duplicate,
        tags=tag,
        dry_run=dry_run,
        as_json=as_json,
        url=url,
        token=token,
    )


@handles_errors
def import_wandb(
    project_id: Annotated[int, typer.Argument(help="project id")],
    export: Annotated[
        Path, typer.Argument(help="W&B runs export: the UI's CSV or a JSON list of runs")
    ],
    mixture_params: MixtureParamsOpt = "mix.",
    mixture_json: MixtureJsonOpt = None,
    loss_metrics: LossOpt = "eval/{domain}/loss",
    scale_param: ScaleParamOpt = None,
    model_params: ModelParamsOpt = None,
    train_tokens: TrainTokensOpt = None,
    train_steps: TrainStepsOpt = None,
    status: StatusOpt = None,
    on_duplicate: OnDuplicateOpt = "error",
    tag: TagOpt = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Import the runs of a Weights & Biases export (CSV or JSON; README "Trainer
    integrations" has the columns read and the mapping)."""
    from mixopt.integrations import wandb_import

    mapping = _mapping(
        mixture_params,
        mixture_json,
        loss_metrics,
        scale_param,
        {"model_params": model_params, "train_tokens": train_tokens, "train_steps": train_steps},
    )
    states = [s.lower() for s in status] if status else ["finished"]
    found = wandb_import.import_plan(export, mapping, states)
    _finish(
        project_id,
        found,
        str(export),
        on_duplicate=on_duplicate,
        tags=tag,
        dry_run=dry_run,
        as_json=as_json,
        url=url,
        token=token,
    )


def register(runs_app: typer.Typer) -> None:
    """Add the import commands to ``mixopt runs``."""
    runs_app.command("import-mlflow")(import_mlflow)
    runs_app.command("import-wandb")(import_wandb)
