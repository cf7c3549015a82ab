"""``mixopt project create|list|show|domains``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from mixopt.cli._common import (
    JsonOpt,
    TokenOpt,
    UrlOpt,
    json_arg,
    kv,
    make_client,
    parts,
    read_yaml,
)
from mixopt.cli.errors import handles_errors
from mixopt.cli.output import console, err_console, print_json
from mixopt.render import fmt

app = typer.Typer(help="Projects (through the API).", no_args_is_help=True)


def _domain_specs(items: list[str], what: str) -> list[dict[str, Any]]:
    """``NAME`` or ``NAME=TOKENS`` options as domain specs."""
    out: list[dict[str, Any]] = []
    for item in items:
        name, sep, tokens = item.partition("=")
        if not sep:
            out.append({"name": name})
            continue
        try:
            out.append({"name": name, "token_count": int(float(tokens))})
        except ValueError:
            raise ValueError(f"{what} {item!r}: the token count must be a number") from None
    return out


#: the keys of a mixopt project file (``-f``)
PROJECT_FILE_KEYS = {"name", "domains", "objective", "constraints", "description"}


def _project_file(file: Path) -> dict[str, Any]:
    """A project file (``-f``): mixopt's ``{domains, objective, constraints, description}``,
    or olmix's fit config (:mod:`mixopt.exports.olmix_config`, what maps onto a project and
    notes on stderr for the rest); unknown keys are a ValueError naming them (exit 2)."""
    text = file.read_text()
    yaml_file = file.suffix in (".yaml", ".yml")
    spec = read_yaml(text, str(file)) if yaml_file else json_arg(text, str(file)) or {}
    from mixopt.exports import olmix_config  # lazy: only -f needs it

    if olmix_config.is_olmix_fit_config(spec):
        spec, notes = olmix_config.project_from_olmix_fit(spec)
        for note in notes:
            err_console.print(f"note: {escape(note)}", highlight=False)
        return spec
    unknown = sorted(set(spec) - PROJECT_FILE_KEYS)
    if unknown:
        raise ValueError(
            f"{file}: unknown key(s) {unknown}; a project file has {sorted(PROJECT_FILE_KEYS)} "
            "(or is an olmix fit config, with priors)"
        )
    return spec


@app.command("create")
@handles_errors
def project_create(
    name: Annotated[str, typer.Argument(help="project name")],
    domain: Annotated[
        list[str] | None,
        typer.Option(
            "--domain", "-d", help="domain, in order: NAME or NAME=TOKENS (token count); repeatable"
        ),
    ] = None,
    objective: Annotated[
        list[str] | None,
        typer.Option(
            "--objective",
            help="METRIC=WEIGHT of the objective (repeatable); default: mean of the "
            "per-domain losses",
        ),
    ] = None,
    constraints: Annotated[
        str | None,
        typer.Option(
            help="constraints as JSON or @file.json/@file.yaml, e.g. "
            '\'{"target_tokens": 1e11, "max_epochs": 4}\''
        ),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            help="a YAML/JSON project file {domains, objective, constraints, "
            "description} (olmix-style)",
        ),
    ] = None,
    description: Annotated[str | None, typer.Option(help="free text")] = None,
    exist_ok: Annotated[
        bool,
        typer.Option(
            "--get-or-create",
            "--exist-ok",
            help="return the project of that name if it exists (its domains must match)",
        ),
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="print only the id (PID=$(mixopt project create ... -q))"
        ),
    ] = False,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Create a project: ordered domains (with token counts), objective and constraints, from
    options or from a file; options override the file."""
    spec = _project_file(file) if file is not None else {}
    domains: list[Any] = list(spec.get("domains") or [])
    if domain:
        domains = _domain_specs(domain, "--domain")
    obj = kv(objective, "--objective") or spec.get("objective")
    cons = json_arg(constraints, "--constraints") or spec.get("constraints")
    if cons and isinstance(cons.get("target_tokens"), float):
        cons["target_tokens"] = int(cons["target_tokens"])
    c = make_client(url, token)
    create = c.get_or_create_project if exist_ok else c.create_project
    p = create(
        name,
        domains,
        objective=obj,
        constraints=cons,
        description=description or spec.get("description"),
    )
    if as_json:
        print_json(p)
        return
    if quiet:
        typer.echo(p.id)
        return
    console.print(
        f"project {p.id} {escape(repr(p.name))} with {len(p.domains)} domains", highlight=False
    )


