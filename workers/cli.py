"""Server-side ``mixopt`` commands: ``serve``, ``worker``, ``beat``, ``db`` and ``token``.

They run the processes of a deployment on this machine and use its settings (``MIXOPT_*``).
``mixopt.cli`` finds them through the ``mixopt.cli`` entry-point group (pyproject.toml), so the
client package never imports the server: with only ``pip install mixopt`` they print which
extra to install. Everything heavy is imported inside the commands.
"""

from __future__ import annotations

import json
import signal
import sys
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.markup import escape
from rich.table import Table

from mixopt.cli.errors import ExitStatus
from mixopt.cli.output import console, err_console
from mixopt.extras import MissingExtra, require

if TYPE_CHECKING:
    from app.core.config import Settings

# results on stdout (console); every error on stderr (err_console) with its ExitStatus, as the
# client commands of mixopt.cli do


def _need_server() -> None:
    try:
        require("server")
    except MissingExtra as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(ExitStatus.MISSING_EXTRA) from None


def _fail(exc: Exception) -> None:
    err_console.print(f"[red]error:[/red] {escape(str(exc))}")
    raise typer.Exit(ExitStatus.API_REFUSED)


def serve(
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    worker: Annotated[
        bool, typer.Option(help="also start an embedded Celery worker and beat, supervised")
    ] = True,
) -> None:
    """Run the API (and a supervised Celery worker + beat: see workers.embedded)."""
    _need_server()
    import uvicorn

    from app.bootstrap import prepare
    from app.core import logs
    from app.core.config import get_settings

    logs.configure()  # one handler, MIXOPT_LOG_FORMAT's format: each record written once
    settings = get_settings()
    plain = prepare(settings)
    console.print(
        f"mixopt API on http://{host}:{port}  (docs: /docs)  database: {settings.database_url}"
    )
    if plain and settings.admin_token is None:
        console.print(
            f"admin token (stored in {settings.home / 'admin_token'}): [bold]{plain}[/bold]"
        )
    supervisor = None
    if worker:
        from workers.embedded import Supervisor

        supervisor = Supervisor(settings).start()
        console.print(
            "embedded "
            f"worker{' and beat' if supervisor.has_beat else ' (beat runs in another serve)'}: "
            f"logs in {settings.home}"
        )
        # uvicorn re-raises SIGTERM after its graceful shutdown; turn it into SystemExit so the
        # finally below still stops the worker (the default action would end us first)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        # proxy_headers off: uvicorn would otherwise take X-Forwarded-For from 127.0.0.1 as the
        # client; mixopt reads it itself, from MIXOPT_TRUSTED_PROXIES only (app/api/ratelimit)
        # log_config None: uvicorn keeps the handler installed above (its own would add a second)
        uvicorn.run(
            "app.main:app",
            host=host,
            port=port,
            log_level="info",
            log_config=None,
            proxy_headers=False,
        )
    finally:
        if supervisor is not None:
            supervisor.stop()


def worker_cmd(
    queues: Annotated[
        str, typer.Option("-Q", "--queues", help="comma-separated queues")
    ] = "default,gpu",
    concurrency: Annotated[int, typer.Option("-c", "--concurrency", help="worker processes")] = 1,
    beat: Annotated[
        bool, typer.Option("--beat/--no-beat", help="run the beat scheduler in this worker")
    ] = False,
    name: Annotated[
        str, typer.Option("-n", "--name", help="node name (%h: host name); health checks ping it")
    ] = "mixopt@%h",
) -> None:
    """Run a Celery worker (one process per GPU for the gpu queue: pin it with \
CUDA_VISIBLE_DEVICES).

    BLAS/OpenMP threads per pool process: MIXOPT_WORKER_THREADS, else cores // concurrency.
    Beat's housekeeping goes to MIXOPT_MAINTENANCE_QUEUE: run one worker on it (-Q maintenance
    -c 1); with --beat this worker consumes it too.
    """
    _need_server()
    from app.core.config import get_settings
    from workers.celery_app import celery_app

    celery_app.worker_main(worker_argv(get_settings(), queues, concurrency, beat, name))


