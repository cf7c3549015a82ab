"""``mixopt fit``, ``mixopt recommend`` and ``mixopt best``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mixopt.cli._common import (
    JsonOpt,
    TimeoutOpt,
    TokenOpt,
    UrlOpt,
    WaitOpt,
    json_arg,
    kv,
    make_client,
    wait_with_bar,
)
from mixopt.cli.errors import handles_errors
from mixopt.cli.output import console, print_json
from mixopt.client import MixoptError
from mixopt.render import print_fit, print_recommendation

LabelNameOpt = Annotated[str | None, typer.Option("--name", help="a name for what it makes")]
LabelTagsOpt = Annotated[
    list[str] | None,
    typer.Option("--label", help="tag what it makes (repeatable; find it with --tag in list)"),
]


def phases_arg(text: str | None) -> list[dict[str, Any]] | None:
    """``--phases``: ``NAME=TOKENS,...`` or a JSON list of phases (inline or ``@file``)."""
    if text is None:
        return None
    if text.startswith(("[", "@")):
        body = Path(text[1:]).read_text() if text.startswith("@") else text
        try:
            value = json.loads(body)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--phases: not JSON ({exc})") from None
        if not isinstance(value, list) or not all(isinstance(p, dict) for p in value):
            raise ValueError("--phases: expected a JSON list of {name, tokens, objective}")
        return value
    phases = []
    for item in text.split(","):
        name, sep, tokens = item.strip().partition("=")
        try:
            count = float(tokens)
        except ValueError:
            count = float("nan")
        if not sep or not name or not 0 < count <= 2**63 - 1:
            raise ValueError(f"--phases: expected NAME=TOKENS with TOKENS > 0, got {item!r}")
        phases.append({"name": name, "tokens": int(count)})
    return phases


def reference_arg(text: str | None, tolerance: float | None) -> dict[str, Any] | None:
    """``--reference``: a baseline name, ``rec:ID``, or a JSON mixture (inline or ``@file``)."""
    if text is None:
        if tolerance is not None:
            raise ValueError("--tolerance needs --reference")
        return None
    ref: dict[str, Any]
    if text.startswith(("{", "@")):
        ref = {"mixture": json_arg(text, "--reference")}
    elif text.startswith("rec:"):
        try:
            ref = {"recommendation_id": int(text[4:])}
        except ValueError:
            raise ValueError(f"--reference: rec:ID needs a number, got {text!r}") from None
    else:
        ref = {"baseline": text}
    if tolerance is not None:
        ref["tolerance"] = tolerance
    return ref


@handles_errors
def fit(
    project_id: Annotated[int, typer.Argument(help="project id")],
    estimator: Annotated[
        str,
        typer.Option(
            "--estimator", "-e", help="auto, mixing_law, bimix, regmix_lgbm, regmix_linear, gp, ..."
        ),
    ] = "auto",
    target: Annotated[
        list[str] | None,
        typer.Option(
            "--target", help="METRIC=WEIGHT to fit (repeatable); default: the project's objective"
        ),
    ] = None,
    tag: Annotated[str | None, typer.Option(help="fit only runs with this tag")] = None,
    cv_folds: Annotated[int, typer.Option(help="cross-validation folds")] = 5,
    params: Annotated[
        str | None, typer.Option(help="estimator hyper-parameters as JSON or @file")
    ] = None,
    name: LabelNameOpt = None,
    label: LabelTagsOpt = None,
    wait: WaitOpt = True,
    timeout: TimeoutOpt = 3600.0,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Fit an estimator on the project's runs in a worker; prints its cross-validated fidelity."""
    c = make_client(url, token)
    acc = c.fit(
        project_id,
        estimator,
        target=kv(target, "--target") or None,
        cv_folds=cv_folds,
        run_filter={"tag": tag} if tag else None,
        params=json_arg(params, "--params"),
        name=name,
        tags=label,
    )
    fit_id = acc.fit.id if acc.fit else int((acc.job.result or {})["fit_id"])
    if wait:
        wait_with_bar(c, acc, f"fitting {estimator}", timeout, quiet=as_json)
    found = c.get_fit(project_id, fit_id)
    if as_json:
        print_json(found)
        return
    print_fit(console, found)
    if not wait:
        console.print(f"job {acc.job.id}: follow it with `mixopt jobs watch {acc.job.id}`")


