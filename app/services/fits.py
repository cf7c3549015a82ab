"""Fits (an estimator fitted on a set of runs), their predictions, and the estimators.

Fitting runs in a worker (``fit`` jobs, and ``recommend`` jobs that fit first): the task loads
:func:`training_data`, calls the science and stores with :func:`store_fit`. ``predict``
answers in the request (it only evaluates stored parameters). Recommendations and suggestions
have their own services (:mod:`app.services.recommendations`, :mod:`app.services.suggestions`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, object_session

from app.schemas.fits import FitCreate, FitUpdate, RunFilter
from app.services import domains as domain_service
from app.services import jobs as job_service
from app.services import labels, rows
from app.services.errors import Conflict, Invalid
from app.services.objectives import normalised
from app.services.runs import validate_mixture
from app.store.models import CurvePoint, Fit, Job, Project, Recommendation, Run, RunTag, utcnow


def known_estimators() -> list[str]:
    # lazy (here and below): importing mixopt.mixing registers every estimator (~1.5 s)
    import mixopt.mixing  # noqa: F401
    from mixopt.mixing.base import ESTIMATORS

    return sorted(ESTIMATORS)


def estimator_catalogue() -> list[dict[str, Any]]:
    """Each estimator with its parameters (type, default, meaning, range) and its run needs."""
    from mixopt.mixing import pipeline  # lazy: mixopt.mixing loads every estimator

    return pipeline.estimator_catalogue()


def check_estimator(name: str, field: str = "estimator") -> None:
    names = known_estimators()
    if name not in names:
        raise Invalid(f"unknown estimator {name!r}; available: {names}", field=field)


def check_params(name: str, params: dict[str, Any] | None, field: str = "params") -> None:
    """Unknown or out-of-range estimator parameters: 422 naming each one (never a failed job)."""
    from mixopt.mixing import pipeline  # lazy: mixopt.mixing loads every estimator

    errors = pipeline.validate_params(name, params)
    if errors:
        raise Invalid("; ".join(errors), field=field)


#: scales listed in a "runs span several scales" message
_MAX_SCALES_LISTED = 20


def _filtered(project: Project, f: RunFilter, version: int | None = None):
    """The run filter as a WHERE clause list (shared by the cheap checks and the worker's load);
    ``version``: only runs stored on that domain-set version (``domain_versions: current``)."""
    conds = [Run.project_id == project.id, Run.status == f.status]
    if version is not None:
        conds.append(Run.domain_version == version)
    if f.tag:
        conds.append(Run.id.in_(select(RunTag.run_id).where(RunTag.tag == f.tag)))
    for col, v in (
        (Run.model_params, f.model_params),
        (Run.train_tokens, f.train_tokens),
        (Run.train_steps, f.train_steps),
    ):
        if v is not None:
            conds.append(col == v)
    if f.run_ids is not None:
        conds.append(Run.id.in_(f.run_ids))
    return conds


def check_runs_for_fit(
    session: Session,
    project: Project,
    f: RunFilter,
    target_scale: dict | None,
    requested_target: dict[str, float] | None,
    domain_versions: str = "compatible",
    *,
    estimator: tuple[str, dict[str, Any] | None, str] | None = None,
) -> dict[str, float]:
    """The checks ``POST .../fits`` can afford (milliseconds whatever the run count): a count,
    the distinct scales (bounded), and the metrics of the first and last run; returns the
    objective. Runs of several scales without ``target_scale``: 422 saying what to pass.
    ``estimator``: (name, params, field) of the estimator to fit, checked against the count
    (:func:`check_enough_runs`)."""
    conds = _filtered(project, f, project.domain_version if domain_versions == "current" else None)
    count = session.scalar(select(func.count()).select_from(Run).where(*conds)) or 0
    if not count:
        if domain_versions == "current" and session.scalar(
            select(func.count()).select_from(Run).where(*_filtered(project, f))
        ):
            raise Invalid(
                f"no run matching the run filter is on the current domain set (version "
                f"{project.domain_version}); pass domain_versions=compatible to use older runs",
                field="domain_versions",
            )
        raise Invalid("no runs match the run filter", field="run_filter")
    if estimator is not None:
        check_enough_runs(project, *estimator, count=count)
    if domain_versions != "current":
        check_runs_map(session, project, conds, count)
    scales = session.execute(
        select(Run.model_params, Run.train_steps, Run.train_tokens)
        .where(*conds)
        .group_by(Run.model_params, Run.train_steps, Run.train_tokens)
        .limit(_MAX_SCALES_LISTED + 1)
    ).all()
    if target_scale is None and len(scales) > 1:
        listed = ", ".join(
            f"(model_params={a}, train_steps={b}, train_tokens={c})"
            for a, b, c in scales[:_MAX_SCALES_LISTED]
        )
        more = " and more" if len(scales) > _MAX_SCALES_LISTED else ""
        raise Invalid(
            f"the runs span {len(scales)}{'+' if more else ''} scales ({listed}{more}): pass "
            "target_scale {model_params, train_steps | train_tokens} to answer at one scale "
            "through the scaling laws, or filter the runs by scale "
            "(run_filter.model_params/train_steps/train_tokens)",
            field="target_scale",
        )
    if estimator is not None and estimator[0] in DISTINCT_MIXTURES and len(scales) == 1:
        # runs of one scale: the law is fitted on their mixtures as they are (across scales the
        # scaling laws combine runs first, so only the fit can tell)
        need = required_runs(project, estimator[0], estimator[1])[0]
        distinct = count_distinct_mixtures(session, conds, enough=need)
        check_enough_runs(project, *estimator, count=count, distinct=distinct)
    ends = [
        session.scalar(select(Run).where(*conds).order_by(order).limit(1))
        for order in (Run.id.asc(), Run.id.desc())
    ]
    return resolve_target(
        project, requested_target, [r for r in ends if r is not None], check_exists=True
    )


def required_runs(project: Project, name: str, params: dict[str, Any] | None) -> tuple[int, str]:
    """Distinct mixtures the estimator needs for the project's domains (its ``required_runs``),
    and why when a selecting estimator (``auto``) needs more: as many as its least demanding
    candidate, each candidate being cross-validated on part of the runs."""
    import mixopt.mixing  # noqa: F401  # lazy: registers every estimator (~1.5 s)
    from mixopt.mixing.base import ESTIMATORS

    cls, k = ESTIMATORS[name], len(project.domains)
    need, why = cls.required_runs(k), ""
    if cls.selects_estimator:
        # auto's candidates (its param; default every other registered estimator)
        names = (params or {}).get("candidates")
        names = [n for n in (names if names is not None else ESTIMATORS) if n != name]
        least = min((ESTIMATORS[n].required_runs(k) for n in names if n in ESTIMATORS), default=0)
        if least > need:
            need, why = least, f" (its least demanding candidate needs {least})"
    return need, why


#: estimators whose fit needs ``required_runs`` *distinct* mixtures (the mixing law's K + 2
#: parameters: mixopt.mixing.mixing_law raises InsufficientDataError on fewer, and law_gp fits
#: it first); gp, regmix_* and bimix fit repeated mixtures, and auto skips a candidate that fails
DISTINCT_MIXTURES = ("mixing_law", "law_gp")


def count_distinct_mixtures(session: Session, conds: list, *, enough: int) -> int:
    """Distinct mixtures among the selected runs (exact weights, zero weights left out), counted
    a page at a time until ``enough`` are seen: a few milliseconds unless the runs repeat few
    mixtures (then every selected run is read once; that request is refused). Exact weights
    count at least as many as the estimators see (they round, and map older domain sets), so
    nothing a job could fit is refused."""
    seen: set[tuple] = set()
    last = 0
    page = select(Run.id, Run.mixture).where(*conds).order_by(Run.id).limit(_MAP_CHUNK)
    while rows := session.execute(page.where(Run.id > last)).all():
        for _, mixture in rows:
            seen.add(tuple(sorted((d, float(w)) for d, w in (mixture or {}).items() if w)))
        if len(seen) >= enough:
            break
        last = rows[-1][0]
    return len(seen)


def check_enough_runs(
    project: Project,
    name: str,
    params: dict[str, Any] | None,
    field: str,
    *,
    count: int,
    distinct: int | None = None,
) -> None:
    """Fewer selected runs, or fewer distinct mixtures among them (``distinct``), than the
    estimator needs for the project's domains (:func:`required_runs`): the fit job would fail,
    a 422 now. ``count`` bounds what the worker fits on (runs dropped by the domain mapping or
    missing a target metric only lower it), so nothing a job could fit is refused."""
    need, why = required_runs(project, name, params)
    k = len(project.domains)
    if distinct is not None and distinct < need <= count:
        raise Invalid(
            f"{name} needs at least {need} distinct mixtures for {k} domains{why}; the "
            f"{count} runs the run filter leaves try {distinct}: report runs at other "
            "mixtures, widen the run filter, or choose an estimator that needs fewer "
            "(GET /v1/estimators: min_runs)",
            field=field,
        )
    if count < need:
        raise Invalid(
            f"{name} needs at least {need} runs (distinct mixtures) for {k} domains{why}; the "
            f"run filter leaves {count}: report more runs, widen the run filter, or choose an "
            "estimator that needs fewer (GET /v1/estimators: min_runs)",
            field=field,
        )


#: runs mapped at a time when looking for one that reaches the current domain set
_MAP_CHUNK = 2000


def check_runs_map(session: Session, project: Project, conds: list, count: int) -> None:
    """At least one selected run reaches the current domain set (a run of an older version that
    used a removed domain is dropped): else the fit job would have no run to fit, a 422 now.
    Cheap when a selected run is on the current version; otherwise the older runs are mapped a
    chunk at a time until one survives (the worker maps them all anyway)."""
    version = project.domain_version or 1
    if version == 1 or session.scalar(
        select(Run.id).where(*conds, Run.domain_version == version).limit(1)
    ):
        return
    domains = [d.name for d in project.domains]
    reasons: dict[str, int] = {}
    last = 0
    page = select(Run).where(*conds).order_by(Run.id).limit(_MAP_CHUNK)
    while chunk := list(session.scalars(page.where(Run.id > last))):
        mapped, report = domain_service.map_runs(
            session, project, chunk, version=version, domains=domains
        )
        if any(x is not None for x in mapped):
            return
        for b in report["by_version"].values():
            for why, n in b["reasons"].items():
                reasons[why] = reasons.get(why, 0) + n
        last = chunk[-1].id
    why = "; ".join(f"{n} {r}" for r, n in list(reasons.items())[:5])
    raise Invalid(
        f"none of the {count} runs matching the run filter can be brought to the current domain "
        f"set (version {version}): {why}; report runs on the current domains, or fit before "
        "removing the domain they use",
        field="run_filter",
    )


def _select_runs(session: Session, project: Project, f: RunFilter | dict) -> list[Run]:
    f = f if isinstance(f, RunFilter) else RunFilter.model_validate(f)
    return list(session.scalars(select(Run).where(*_filtered(project, f)).order_by(Run.id)))


def resolve_target(
    project: Project,
    requested: dict[str, float] | None,
    runs: list[Run],
    check_exists: bool = False,
) -> dict[str, float]:
    """The objective as {metric: weight} normalised to sum 1.

    Requested target, else the project's objective, else the mean of the metrics that every
    selected run reports (the per-domain validation losses, for imported RegMix runs). With
    ``check_exists`` a requested metric no given run reports is a 422 listing those they have.
    """
    if check_exists and requested:
        have = sorted({m for r in runs for m in (r.metrics or {})})
        missing = sorted(set(requested) - set(have))
        if missing:
            raise Invalid(
                f"target names metric(s) {missing} that the runs do not report; they have: {have}",
                field="target",
            )
    target = requested or project.objective
    if not target:
        common: list[str] | None = None
        for r in runs:
            names = list(r.metrics)
            common = names if common is None else [m for m in common if m in r.metrics]
        if not common:
            raise Invalid(
                "no metric is reported by every selected run; pass a target", field="target"
            )
        target = {m: 1.0 for m in common}
    return normalised(target, field="target", message="target weights must not all be zero")


def create_fit(session: Session, project: Project, data: FitCreate) -> tuple[Fit, Job]:
    from app.services.experts import check_experts  # lazy: experts imports this module

    check_estimator(data.estimator)
    check_params(data.estimator, data.params)
    check_experts(session, project, data.estimator)
    target_scale = data.target_scale.given() if data.target_scale is not None else None
    target = check_runs_for_fit(
        session,
        project,
        data.run_filter,
        target_scale,
        data.target,
        data.domain_versions,
        estimator=(data.estimator, data.params, "run_filter"),
    )
    fit, job = new_fit(
        session,
        project,
        data.estimator,
        data.params,
        data.run_filter.model_dump(),
        target,
        kind="fit",
        job_params={"cv_folds": data.cv_folds, "random_state": data.random_state},
        target_scale=target_scale,
        domain_versions=data.domain_versions,
    )
    fit.name = data.name
    labels.set_tags(session, fit, data.tags)
    session.commit()
    return fit, job


def new_fit(
    session: Session,
    project: Project,
    estimator: str,
    params: dict,
    run_filter: dict,
    target: dict,
    *,
    kind: str,
    job_params: dict,
    target_scale: dict | None = None,
    domain_versions: str = "compatible",
) -> tuple[Fit, Job]:
    fit = Fit(
        project_id=project.id,
        estimator=estimator,
        params=params,
        run_filter=run_filter,
        target=target,
        status="pending",
        domains=[d.name for d in project.domains],
        target_scale=target_scale,
        domain_versions={"mode": domain_versions, "version": project.domain_version or 1},
    )
    session.add(fit)
    session.flush()
    job = job_service.create_job(
        session, kind=kind, project_id=project.id, params={"fit_id": fit.id, **job_params}
    )
    fit.job_id = job.id
    return fit, job


def list_fits(
    session: Session, project: Project, limit: int = 100, offset: int = 0, tag: str | None = None
) -> tuple[list[Fit], int]:
    return rows.page(session, Fit, project, limit, offset, labels.tagged(Fit, tag))


def update_fit(session: Session, fit: Fit, data: FitUpdate) -> Fit:
    """Change the fit's name and tags (nothing else of a fit changes after it is made)."""
    labels.update_labels(session, fit, data)
    return fit


def delete_fit(session: Session, fit: Fit) -> None:
    """Delete a finished fit. Its recommendations stay (their mixture, prediction and the
    fidelity summary are their own) with ``fit_id`` null; a fit whose job is still pending or
    running is refused (409): cancel the job first."""
    if fit.status in ("pending", "running"):
        raise Conflict(
            f"fit {fit.id} is {fit.status} (job {fit.job_id}): cancel the job first, "
            "or delete the fit once it has finished",
            field="fit_id",
        )
    # what the foreign key does (ON DELETE SET NULL), said here so it holds on any connection
    session.execute(
        update(Recommendation).where(Recommendation.fit_id == fit.id).values(fit_id=None)
    )
    labels.forget(session, fit)
    session.delete(fit)
    session.commit()


def get_fit(session: Session, project: Project, fit_id: int) -> Fit:
    return rows.owned(session, Fit, project, fit_id, "fit")


def training_data(session: Session, fit: Fit) -> dict[str, Any]:
    """Everything the science needs for a fit, loaded from the store (used by the worker)."""
    project = rows.load(session, Project, fit.project_id)
    runs = _select_runs(session, project, fit.run_filter)
    targets = list(fit.target)
    domains = list(fit.domains)
    dv = dict(fit.domain_versions or {})  # fits made before versioning: version 1, compatible
    mapped_rows, report = domain_service.map_runs(
        session,
        project,
        runs,
        version=int(dv.get("version") or 1),
        domains=domains,
        mode=dv.get("mode") or "compatible",
    )
    usable = [
        r
        for r, x in zip(runs, mapped_rows, strict=True)
        if x is not None and all(t in r.metrics for t in targets)
    ]
    mapped = {r.id: x for r, x in zip(runs, mapped_rows, strict=True) if x is not None}
    X = np.array([mapped[r.id] for r in usable], dtype=float).reshape(len(usable), len(domains))
    Y = np.array([[r.metrics[t] for t in targets] for r in usable], dtype=float).reshape(
        len(usable), len(targets)
    )
    curves: list[list[tuple[int, dict[str, float]]]] = [[] for _ in usable]
    index = {r.id: i for i, r in enumerate(usable)}
    if usable:
        for p in session.scalars(
            select(CurvePoint)
            .where(CurvePoint.run_id.in_(list(index)))
            .order_by(CurvePoint.run_id, CurvePoint.step)
        ):
            curves[index[p.run_id]].append((p.step, dict(p.metrics)))
    token_counts = [d.token_count for d in project.domains]
    return {
        "X": X,
        "Y": Y,
        "domains": domains,
        "targets": targets,
        "weights": [fit.target[t] for t in targets],
        "run_ids": [r.id for r in usable],
        "skipped": len(mapped) - len(usable),
        "domain_versions": report,
        "context": {
            "steps": np.array([r.train_steps or np.nan for r in usable], dtype=float),
            "tokens": np.array([r.train_tokens or np.nan for r in usable], dtype=float),
            "model_params": np.array([r.model_params or np.nan for r in usable], dtype=float),
            "curves": curves if any(curves) else None,
            "token_counts": token_counts if all(t for t in token_counts) else None,
        },
    }


def _same(a: Any, b: Any) -> bool:
    return (
        a is not None
        and b is not None
        and abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(b)))
    )