def worker_argv(settings: Settings, queues: str, concurrency: int, beat: bool, name: str) -> list:
    """Celery's arguments for ``mixopt worker``; a worker that runs beat also consumes beat's
    housekeeping queue (``MIXOPT_MAINTENANCE_QUEUE``), so it works alone."""
    if beat and settings.maintenance_queue not in queues.split(","):
        queues = f"{queues},{settings.maintenance_queue}"
    argv = ["worker", "-Q", queues, "-c", str(concurrency), "--loglevel", "INFO", "-n", name]
    if beat:
        argv += ["-B", "-s", str(settings.home / "celerybeat-schedule")]
    return argv


def beat_cmd() -> None:
    """Run Celery beat (ticks the online re-mixing and stale-job schedules); its schedule file
    and liveness file live in MIXOPT_HOME."""
    _need_server()
    from app.core.config import get_settings
    from workers.celery_app import celery_app

    home = get_settings().home
    home.mkdir(parents=True, exist_ok=True)
    celery_app.start(["beat", "--loglevel", "INFO", "-s", str(home / "celerybeat-schedule")])


DEFAULT_URL = "http://127.0.0.1:8000"


def health(
    what: Annotated[str, typer.Argument(help="api, worker or beat")],
    url: Annotated[
        str | None,
        typer.Option(envvar="MIXOPT_URL", help=f"the API's base URL (api; default {DEFAULT_URL})"),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "-n",
            "--name",
            help="worker node name, shell-style pattern allowed (worker; %h: host name); "
            "default: any live worker",
        ),
    ] = None,
    max_age: Annotated[float, typer.Option(help="beat: seconds since its last tick")] = 120.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="print the healthy answer as one JSON object")
    ] = False,
) -> None:
    """Health check of one service (for container health checks): exit 0 when healthy.

    api: GET /healthz answers 200 (--url, else MIXOPT_URL); worker: a live worker (of that node
    name, when given) wrote its heartbeat row within MIXOPT_STALE_JOB_SECONDS, as /readyz reads
    it, and, on a broker that can broadcast (Redis, AMQP), answers Celery's ping; beat: it
    ticked within --max-age seconds (``<home>/beat.alive``).
    """
    _need_server()
    if what == "api":
        lines, answer = _health_api(url or DEFAULT_URL)
    elif what == "worker":
        lines, answer = _health_worker(name)
    elif what == "beat":
        lines, answer = _health_beat(max_age)
    else:
        err_console.print("[red]error:[/red] what must be api, worker or beat")
        raise typer.Exit(ExitStatus.USAGE)
    if as_json:
        print(json.dumps({"service": what, "healthy": True, **answer}))
        return
    for line in lines:
        console.print(escape(line))


def _unhealthy(message: str) -> NoReturn:
    err_console.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(1)


def _health_api(url: str) -> tuple[list[str], dict]:
    import httpx

    try:
        status = httpx.get(url.rstrip("/") + "/healthz", timeout=3).status_code
    except httpx.HTTPError as exc:
        _unhealthy(f"{url}: {type(exc).__name__}: {exc}")
    if status != 200:
        _unhealthy(f"{url}/healthz answered {status}")
    return [f"{url}: ok"], {"url": url, "status": status}


def _health_worker(name: str | None) -> tuple[list[str], dict]:
    """The heartbeat rows every worker writes (the embedded worker of ``mixopt serve`` is
    ``embedded-<pid>@host``); Celery's ping on top where the broker broadcasts (kombu's
    SQLAlchemy transport, the embedded broker, cannot: a ping there never gets an answer)."""
    import socket

    from app.core.config import get_settings
    from app.services import health as health_service
    from app.store.db import session_scope

    settings = get_settings()
    pattern = name.replace("%h", socket.gethostname()) if name else None
    try:
        with session_scope() as s:
            why, live = health_service.workers(s, settings)
    except Exception as exc:  # the database is down: unhealthy, said why
        _unhealthy(f"cannot read worker heartbeats: {type(exc).__name__}: {exc}")
    found = health_service.live_named(live, pattern)
    if not found:
        _unhealthy(
            f"no live worker named {pattern}"
            + (f" (live: {', '.join(w['name'] for w in live)})" if live else "")
            if pattern
            else (why or "no live worker")
        )
    from workers.celery_app import celery_app

    with celery_app.connection_for_write() as conn:
        broadcasts = "fanout" in conn.transport.implements.exchange_type
    if broadcasts:
        names = [str(w["name"]) for w in found]
        replies = celery_app.control.ping(destination=names, timeout=5) or []
        answered = {n for r in replies for n in r}
        found = [w for w in found if w["name"] in answered]
        if not found:
            _unhealthy(f"worker(s) {', '.join(names)} beat but did not answer Celery's ping")
    lines = [
        f"{w['name']}: alive (heartbeat {w['seen_s_ago']} s ago, "
        f"queues {w['queues']}){': pong' if broadcasts else ''}"
        for w in found
    ]
    workers = [
        {"name": str(w["name"]), "seen_s_ago": w["seen_s_ago"], "queues": w["queues"]}
        for w in found
    ]
    return lines, {"workers": workers, "pinged": broadcasts}


