"""The ``mixopt`` command: talk to the API, build demo data, and (with the server installed)
run the service.

Client commands (``project``, ``runs``, ``ingest``, ``swarm``, ``fit``, ``recommend``, ``best``,
``jobs``, ``mixture``, ``validate``) talk to the API at ``--url``/``MIXOPT_URL`` with
``--token``/``MIXOPT_TOKEN``; each takes ``--json`` for scripts. Every command fails the same
way (:mod:`mixopt.cli.errors`): one line on stderr and an :class:`ExitStatus`. Server-side
commands (``serve``, ``worker``, ``beat``, ``db``, ``token``) live in ``workers.cli`` and are
added through the ``mixopt.cli`` entry-point group, so this package imports no server code.

One module per command group: ``projects``, ``runs``, ``mixtures``, ``jobs``, ``fits`` (fit,
recommend, best), ``training`` (ingest, swarm, validate), ``demo`` (demo, demo-data,
train-tokenizer); shared options in ``_common``, output in ``output``, tables in
:mod:`mixopt.render`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, entry_points, version
from typing import Annotated

import typer

from mixopt.cli import demo, fits, integrations, jobs, mixtures, projects, results, runs, training
from mixopt.cli import experts as experts_cli
from mixopt.cli._common import use_profile
from mixopt.cli.errors import ExitStatus

__all__ = ["ExitStatus", "app", "main"]

app = typer.Typer(
    help="mixopt: data-mixture optimisation for LM pretraining.", no_args_is_help=True
)
app.add_typer(projects.app, name="project")
app.add_typer(runs.app, name="runs")
integrations.register(runs.app)  # runs import-mlflow, import-wandb
app.add_typer(mixtures.app, name="mixture")
app.add_typer(jobs.app, name="jobs")
app.add_typer(experts_cli.app, name="experts")
app.add_typer(results.fits_app, name="fits")
app.add_typer(results.recs_app, name="recommendations")
app.command("ingest")(training.ingest)
app.command("swarm")(training.swarm)
app.command("fit")(fits.fit)
app.command("recommend")(fits.recommend)
app.command("best")(fits.best)
app.command("validate")(training.validate)
app.command("demo-data")(demo.demo_data)
app.command("train-tokenizer")(demo.train_tokenizer)
app.command("demo", help=demo.DEMO_HELP)(demo.demo)


def _version(value: bool) -> None:
    if value:
        try:
            typer.echo(f"mixopt {version('mixopt')}")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            typer.echo("mixopt (not installed)")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            envvar="MIXOPT_PROFILE",
            help="URL and token of [profiles.NAME] in ~/.config/mixopt/config.toml "
            "(MIXOPT_CONFIG names another file); --url/--token and MIXOPT_URL/MIXOPT_TOKEN win",
        ),
    ] = None,
) -> None:
    """mixopt: data-mixture optimisation for LM pretraining.

    Exit codes: 0 done, 1 the API refused the request, 2 bad command line or input, 3 a missing
    extra, 4 the server cannot be reached or failed, 5 a job failed or was cancelled, 6 gave up
    waiting for a job. Errors go to stderr.
    """
    use_profile(profile)


def _register_plugins() -> None:
    """Commands contributed by other installed packages through the ``mixopt.cli`` entry-point
    group (the server's ``serve``, ``worker``, ``beat``, ``db``, ``token`` come from
    ``workers.cli``); the first registration of a name wins."""
    seen: set[str] = set()
    for ep in entry_points(group="mixopt.cli"):
        if ep.name in seen:
            continue
        seen.add(ep.name)
        ep.load()(app)


_register_plugins()


def main() -> None:  # pragma: no cover
    """The ``mixopt`` console script."""
    app()