def scale_mismatch(fit: Fit, requested: dict[str, Any] | None) -> list[str]:
    """The entries of ``requested`` that differ from the fit's scale (empty: compatible)."""
    if not requested or not fit.scale:
        return []
    return [k for k, v in requested.items() if v is not None and not _same(v, fit.scale.get(k))]


def chain_summary(fit: Fit) -> list[dict[str, Any]] | None:
    """The fit's chain of laws without the per-run / per-mixture details (for responses)."""
    chain = (fit.scaling or {}).get("chain")
    if chain is None:
        return None
    return [{k: v for k, v in step.items() if k not in ("runs", "mixtures")} for step in chain]


def predict(
    fit: Fit,
    mixtures: list[dict[str, float]],
    normalize: bool = False,
    target_scale: dict[str, Any] | None = None,
) -> dict[str, Any]:
    if fit.status != "succeeded" or fit.state is None:
        raise Conflict(
            f"fit {fit.id} is {fit.status}; predictions need a succeeded fit", field="fit_id"
        )
    X = np.array(
        [
            list(
                validate_mixture(
                    m, fit.domains, normalize=normalize, field=f"mixtures[{i}]"
                ).values()
            )
            for i, m in enumerate(mixtures)
        ]
    )
    from mixopt.mixing import pipeline  # lazy: mixopt.mixing loads every estimator

    scale = dict(fit.scale) if fit.scale else None
    chain = chain_summary(fit)
    steps = None
    differ = scale_mismatch(fit, target_scale)
    if differ and target_scale is not None:
        if fit.state.get("estimator") == "bimix" and differ == ["train_steps"]:
            steps = float(target_scale["train_steps"])
            scale = dict(scale or {}, train_steps=target_scale["train_steps"])
            chain = [{"law": "bimix", "note": f"BiMix evaluated at step {steps:g} natively"}]
        else:
            raise Invalid(
                f"fit {fit.id} answers at {fit.scale} ({', '.join(differ)} differ); create a fit "
                "with this target_scale (POST .../fits {target_scale})",
                field="target_scale",
            )
    weights = [fit.target[t] for t in fit.target]
    from app.services.experts import experts_for_state  # lazy: experts imports this module

    session = object_session(fit)  # an MDE fit is handed the project's experts again
    experts = experts_for_state(session, fit.id, fit.state) if session is not None else None
    out = pipeline.predict(fit.state, X, objective_weights=weights, steps=steps, experts=experts)
    return {
        "fit_id": fit.id,
        "targets": list(fit.target),
        "predictions": out["predictions"],
        "objective": out["objective"],
        "std": out.get("objective_std"),
        "scale": scale,
        "chain": chain,
        "trusted": fit.trusted,
    }


