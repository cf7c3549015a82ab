"""``mixopt runs import|export|list``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from mixopt.api_types import Run
from mixopt.cli._common import JsonOpt, TokenOpt, UrlOpt, kv, make_client, objective_of
from mixopt.cli.errors import handles_errors
from mixopt.cli.output import console, err_console, print_json
from mixopt.render import fmt

app = typer.Typer(help="Proxy runs (through the API).", no_args_is_help=True)


@app.command("import")
@handles_errors
def runs_import(
    project_id: Annotated[int, typer.Argument(help="project id")],
    mixtures: Annotated[
        Path, typer.Argument(help="mixtures CSV (RegMix train_mixture / olmix ratios.csv)")
    ],
    metrics: Annotated[
        Path, typer.Argument(help="metrics CSV (RegMix losses / olmix metrics.csv)")
    ],
    format: Annotated[str, typer.Option(help="auto, regmix or olmix")] = "auto",
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="tag every imported run (repeatable)")
    ] = None,
    on_duplicate: Annotated[
        str, typer.Option(help="rows already imported at this scale: error or skip")
    ] = "error",
    on_unmatched: Annotated[
        str, typer.Option(help="runs in one file only: skip (reported) or error")
    ] = "skip",
    model_params: Annotated[
        int | None, typer.Option(help="model size of every run in the files")
    ] = None,
    train_tokens: Annotated[int | None, typer.Option(help="training tokens of every run")] = None,
    train_steps: Annotated[int | None, typer.Option(help="training steps of every run")] = None,
    skip_duplicates: Annotated[
        bool, typer.Option(hidden=True, help="same as --on-duplicate skip")
    ] = False,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Import runs from a pair of CSV files (RegMix or olmix layout) at one scale: the same
    options as ``POST /v1/projects/{id}/runs/import``."""
    r = make_client(url, token).import_runs(
        project_id,
        mixtures,
        metrics,
        format=format,
        tags=tag or [],
        on_duplicate="skip" if skip_duplicates else on_duplicate,
        on_unmatched=on_unmatched,
        model_params=model_params,
        train_tokens=train_tokens,
        train_steps=train_steps,
    )
    if as_json:
        print_json(r)
        return
    console.print(
        f"imported {r['created']} runs ({r['format']} format), skipped {r['skipped']}; "
        f"{len(r['metrics'])} metrics"
    )
    unmatched = r.get("unmatched") or {}
    for side, ids in unmatched.items():
        if ids:
            console.print(
                f"left out {len(ids)} runs found only in the {escape(side)} file: "
                f"{escape(', '.join(ids[:10]))}{' ...' if len(ids) > 10 else ''}"
            )


