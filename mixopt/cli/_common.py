"""What the client commands share: the ``--url``/``--token``/``--json``/``--wait`` options,
the client (with the profile file's URL and token, :mod:`mixopt.cli.profiles`),
``NAME=VALUE`` and JSON/YAML arguments, and waiting for a job with a bar."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from mixopt.api_types import Job, Project, Run
from mixopt.cli.output import err_console
from mixopt.cli.profiles import load_profile
from mixopt.client import MixoptClient
from mixopt.paths import mixopt_home

UrlOpt = Annotated[
    str | None,
    typer.Option("--url", envvar="MIXOPT_URL", help="API base URL (default http://127.0.0.1:8000)"),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="MIXOPT_TOKEN",
        help="API token (default: the embedded admin token in MIXOPT_HOME)",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON (for scripts) instead of tables")]
WaitOpt = Annotated[
    bool, typer.Option("--wait/--no-wait", help="wait for the job, with a progress bar")
]
TimeoutOpt = Annotated[
    float, typer.Option(help="seconds to wait for the job before giving up (exit 6)")
]


#: the root command's ``--profile`` for this invocation (``mixopt --profile NAME ...``, or
#: ``MIXOPT_PROFILE``): set by the ``mixopt`` callback before every command
_PROFILE: dict[str, str | None] = {"name": None}


def use_profile(name: str | None) -> None:
    """Make the client commands of this invocation read profile ``name``."""
    _PROFILE["name"] = name


def current_profile() -> str | None:
    return _PROFILE["name"]


def make_client(url: str | None, token: str | None) -> MixoptClient:
    """The client for ``--url``/``--token`` (or ``MIXOPT_URL``/``MIXOPT_TOKEN``), else the
    profile's (:mod:`mixopt.cli.profiles`); without a token, the embedded admin token."""
    name = current_profile() or os.environ.get("MIXOPT_PROFILE") or None
    if url is None or token is None or name is not None:
        profile = load_profile(name)
        url = url or profile.url
        token = token or profile.token
    if token is None:
        f = mixopt_home() / "admin_token"
        token = f.read_text().strip() if f.exists() else None
    return MixoptClient(url, token)


def wait_with_bar(
    c: MixoptClient, job: Any, label: str, timeout: float, quiet: bool = False
) -> Job:
    """Wait for a job with a progress bar on stderr (none when ``quiet``)."""
    if quiet:
        return c.wait(job, timeout=timeout)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[message]}"),
    )
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task(label, total=1.0, message="")

        def update(j: Job) -> None:
            message = escape(f"{j.state} {j.message or ''}".strip())
            bar.update(task, completed=j.progress or 0.0, message=message)

        return c.wait(job, timeout=timeout, progress=update)


def kv(items: list[str] | None, what: str, cast: Callable[[str], Any] = float) -> dict[str, Any]:
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


def parts(items: list[str] | None, what: str) -> dict[str, list[str]]:
    """``NAME=PART,PART`` options (``--split web=web_news,web_blog``) as a dict."""
    out: dict[str, list[str]] = {}
    for item in items or []:
        name, sep, rest = item.partition("=")
        if not sep or not name or not rest:
            raise ValueError(f"{what}: expected NAME=PART,PART, got {item!r}")
        out[name] = [x for x in rest.split(",") if x]
    return out


def json_arg(text: str | None, what: str) -> dict | None:
    """A JSON object given inline or as ``@file.json`` / ``@file.yaml``."""
    if text is None:
        return None
    if text.startswith("@"):
        path = Path(text[1:])
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            return read_yaml(text, what)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what}: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what}: expected a JSON object")
    return value


def read_yaml(text: str, what: str) -> dict:
    """A YAML mapping (pyyaml is optional: without it, JSON only)."""
    try:
        import yaml  # type: ignore[import-untyped]  # optional: not in the base install
    except ImportError:
        raise ValueError(
            f"{what}: reading YAML needs pyyaml (pip install pyyaml), or give JSON"
        ) from None
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc
        raise ValueError(f"{what}: not YAML ({where}{problem})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what}: expected a mapping")
    return value


def objective_of(project: Project, runs: list[Run]) -> Callable[[Run], float | None]:
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
