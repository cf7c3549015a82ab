"""``mixopt ingest``, ``mixopt swarm`` and ``mixopt validate``: work that trains or tokenises
in the workers."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mixopt.api_types import Job
from mixopt.cli._common import (
    JsonOpt,
    TimeoutOpt,
    TokenOpt,
    UrlOpt,
    WaitOpt,
    make_client,
    wait_with_bar,
)
from mixopt.cli.errors import CliError, handles_errors
from mixopt.cli.output import console, err_console, print_json
from mixopt.client import JobFailed, JobTimeout
from mixopt.render import fmt, print_validation


@handles_errors
def ingest(
    project_id: Annotated[int, typer.Argument(help="project id")],
    wait: WaitOpt = True,
    timeout: TimeoutOpt = 3600.0,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Tokenise every domain's data source in a worker and record measured token counts."""
    c = make_client(url, token)
    accepted = c.ingest(project_id)
    job = wait_with_bar(c, accepted, "ingesting", timeout, quiet=as_json) if wait else accepted.job
    if as_json:
        print_json({"job": job, "project": c.get_project(project_id) if wait else None})
        return
    console.print(f"job {job.id}: {job.state}")
    if wait:
        for d in c.get_project(project_id).domains:
            console.print(f"  {escape(d.name)}: {fmt(d.token_count)} tokens", highlight=False)