def _health_beat(max_age: float) -> tuple[list[str], dict]:
    import time

    from app.core.config import get_settings

    alive = get_settings().home / "beat.alive"
    age = time.time() - alive.stat().st_mtime if alive.exists() else None
    if age is None or age > max_age:
        _unhealthy(f"beat has not ticked in {max_age:g} s ({alive})")
    return [f"beat ticked {age:.0f} s ago"], {"ticked_s_ago": round(age, 1)}


def db_upgrade(revision: Annotated[str, typer.Argument(help="target revision")] = "head") -> None:
    """Apply migrations (deployments run this once before starting the API)."""
    _need_server()
    from app.core.config import get_settings
    from app.store import migrate

    migrate.upgrade(get_settings().database_url, revision)
    console.print(f"database at {revision}")


def db_downgrade(
    revision: Annotated[str, typer.Argument(help="target revision ('base' for none)")],
) -> None:
    """Revert migrations down to REVISION (each migration has a real downgrade)."""
    _need_server()
    from app.core.config import get_settings
    from app.store import migrate

    migrate.downgrade(get_settings().database_url, revision)
    console.print(f"database at {revision}")


def token_create(
    name: Annotated[str, typer.Argument(help="a label for the token")],
    role: Annotated[str, typer.Option(help="admin, write or read")] = "write",
    project: Annotated[
        list[int] | None, typer.Option("--project", "-p", help="project id (repeatable)")
    ] = None,
) -> None:
    """Create a token and print it (shown once; stored hashed)."""
    _need_server()
    from app.services import tokens
    from app.services.errors import ServiceError
    from app.store.db import session_scope

    try:
        with session_scope() as s:
            row, plain = tokens.create_token(s, name, role, project or [])
            console.print(f"token {row.id} ({role}): [bold]{plain}[/bold]")
    except ServiceError as exc:
        _fail(exc)


def token_revoke(
    token_id: Annotated[int, typer.Argument(help="id from `mixopt token list`")],
) -> None:
    """Revoke a token: every later request with it is a 401."""
    _need_server()
    from app.services import tokens
    from app.services.errors import ServiceError
    from app.store.db import session_scope

    try:
        with session_scope() as s:
            tokens.revoke(s, token_id)
        console.print(f"token {token_id} revoked")
    except ServiceError as exc:
        _fail(exc)


def token_list() -> None:
    """List the tokens of this machine's database (prefixes only; tokens are stored hashed)."""
    _need_server()
    from app.services import tokens
    from app.store.db import session_scope

    table = Table("id", "name", "prefix", "role", "projects", "revoked")
    with session_scope() as s:
        for t in tokens.list_tokens(s):
            table.add_row(
                str(t.id),
                t.name,
                t.prefix,
                t.role,
                ",".join(map(str, t.project_ids)),
                str(t.revoked_at or ""),
            )
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add the server-side commands to the ``mixopt`` command (the ``mixopt.cli`` entry point)."""
    app.command("serve")(serve)
    app.command("worker")(worker_cmd)
    app.command("beat")(beat_cmd)
    app.command("health")(health)
    db_app = typer.Typer(
        help="Database migrations (server side: uses this machine's settings).",
        no_args_is_help=True,
    )
    db_app.command("upgrade")(db_upgrade)
    db_app.command("downgrade")(db_downgrade)
    token_app = typer.Typer(
        help="API tokens (server side: uses this machine's database).", no_args_is_help=True
    )
    token_app.command("create")(token_create)
    token_app.command("revoke")(token_revoke)
    token_app.command("list")(token_list)
    app.add_typer(db_app, name="db")
    app.add_typer(token_app, name="token")