@handles_errors
def recommend(
    project_id: Annotated[int, typer.Argument(help="project id")],
    fit_id: Annotated[int | None, typer.Option("--fit", help="recommend from this fit")] = None,
    estimator: Annotated[
        str | None,
        typer.Option("--estimator", "-e", help="fit this estimator first (default: auto)"),
    ] = None,
    target_tokens: Annotated[
        float | None,
        typer.Option(help="tokens of the target run (with --max-epochs: availability caps)"),
    ] = None,
    max_epochs: Annotated[
        float | None, typer.Option(help="largest number of passes over any domain")
    ] = None,
    constraints: Annotated[
        str | None, typer.Option(help="constraints as JSON or @file (replace the project's)")
    ] = None,
    model_params: Annotated[
        int | None, typer.Option(help="target model size (nested scaling laws)")
    ] = None,
    train_tokens: Annotated[
        int | None, typer.Option(help="target training tokens (nested scaling laws)")
    ] = None,
    train_steps: Annotated[
        int | None, typer.Option(help="target training steps (BiMix, steps law)")
    ] = None,
    n_boot: Annotated[int, typer.Option(help="bootstrap refits for the interval")] = 20,
    allow_untrusted: Annotated[
        bool, typer.Option("--allow-untrusted", help="recommend from a fit flagged untrusted")
    ] = False,
    allow_extrapolation: Annotated[
        bool,
        typer.Option(
            "--allow-extrapolation", help="accept weights beyond what the runs tried (see README)"
        ),
    ] = False,
    trust_region: Annotated[
        float | None,
        typer.Option(help="keep each weight within this of the largest a run gave", min=0, max=1),
    ] = None,
    phases: Annotated[
        str | None,
        typer.Option(
            help="a staged mixture: NAME=TOKENS,NAME=TOKENS (e.g. pretrain=8e9,anneal=2e9), or "
            "a JSON list of {name, tokens, objective} (inline or @file)"
        ),
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(
            help="a baseline to beat: a baseline name (natural, uniform, ...), rec:ID (a stored "
            "recommendation) or a JSON mixture (inline or @file)"
        ),
    ] = None,
    tolerance: Annotated[
        float | None, typer.Option(help="with --reference: loss units a metric may lose", min=0)
    ] = None,
    name: LabelNameOpt = None,
    label: LabelTagsOpt = None,
    wait: WaitOpt = True,
    timeout: TimeoutOpt = 3600.0,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Recommend a mixture under the project's constraints (or the given ones) in a worker."""
    c = make_client(url, token)
    cons = json_arg(constraints, "--constraints")
    if target_tokens is not None or max_epochs is not None:
        cons = dict(cons if cons is not None else c.get_project(project_id).constraints or {})
        if target_tokens is not None:
            cons["target_tokens"] = int(target_tokens)
        if max_epochs is not None:
            cons["max_epochs"] = max_epochs
    scale = {
        k: v
        for k, v in (
            ("model_params", model_params),
            ("train_tokens", train_tokens),
            ("train_steps", train_steps),
        )
        if v is not None
    }
    acc = c.recommend(
        project_id,
        fit_id=fit_id,
        estimator=estimator if fit_id is None else None,
        constraints=cons,
        target_scale=scale or None,
        n_boot=n_boot,
        allow_untrusted=allow_untrusted or None,
        allow_extrapolation=allow_extrapolation or None,
        trust_region=trust_region,
        phases=phases_arg(phases),
        reference=reference_arg(reference, tolerance),
        name=name,
        tags=label or None,
    )
    if not wait:
        if as_json:
            print_json(acc)
        else:
            console.print(f"job {acc.job.id}: {acc.job.state}")
        return
    job = wait_with_bar(c, acc, "recommending", timeout, quiet=as_json)
    rec = c.get_recommendation(project_id, (job.result or {})["recommendation_id"])
    its_fit = c.get_fit(project_id, rec.fit_id) if rec.fit_id else None
    if as_json:
        print_json({"recommendation": rec, "fit": its_fit})
        return
    print_recommendation(console, rec, its_fit)


@handles_errors
def best(
    project_id: Annotated[int, typer.Argument(help="project id")],
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """The recommendation to trust most (its fit has the highest cross-validated Spearman),
    with that trust."""
    found = make_client(url, token).best(project_id)
    if found is None:
        raise MixoptError(
            404,
            f"project {project_id} has no recommendation yet: run `mixopt recommend {project_id}`",
        )
    rec, its_fit = found
    if as_json:
        print_json({"recommendation": rec, "fit": its_fit})
        return
    print_recommendation(console, rec, its_fit)