@handles_errors
def swarm(
    project_id: Annotated[int, typer.Argument(help="project id")],
    count: Annotated[
        int, typer.Option("--count", "-n", help="proxy runs to design and train")
    ] = 16,
    steps: Annotated[int | None, typer.Option("--steps", help="training steps per run")] = None,
    tokens: Annotated[
        int | None, typer.Option("--tokens", help="training tokens per run (instead of --steps)")
    ] = None,
    preset: Annotated[str, typer.Option(help="model preset: tiny, small, medium, base")] = "tiny",
    strategy: Annotated[
        str,
        typer.Option(help="swarm (RegMix Dirichlet), space_filling, fixed or rounds"),
    ] = "swarm",
    total_budget: Annotated[
        int | None,
        typer.Option("--total-budget", help="rounds: runs of every round together"),
    ] = None,
    round_size: Annotated[
        int | None,
        typer.Option(
            "--round-size",
            help="rounds: runs per round (round 1: twice as many, at least K + 1; see README)",
        ),
    ] = None,
    acquisition: Annotated[
        str | None, typer.Option(help="rounds: ei (expected improvement) or lcb")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the design and of the runs")] = 0,
    wait: WaitOpt = True,
    timeout: TimeoutOpt = 24 * 3600.0,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Design a swarm of proxy runs and train one small model per run in the workers."""
    if (steps is None) == (tokens is None):
        raise CliError("give exactly one of --steps or --tokens")
    c = make_client(url, token)
    rounds = strategy == "rounds"
    if rounds and (total_budget is None or round_size is None):
        raise CliError("--strategy rounds needs --total-budget and --round-size")
    if rounds and total_budget is not None:
        count = total_budget  # the service takes a count equal to the total budget
    acc = c.create_swarm(
        project_id,
        count,
        train_steps=steps,
        train_tokens=tokens,
        preset=preset,
        strategy=strategy,
        seed=seed,
        total_budget=total_budget,
        round_size=round_size,
        acquisition=acquisition,
    )
    if rounds and acc.rounds_job is not None:
        _swarm_rounds(c, acc.tag, acc.rounds_job, wait, timeout, as_json)
        return
    if not wait:
        if as_json:
            print_json(acc)
        else:
            console.print(
                f"swarm {escape(acc.tag)}: {len(acc.run_ids)} runs, {len(acc.jobs)} training jobs"
            )
        return
    done, failed = 0, []
    deadline = time.monotonic() + timeout
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console, transient=True, disable=as_json) as bar:
        task = bar.add_task(f"training swarm {acc.tag}", total=len(acc.jobs))
        pending = {j.id for j in acc.jobs}
        while pending:
            for job_id in sorted(pending):
                j = c.get_job(job_id)
                if j.done:
                    pending.discard(job_id)
                    done += 1
                    bar.advance(task)
                    if j.state != "succeeded":
                        failed.append(j)
            if pending:
                if time.monotonic() > deadline:
                    raise JobTimeout(c.get_job(sorted(pending)[0]), timeout)
                time.sleep(1.0)
    _swarm_summary(acc.tag, acc.run_ids, len(acc.jobs), failed, as_json)


def _swarm_rounds(c, tag: str, rounds_job: Job, wait: bool, timeout: float, as_json: bool) -> None:
    """A rounds swarm: wait for its rounds job, then one line per round (runs trained, best
    predicted mixture and its interval)."""
    job = (
        wait_with_bar(c, rounds_job, f"swarm {tag} in rounds", timeout, quiet=as_json)
        if wait
        else rounds_job
    )
    rounds = (job.params or {}).get("rounds", [])
    if as_json:
        print_json({"tag": tag, "job": job, "rounds": rounds})
    else:
        console.print(f"swarm {escape(tag)} in rounds: job {job.id} {job.state}", highlight=False)
        for e in rounds:
            after = e.get("after") or {}
            best = ", ".join(
                f"{escape(d)} {w:.3f}" for d, w in (after.get("best_mixture") or {}).items()
            )
            line = f"  round {e['round']}: {e.get('trained', 0)}/{len(e['run_ids'])} runs trained"
            if after:
                lo, hi = after["interval"]
                line += f"; best predicted {after['best_loss']:.4f} [{lo:.4f}, {hi:.4f}]: {best}"
            console.print(line, highlight=False)
    if wait and job.state != "succeeded":
        raise JobFailed(job)


def _swarm_summary(
    tag: str, run_ids: list[int], jobs: int, failed: list[Job], as_json: bool
) -> None:
    if as_json:
        print_json({"tag": tag, "run_ids": run_ids, "failed": failed})
    else:
        console.print(f"swarm {escape(tag)}: {jobs - len(failed)} of {jobs} runs trained")
    if failed:
        raise JobFailed(failed[0])


@handles_errors
def validate(
    project_id: Annotated[int, typer.Argument(help="project id")],
    recommendation: Annotated[
        list[int] | None, typer.Option("--recommendation", "-r", help="recommendation id")
    ] = None,
    baseline: Annotated[
        list[str] | None,
        typer.Option("--baseline", "-b", help="natural, uniform, entropy, unimax, ..."),
    ] = None,
    mixture: Annotated[
        list[str] | None,
        typer.Option("--mixture", "-m", help='LABEL=JSON, e.g. mine={"web": 0.7, "code": 0.3}'),
    ] = None,
    steps: Annotated[int, typer.Option("--steps", help="training steps per run")] = 300,
    seeds: Annotated[
        str, typer.Option("--seeds", help="comma-separated seeds, shared by every mixture")
    ] = "0,1,2",
    preset: Annotated[
        str, typer.Option("--preset", help="model preset: tiny, small, medium, base")
    ] = "tiny",
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="wait for the result and print it")
    ] = True,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Validation trainings: train each mixture with the same seeds, print the paired comparison."""
    specs: list[dict] = [{"recommendation_id": r} for r in recommendation or []]
    specs += [{"baseline": b} for b in baseline or []]
    for item in mixture or []:
        label, _, text = item.partition("=")
        try:
            specs.append({"label": label, "mixture": json.loads(text)})
        except json.JSONDecodeError as exc:
            raise ValueError(f"--mixture {label}: not JSON ({exc})") from None
    seed_list = [int(s) for s in seeds.split(",") if s]
    c = make_client(url, token)
    acc = c.validate(project_id, specs, train_steps=steps, seeds=seed_list, preset=preset)
    vid = acc["validation"]["id"]
    if as_json and not wait:
        print_json(acc)
        return
    if not as_json:
        console.print(f"validation {vid}: job {acc['job']['id']}")
    if not wait:
        return
    c.wait(acc["job"]["id"], timeout=24 * 3600)
    found = c.get_validation(project_id, vid)
    if as_json:
        print_json(found)
        return
    print_validation(console, found)
