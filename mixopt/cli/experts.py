"""``mixopt experts train|list|upload``: the domain experts of the Mixture of Data Experts
(Belenki et al. 2025): train one per domain in the workers, upload an external trainer's
probability arrays, and show each expert's loss on every validation domain."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from mixopt.cli._common import JsonOpt, TimeoutOpt, TokenOpt, UrlOpt, WaitOpt, make_client
from mixopt.cli._common import wait_with_bar as _wait
from mixopt.cli.errors import CliError, handles_errors
from mixopt.cli.output import console, print_json
from mixopt.client import JobFailed

app = typer.Typer(help="Domain experts (Mixture of Data Experts).", no_args_is_help=True)


def _table(experts: dict) -> Table:
    domains = experts["domains"]
    t = Table("expert", "origin", "status", *[f"loss {d}" for d in domains])
    for e in experts["data"]:
        losses = [f"{e['losses'][d]:.4f}" if d in e["losses"] else "-" for d in domains]
        t.add_row(escape(e["domain"]), e["origin"], e["status"], *losses)
    return t


@app.command("train")
@handles_errors
def train(
    project_id: Annotated[int, typer.Argument(help="project id")],
    swarm: Annotated[
        str | None, typer.Option(help="take the preset, budget and seed of this swarm (its tag)")
    ] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="training steps per expert")] = None,
    tokens: Annotated[
        int | None, typer.Option("--tokens", help="training tokens per expert (or --steps)")
    ] = None,
    preset: Annotated[str | None, typer.Option(help="model preset (default: tiny)")] = None,
    domain: Annotated[
        list[str] | None, typer.Option("--domain", "-d", help="only these domains (repeat)")
    ] = None,
    replace: Annotated[bool, typer.Option(help="train existing experts again")] = False,
    wait: WaitOpt = True,
    timeout: TimeoutOpt = 24 * 3600.0,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Train one expert per domain (its domain alone, the swarm's budget) in one worker job."""
    if steps is not None and tokens is not None:
        raise CliError("give at most one of --steps or --tokens")
    if swarm is None and steps is None and tokens is None:
        raise CliError("give --swarm, --steps or --tokens")
    c = make_client(url, token)
    acc = c.train_experts(
        project_id,
        train_steps=steps,
        train_tokens=tokens,
        swarm=swarm,
        domains=domain,
        preset=preset,
        replace=replace or None,
    )
    if not wait:
        if as_json:
            print_json(acc)
        else:
            console.print(f"job {acc['job']['id']}: {len(acc['experts'])} experts queued")
        return
    job = _wait(c, acc, "training experts", timeout, quiet=as_json)
    experts = c.list_experts(project_id)
    if as_json:
        print_json({"job": job, "experts": experts})
    else:
        console.print(f"job {job.id}: {job.state}")
        console.print(_table(experts))
    if job.state != "succeeded":
        raise JobFailed(job)


@app.command("list")
@handles_errors
def list_(
    project_id: Annotated[int, typer.Argument(help="project id")],
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """The experts and each one's loss on every validation domain."""
    experts = make_client(url, token).list_experts(project_id)
    if as_json:
        print_json(experts)
    else:
        console.print(_table(experts))


@app.command("upload")
@handles_errors
def upload(
    project_id: Annotated[int, typer.Argument(help="project id")],
    domain: Annotated[str, typer.Argument(help="the expert's training domain")],
    val_domain: Annotated[str, typer.Argument(help="the validation domain the file scores")],
    file: Annotated[
        Path, typer.Argument(help=".npy file: 1-D float16/float32 next-token probabilities")
    ],
    block_size: Annotated[
        int | None, typer.Option(help="tokens per evaluation window (default 128)")
    ] = None,
    n_windows: Annotated[int | None, typer.Option(help="evaluation windows (default 64)")] = None,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Upload an externally trained expert's probabilities for one validation domain."""
    try:
        content = file.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {file}: {exc.strerror or exc}") from None
    e = make_client(url, token).upload_expert_probs(
        project_id, domain, val_domain, content, block_size=block_size, n_windows=n_windows
    )
    if as_json:
        print_json(e)
        return
    console.print(
        f"expert {escape(e['domain'])} ({e['status']}): loss on {escape(val_domain)} "
        f"{e['losses'][val_domain]:.4f}; missing {', '.join(map(escape, e['missing'])) or '-'}",
        highlight=False,
    )
