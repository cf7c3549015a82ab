"""``mixopt jobs list|watch|cancel``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from mixopt.api_types import Job
from mixopt.cli._common import JsonOpt, TimeoutOpt, TokenOpt, UrlOpt, make_client, wait_with_bar
from mixopt.cli.errors import handles_errors
from mixopt.cli.output import console, print_json
from mixopt.render import fmt

app = typer.Typer(
    help="Jobs: fits, recommendations, trainings, ingestion (through the API).",
    no_args_is_help=True,
)


@app.command("list")
@handles_errors
def jobs_list(
    project: Annotated[
        int | None, typer.Option("--project", "-p", help="only this project's jobs")
    ] = None,
    state: Annotated[
        str | None, typer.Option(help="queued (= pending), running, succeeded, failed, cancelled")
    ] = None,
    limit: Annotated[int, typer.Option(help="rows to show (0 = all)")] = 20,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Jobs, newest first."""
    c = make_client(url, token)
    rows: list[Job] = []
    for j in c.iter_jobs(project_id=project, state=state):
        rows.append(j)
        if limit and len(rows) >= limit:
            break
    if as_json:
        print_json(rows)
        return
    table = Table("id", "kind", "project", "state", "progress", "message / error", "created")
    for j in rows:
        table.add_row(
            j.id,
            j.kind,
            fmt(j.project_id),
            j.state,
            f"{100 * (j.progress or 0):.0f}%",
            escape((j.error or j.message or "")[:80]),
            j.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    console.print(table)


@app.command("watch")
@handles_errors
def jobs_watch(
    job_id: Annotated[str, typer.Argument(help="job id")],
    timeout: TimeoutOpt = 24 * 3600.0,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Follow a job with a progress bar until it ends (exit 5 if it fails, with the reason)."""
    c = make_client(url, token)
    label = f"job {job_id[:8]} ({c.get_job(job_id).kind})"
    job = wait_with_bar(c, job_id, label, timeout, quiet=as_json)
    if as_json:
        print_json(job)
        return
    console.print(f"job {job.id} ({job.kind}) {job.state} in {fmt(job.duration_s, 3)} s")


@app.command("cancel")
@handles_errors
def jobs_cancel(
    job_id: Annotated[str, typer.Argument(help="job id")],
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Cancel a job: a queued job at once, a running one at its next check."""
    job = make_client(url, token).cancel_job(job_id)
    if as_json:
        print_json(job)
        return
    requested = " (cancel requested)" if job.cancel_requested and not job.done else ""
    console.print(f"job {job.id}: {job.state}{requested}")
