"""``mixopt fits list|label|delete`` and ``mixopt recommendations list|label|delete``: the
project's fits and recommendations, their names and tags."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from mixopt.api_types import Fit, Recommendation
from mixopt.cli._common import JsonOpt, TokenOpt, UrlOpt, make_client
from mixopt.cli.errors import CliError, handles_errors
from mixopt.cli.output import console, print_json
from mixopt.client import MixoptClient
from mixopt.render import fmt

fits_app = typer.Typer(help="The project's fits: list, label, delete.", no_args_is_help=True)
recs_app = typer.Typer(
    help="The project's recommendations: list, label, delete.", no_args_is_help=True
)

ProjectArg = Annotated[int, typer.Argument(help="project id")]
TagFilter = Annotated[str | None, typer.Option("--tag", help="only those with this tag")]
LimitOpt = Annotated[int, typer.Option(help="rows to show (0 = all)", min=0)]
NameOpt = Annotated[str | None, typer.Option("--name", help="set the name")]
ClearNameOpt = Annotated[bool, typer.Option("--clear-name", help="remove the name")]
SetTagsOpt = Annotated[
    list[str] | None,
    typer.Option("--set-tag", help="replace the tags with these (repeatable)"),
]
ClearTagsOpt = Annotated[bool, typer.Option("--clear-tags", help="remove every tag")]


def _page(rows_of: Any, project_id: int, tag: str | None, limit: int) -> tuple[list, int]:
    """The first ``limit`` rows (all when 0), newest first, and how many there are."""
    first = rows_of(project_id, limit=min(limit or 1000, 1000), tag=tag)
    rows, count = list(first.data), first.count
    offset = len(rows)
    while (limit == 0 or len(rows) < limit) and offset < count:
        page = rows_of(project_id, offset=offset, limit=1000, tag=tag)
        if not page.data:
            break
        rows += page.data
        offset += len(page.data)
    return rows[: limit or None], count


def _labels_body(
    name: str | None, clear_name: bool, tags: list[str] | None, clear_tags: bool
) -> dict[str, Any]:
    if name is not None and clear_name:
        raise CliError("give --name or --clear-name, not both")
    if tags and clear_tags:
        raise CliError("give --set-tag or --clear-tags, not both")
    body: dict[str, Any] = {}
    if name is not None or clear_name:
        body["name"] = name
    if tags or clear_tags:
        body["tags"] = list(tags or [])
    if not body:
        raise CliError("nothing to change: give --name, --clear-name, --set-tag or --clear-tags")
    return body


def _labels(row: Fit | Recommendation) -> str:
    return escape(", ".join(row.tags)) or "-"


def _fits_table(rows: list[Fit]) -> Table:
    table = Table("id", "name", "tags", "estimator", "status", "runs", "spearman", "trusted")
    for f in rows:
        pooled = (f.fidelity or {}).get("pooled") or {}
        trusted = f.get("trusted")
        table.add_row(
            str(f.id),
            escape(f.name or "-"),
            _labels(f),
            escape(f.estimator),
            f.status,
            str(len(f.run_ids)),
            fmt(pooled.get("spearman")),
            "-" if trusted is None else ("yes" if trusted else "no"),
        )
    return table


def _recs_table(rows: list[Recommendation]) -> Table:
    table = Table("id", "name", "tags", "fit", "source", "predicted", "top domains")
    for r in rows:
        top = sorted(r.mixture.items(), key=lambda kv: -kv[1])[:3]
        table.add_row(
            str(r.id),
            escape(r.name or "-"),
            _labels(r),
            str(r.fit_id) if r.fit_id is not None else "-",
            escape(r.source),
            fmt(r.predicted),
            escape(", ".join(f"{k}={v:.3f}" for k, v in top)),
        )
    return table


@fits_app.command("list")
@handles_errors
def fits_list(
    project_id: ProjectArg,
    tag: TagFilter = None,
    limit: LimitOpt = 20,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """The project's fits, newest first: name, tags, estimator, status, CV Spearman, trust."""
    rows, count = _page(make_client(url, token).page_fits, project_id, tag, limit)
    if as_json:
        print_json({"count": count, "data": rows})
        return
    console.print(_fits_table(rows))
    console.print(f"{len(rows)} of {count} fits")


@fits_app.command("label")
@handles_errors
def fits_label(
    project_id: ProjectArg,
    fit_id: Annotated[int, typer.Argument(help="fit id")],
    name: NameOpt = None,
    clear_name: ClearNameOpt = False,
    set_tag: SetTagsOpt = None,
    clear_tags: ClearTagsOpt = False,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Name or tag a fit (``PATCH .../fits/{id}``)."""
    body = _labels_body(name, clear_name, set_tag, clear_tags)
    fit = make_client(url, token).update_fit(project_id, fit_id, **body)
    if as_json:
        print_json(fit)
        return
    console.print(f"fit {fit.id}: name {escape(fit.name or '-')}, tags {_labels(fit)}")


@fits_app.command("delete")
@handles_errors
def fits_delete(
    project_id: ProjectArg,
    fit_id: Annotated[int, typer.Argument(help="fit id")],
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Delete a finished fit; its recommendations stay (without a fit)."""
    make_client(url, token).delete_fit(project_id, fit_id)
    if as_json:
        print_json({"deleted": "fit", "id": fit_id, "project_id": project_id})
        return
    console.print(f"deleted fit {fit_id}")


@recs_app.command("list")
@handles_errors
def recommendations_list(
    project_id: ProjectArg,
    tag: TagFilter = None,
    limit: LimitOpt = 20,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """The project's recommendations, newest first: name, tags, fit, predicted objective."""
    c: MixoptClient = make_client(url, token)
    rows, count = _page(c.page_recommendations, project_id, tag, limit)
    if as_json:
        print_json({"count": count, "data": rows})
        return
    console.print(_recs_table(rows))
    console.print(f"{len(rows)} of {count} recommendations")


@recs_app.command("label")
@handles_errors
def recommendations_label(
    project_id: ProjectArg,
    rec_id: Annotated[int, typer.Argument(help="recommendation id")],
    name: NameOpt = None,
    clear_name: ClearNameOpt = False,
    set_tag: SetTagsOpt = None,
    clear_tags: ClearTagsOpt = False,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Name or tag a recommendation (``PATCH .../recommendations/{id}``)."""
    body = _labels_body(name, clear_name, set_tag, clear_tags)
    rec = make_client(url, token).update_recommendation(project_id, rec_id, **body)
    if as_json:
        print_json(rec)
        return
    console.print(f"recommendation {rec.id}: name {escape(rec.name or '-')}, tags {_labels(rec)}")


@recs_app.command("delete")
@handles_errors
def recommendations_delete(
    project_id: ProjectArg,
    rec_id: Annotated[int, typer.Argument(help="recommendation id")],
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Delete a recommendation."""
    make_client(url, token).delete_recommendation(project_id, rec_id)
    if as_json:
        print_json({"deleted": "recommendation", "id": rec_id, "project_id": project_id})
        return
    console.print(f"deleted recommendation {rec_id}")
