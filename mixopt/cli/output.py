"""Where the CLI writes: tables and results on stdout, errors and progress bars on stderr."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import typer
from pydantic import BaseModel
from rich.console import Console

#: piped output is not cut at 80 columns (COLUMNS sets the width); a terminal's tables fit it
WIDTH = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS") or 240)
console = Console(width=WIDTH)
err_console = Console(stderr=True, width=WIDTH)


def dump(value: Any) -> Any:
    """Models, lists and dicts of them as plain JSON values."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [dump(v) for v in value]
    if isinstance(value, dict):
        return {k: dump(v) for k, v in value.items()}
    return value


def print_json(value: Any) -> None:
    """``--json`` output: indented JSON on stdout."""
    typer.echo(json.dumps(dump(value), indent=2, default=str))