@app.command("export")
@handles_errors
def runs_export(
    project_id: Annotated[int, typer.Argument(help="project id")],
    out: Annotated[Path, typer.Option("--out", "-o", help="directory (csv) or file (json)")] = Path(
        "."
    ),
    format: Annotated[str, typer.Option(help="csv or json")] = "csv",
    layout: Annotated[str, typer.Option(help="regmix or olmix")] = "regmix",
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Write the project's succeeded runs: a CSV pair in the RegMix or olmix layout, or JSON."""
    c = make_client(url, token)
    if format == "json":
        data = c.export_runs(project_id, format="json")
        target = out if out.suffix == ".json" else out / f"project-{project_id}-runs.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(data, indent=1))
        if as_json:
            print_json({"files": [str(target)], "runs": len(data["runs"])})
            return
        console.print(f"wrote {len(data['runs'])} runs to {target}")
        return
    names = (
        ("train_mixture.csv", "train_loss.csv")
        if layout == "regmix"
        else ("ratios.csv", "metrics.csv")
    )
    files = {
        name: c.export_runs(project_id, format="csv", layout=layout, part=part)
        for part, name in zip(("mixtures", "metrics"), names, strict=True)
    }
    out.mkdir(parents=True, exist_ok=True)  # after the answers: an error writes nothing
    for name, text in files.items():
        (out / name).write_text(text)
    if as_json:
        rows = max(files[names[0]].count("\n") - 1, 0)
        print_json({"files": [str(out / n) for n in names], "runs": rows})
        return
    console.print(f"wrote {out / names[0]} and {out / names[1]}")


def _metric_filters(
    sort: str | None, low: str | None, high: str | None
) -> dict[str, str | float | None]:
    """``--sort``, ``--metric-min``, ``--metric-max`` as the runs list's query parameters."""
    out: dict[str, str | float | None] = {}
    if sort:
        key = sort.removeprefix("-")
        out["order_by"] = (
            sort if key in ("id", "created_at") else f"{sort[: len(sort) - len(key)]}metric:{key}"
        )
    bounds = kv([low] if low else None, "--metric-min")
    upper = kv([high] if high else None, "--metric-max")
    names = set(bounds) | set(upper)
    if len(names) > 1:
        raise ValueError(
            f"--metric-min and --metric-max must bound one metric, got {sorted(names)}"
        )
    if names:
        out["metric"] = names.pop()
        out["metric_min"] = next(iter(bounds.values()), None)
        out["metric_max"] = next(iter(upper.values()), None)
    return out


@app.command("list")
@handles_errors
def runs_list(
    project_id: Annotated[int, typer.Argument(help="project id")],
    status: Annotated[
        str | None, typer.Option(help="planned, queued, running, succeeded, failed, cancelled")
    ] = None,
    tag: Annotated[str | None, typer.Option(help="only runs with this tag")] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option("--metric", "-m", help="a metric column to show (repeatable)"),
    ] = None,
    limit: Annotated[int, typer.Option(help="rows to show (0 = all)")] = 20,
    sort: Annotated[
        str | None,
        typer.Option(
            help="id, created_at or a final metric's name (runs without it are left out); "
            "prefix - for descending, e.g. --sort=-val_loss"
        ),
    ] = None,
    metric_min: Annotated[
        str | None, typer.Option(help="METRIC=VALUE: only runs whose METRIC is at least VALUE")
    ] = None,
    metric_max: Annotated[
        str | None, typer.Option(help="METRIC=VALUE: only runs whose METRIC is at most VALUE")
    ] = None,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Runs with their top domains, the objective and the chosen metrics; sorted and filtered
    by a metric with --sort / --metric-min / --metric-max."""
    filters: dict[str, Any] = {
        "status": status,
        "tag": tag,
        **_metric_filters(sort, metric_min, metric_max),
    }
    c = make_client(url, token)
    project = c.get_project(project_id)
    total = c.page_runs(project_id, limit=1, **filters).count
    shown = total if limit == 0 else min(limit, total)
    rows: list[Run] = []
    with Progress(console=err_console, transient=True) as bar:
        task = bar.add_task("fetching runs", total=shown)
        if shown:
            page_size = min(1000, max(shown, 1))
            for run in c.iter_runs(project_id, page_size=page_size, **filters):
                rows.append(run)
                bar.advance(task)
                if len(rows) >= shown:
                    break
    objective = objective_of(project, [r for r in rows if r.metrics])
    if as_json:
        print_json(
            {
                "count": total,
                "data": [r.model_dump(mode="json") | {"objective": objective(r)} for r in rows],
            }
        )
        return
    metrics = metric or []
    table = Table(
        "id", "status", "scale", "top domains", "objective", *(escape(m) for m in metrics)
    )
    for r in rows:
        top = sorted(r.mixture.items(), key=lambda kv: -kv[1])[:3]
        scale = " ".join(
            x
            for x in (
                r.model_params and f"{r.model_params:.3g}p",
                r.train_tokens and f"{r.train_tokens:.3g}t",
                r.train_steps and f"{r.train_steps}s",
            )
            if x
        )
        table.add_row(
            str(r.id),
            r.status,
            scale or "-",
            escape(", ".join(f"{k}={v:.3f}" for k, v in top)),
            fmt(objective(r)),
            *(fmt(r.metrics.get(m)) for m in metrics),
        )
    console.print(table)
    console.print(f"{shown} of {total} runs")