def untrusted_reason(fit: Fit) -> str:
    return (
        f"fit {fit.id} is not trusted: {'; '.join(fit.trust_reasons or []) or 'see its notes'}; "
        "pass allow_untrusted=true to recommend from it anyway"
    )


# -- the worker's side (workers/tasks/fits.py) ---------------------------------------------
def start_fit(session: Session, fit_id: int) -> dict[str, Any]:
    """Mark the fit running and load what the science needs (:func:`training_data`, the
    estimator, its parameters and the target scale)."""
    fit = rows.load(session, Fit, fit_id)
    fit.status, fit.error = "running", None
    return {
        "data": training_data(session, fit),
        "estimator": fit.estimator,
        "params": dict(fit.params),
        "target_scale": dict(fit.target_scale) if fit.target_scale else None,
    }


def store_fit(session: Session, fit_id: int, out: dict[str, Any], data: dict[str, Any]) -> None:
    """Store what the science's ``fit_estimator`` returned on the fit (succeeded), with notes on
    the runs left out and on the runs brought in from older domain sets."""
    notes = list(out.get("notes") or [])
    if data["skipped"]:
        notes.append(f"{data['skipped']} runs lacked a target metric and were left out.")
    line = domain_service.summary(data["domain_versions"])
    if line:
        notes.append(line)
    f = rows.load(session, Fit, fit_id)
    f.state, f.fidelity, f.timings = out["state"], out["fidelity"], out["timings"]
    f.scale, f.scaling = out.get("scale"), out.get("scaling")
    f.trusted, f.trust_reasons = out.get("trusted"), out.get("trust_reasons")
    f.notes, f.run_ids, f.status, f.finished_at = (
        "\n".join(notes),
        data["run_ids"],
        "succeeded",
        utcnow(),
    )
    f.domain_versions = {**(f.domain_versions or {}), **data["domain_versions"]}


def end_fit(session: Session, fit_id: int, status: str, reason: str) -> None:
    """A fit that did not succeed says why (``failed`` or ``cancelled``); a succeeded one is
    kept."""
    f = session.get(Fit, fit_id)
    if f is not None and f.status != "succeeded":
        f.status, f.error, f.finished_at = status, reason, utcnow()