@app.command("list")
@handles_errors
def project_list(as_json: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Every project this token sees (all pages)."""
    rows = make_client(url, token).list_projects()
    if as_json:
        print_json(rows)
        return
    table = Table("id", "name", "domains", "runs", "created")
    for p in rows:
        more = f", ... ({len(p.domains)})" if len(p.domains) > 6 else ""
        names = ", ".join(p.domain_names[:6]) + more
        table.add_row(
            str(p.id),
            escape(p.name),
            escape(names),
            str(p.run_count),
            p.created_at.strftime("%Y-%m-%d"),
        )
    console.print(table)


@app.command("show")
@handles_errors
def project_show(
    project_id: Annotated[int, typer.Argument(help="project id")],
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """A project: domains with token counts, objective, constraints."""
    p = make_client(url, token).get_project(project_id)
    if as_json:
        print_json(p)
        return
    console.print(f"project {p.id} {escape(repr(p.name))}: {p.run_count} runs", highlight=False)
    table = Table("domain", "tokens", "measured", "source")
    for d in p.domains:
        table.add_row(
            escape(d.name),
            fmt(d.token_count),
            "yes" if d.token_count_measured else "",
            escape(str((d.source or {}).get("path", ""))),
        )
    console.print(table)
    objective = escape(json.dumps(p.objective)) if p.objective else "mean of the per-domain losses"
    console.print(f"objective: {objective}", highlight=False)
    cons = {k: v for k, v in (p.constraints or {}).items() if v not in ({}, None, 0, 0.0)}
    console.print(f"constraints: {escape(json.dumps(cons)) if cons else 'none'}", highlight=False)


@app.command("domains")
@handles_errors
def project_domains(
    project_id: Annotated[int, typer.Argument(help="project id")],
    add: Annotated[
        list[str] | None,
        typer.Option("--add", help="add a domain: NAME or NAME=TOKENS (repeatable)"),
    ] = None,
    remove: Annotated[
        list[str] | None, typer.Option("--remove", help="retire a domain (repeatable)")
    ] = None,
    split: Annotated[
        list[str] | None, typer.Option("--split", help="OLD=PART,PART: split a domain (repeatable)")
    ] = None,
    merge: Annotated[
        list[str] | None, typer.Option("--merge", help="NEW=PART,PART: merge domains (repeatable)")
    ] = None,
    base_version: Annotated[
        int | None,
        typer.Option("--base-version", help="refuse (409) if the set is no longer at this version"),
    ] = None,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """The versions of a project's domain set; with --add/--remove/--split/--merge, change the
    set first (a new version: runs keep theirs, fits map them into the new set where valid)."""
    c = make_client(url, token)
    if add or remove or split or merge:
        c.change_domains(
            project_id,
            add=_domain_specs(add or [], "--add"),
            remove=list(remove or []),
            split=parts(split, "--split"),
            merge=parts(merge, "--merge"),
            base_version=base_version,
        )
    sets = c.domain_sets(project_id)
    if as_json:
        print_json(sets)
        return
    table = Table("version", "domains", "changes", "runs", "created")
    for v in sets.data:
        ch = {k: val for k, val in v.changes.items() if val and k not in ("via", "warnings")}
        table.add_row(
            f"{v.version}{' (current)' if v.current else ''}",
            escape(", ".join(v.domain_names)),
            escape(json.dumps(ch) if ch else v.changes.get("via", "")),
            str(v.run_count),
            v.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table)
    retired = [h["name"] for h in sets.history if h["retired"]]
    if retired:
        console.print(f"retired: {escape(', '.join(retired))}", highlight=False)
