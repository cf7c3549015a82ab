"""``mixopt mixture export``: a recommendation, a baseline or an online session's weights as
the file a trainer loads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from mixopt.cli._common import TokenOpt, UrlOpt, make_client
from mixopt.cli.errors import CliError, ExitStatus, handles_errors
from mixopt.cli.output import console, err_console, print_json

app = typer.Typer(help="Mixtures for trainers (through the API).", no_args_is_help=True)


@app.command("export")
@handles_errors
def mixture_export(
    rec_id: Annotated[int | None, typer.Argument(help="recommendation id")] = None,
    *,
    project: Annotated[int, typer.Option("--project", "-p", help="project id")],
    format: Annotated[
        str, typer.Option(help="json, olmo-core, megatron, hf, levanter, regmix or olmix")
    ] = "json",
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="file to write (default: stdout)")
    ] = None,
    baseline: Annotated[
        str | None, typer.Option(help="a baseline (natural, uniform, ...) instead")
    ] = None,
    session: Annotated[int | None, typer.Option(help="an online session's weights instead")] = None,
    weights: Annotated[
        str, typer.Option(help="online session: current, final or trajectory")
    ] = "current",
    part: Annotated[
        str | None, typer.Option(help="one file of a multi-file export (olmo-core, megatron)")
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="print {name, bytes, path} (with -o) or {name, bytes, content} as JSON",
        ),
    ] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Write a recommendation (or a baseline, or an online session's weights) as the file a
    trainer loads: ``GET .../recommendations/{id}/export?format=F``."""
    exported = make_client(url, token).export_mixture_file(
        project,
        rec_id,
        format=format,
        baseline=baseline,
        session_id=session,
        weights=weights,
        part=part,
    )
    name, data, notes = exported.name, exported.content, exported.notes
    if notes and not as_json:  # what the trainer will not enforce: said on stderr
        err_console.print(f"[yellow]note:[/yellow] {escape(notes)}", highlight=False)
    extra = {"notes": notes} if notes else {}
    if out is None:
        if name.endswith(".zip"):
            raise CliError(
                f"the {format} export is several files ({name}): pass -o FILE, or "
                "--part NAME for one of them",
                ExitStatus.USAGE,
            )
        if as_json:
            print_json({"name": name, "bytes": len(data), "content": data.decode("utf-8")} | extra)
            return
        typer.echo(data.decode("utf-8"), nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    if as_json:
        print_json({"name": name, "bytes": len(data), "path": str(out)} | extra)
        return
    console.print(f"wrote {escape(str(out))} ({len(data)} bytes, {escape(name)})", highlight=False)
