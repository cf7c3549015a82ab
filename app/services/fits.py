"""Fits, predictions, recommendations and suggestions (the offline estimators as a service).

Fitting and recommending run in workers (jobs); ``predict`` and ``baselines`` answer in the
request because they only evaluate stored parameters or closed-form baselines.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.schemas.fits import FitCreate, RecommendationCreate, RunFilter, SuggestionCreate
from app.schemas.projects import ConstraintsSpec
from app.services import jobs as job_service
from app.services.errors import Conflict, Invalid, NotFound
from app.services.runs import validate_mixture
from app.store.models import CurvePoint, Fit, Job, Project, Recommendation, Run, RunTag


def known_estimators() -> list[str]:
    import mixopt.mixing  # noqa: F401  (importing the package registers every estimator)
    from mixopt.mixing.base import ESTIMATORS

    return sorted(ESTIMATORS)


def estimator_catalogue() -> list[dict[str, Any]]:
    """Each estimator with its parameters (type, default, meaning, range) and its run needs."""
    from mixopt.mixing import service_api

    return service_api.estimator_catalogue()


def _check_estimator(name: str, field: str = "estimator") -> None:
    names = known_estimators()
    if name not in names:
        raise Invalid(f"unknown estimator {name!r}; available: {names}", field=field)


def _check_params(name: str, params: dict[str, Any] | None, field: str = "params") -> None:
    """Unknown or out-of-range estimator parameters: 422 naming each one (never a failed job)."""
    from mixopt.mixing import service_api

    errors = service_api.validate_params(name, params)
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
    for col, v in ((Run.model_params, f.model_params), (Run.train_tokens, f.train_tokens),
                   (Run.train_steps, f.train_steps)):
        if v is not None:
            conds.append(col == v)
    if f.run_ids is not None:
        conds.append(Run.id.in_(f.run_ids))
    return conds


def check_runs_for_fit(session: Session, project: Project, f: RunFilter, target_scale: dict | None,
                       requested_target: dict[str, float] | None, domain_versions: str = "compatible") -> dict[str, float]:
    """The checks ``POST .../fits`` can afford (milliseconds whatever the run count): a count,
    the distinct scales (bounded), and the metrics of the first and last run; returns the
    objective. Runs of several scales without ``target_scale``: 422 saying what to pass."""
    conds = _filtered(project, f, project.domain_version if domain_versions == "current" else None)
    count = session.scalar(select(func.count()).select_from(Run).where(*conds)) or 0
    if not count:
        if domain_versions == "current" and session.scalar(select(func.count()).select_from(Run)
                                                           .where(*_filtered(project, f))):
            raise Invalid(f"no run matching the run filter is on the current domain set (version "
                          f"{project.domain_version}); pass domain_versions=compatible to use older runs",
                          field="domain_versions")
        raise Invalid("no runs match the run filter", field="run_filter")
    scales = session.execute(
        select(Run.model_params, Run.train_steps, Run.train_tokens).where(*conds)
        .group_by(Run.model_params, Run.train_steps, Run.train_tokens).limit(_MAX_SCALES_LISTED + 1)).all()
    if target_scale is None and len(scales) > 1:
        listed = ", ".join(f"(model_params={a}, train_steps={b}, train_tokens={c})"
                           for a, b, c in scales[:_MAX_SCALES_LISTED])
        more = " and more" if len(scales) > _MAX_SCALES_LISTED else ""
        raise Invalid(f"the runs span {len(scales)}{'+' if more else ''} scales ({listed}{more}): pass "
                      "target_scale {model_params, train_steps | train_tokens} to answer at one scale through "
                      "the scaling laws, or filter the runs by scale (run_filter.model_params/train_steps/"
                      "train_tokens)", field="target_scale")
    ends = [session.scalar(select(Run).where(*conds).order_by(order).limit(1))
            for order in (Run.id.asc(), Run.id.desc())]
    return resolve_target(project, requested_target, [r for r in ends if r is not None], check_exists=True)


def _select_runs(session: Session, project: Project, f: RunFilter | dict) -> list[Run]:
    f = f if isinstance(f, RunFilter) else RunFilter.model_validate(f)
    return list(session.scalars(select(Run).where(*_filtered(project, f)).order_by(Run.id)))


def resolve_target(project: Project, requested: dict[str, float] | None, runs: list[Run],
                   check_exists: bool = False) -> dict[str, float]:
    """The objective as {metric: weight} normalised to sum 1.

    Requested target, else the project's objective, else the mean of the metrics that every
    selected run reports (the per-domain validation losses, for imported RegMix runs). With
    ``check_exists`` a requested metric no given run reports is a 422 listing those they have.
    """
    if check_exists and requested:
        have = sorted({m for r in runs for m in (r.metrics or {})})
        missing = sorted(set(requested) - set(have))
        if missing:
            raise Invalid(f"target names metric(s) {missing} that the runs do not report; they have: {have}",
                          field="target")
    target = requested or project.objective
    if not target:
        common: list[str] | None = None
        for r in runs:
            names = list(r.metrics)
            common = names if common is None else [m for m in common if m in r.metrics]
        if not common:
            raise Invalid("no metric is reported by every selected run; pass a target", field="target")
        target = {m: 1.0 for m in common}
    total = sum(target.values())
    if total <= 0:
        raise Invalid("target weights must not all be zero", field="target")
    return {k: v / total for k, v in target.items()}


def create_fit(session: Session, project: Project, data: FitCreate) -> tuple[Fit, Job]:
    _check_estimator(data.estimator)
    _check_params(data.estimator, data.params)
    target_scale = data.target_scale.given() if data.target_scale is not None else None
    target = check_runs_for_fit(session, project, data.run_filter, target_scale, data.target, data.domain_versions)
    fit, job = _new_fit(session, project, data.estimator, data.params, data.run_filter.model_dump(), target,
                        kind="fit", job_params={"cv_folds": data.cv_folds, "random_state": data.random_state},
                        target_scale=target_scale, domain_versions=data.domain_versions)
    session.commit()
    return fit, job


def _new_fit(session: Session, project: Project, estimator: str, params: dict, run_filter: dict,
             target: dict, *, kind: str, job_params: dict, target_scale: dict | None = None,
             domain_versions: str = "compatible") -> tuple[Fit, Job]:
    fit = Fit(project_id=project.id, estimator=estimator, params=params, run_filter=run_filter, target=target,
              status="pending", domains=[d.name for d in project.domains], target_scale=target_scale,
              domain_versions={"mode": domain_versions, "version": project.domain_version or 1})
    session.add(fit)
    session.flush()
    job = job_service.create_job(session, kind=kind, project_id=project.id,
                                 params={"fit_id": fit.id, **job_params})
    fit.job_id = job.id
    return fit, job


def _page(session: Session, model: type, project: Project, limit: int, offset: int) -> tuple[list, int]:
    """A project's fits or recommendations, newest first, with the total count."""
    q = select(model).where(model.project_id == project.id)
    count = session.scalar(select(func.count()).select_from(q.subquery())) or 0
    return list(session.scalars(q.order_by(model.id.desc()).offset(offset).limit(limit))), count


def _owned(session: Session, model: type, project: Project, row_id: int, label: str):
    row = session.get(model, row_id)
    if row is None or row.project_id != project.id:
        raise NotFound(f"{label} {row_id} not found in project {project.id}")
    return row


def list_fits(session: Session, project: Project, limit: int = 100, offset: int = 0) -> tuple[list[Fit], int]:
    return _page(session, Fit, project, limit, offset)


def get_fit(session: Session, project: Project, fit_id: int) -> Fit:
    return _owned(session, Fit, project, fit_id, "fit")


def training_data(session: Session, fit: Fit) -> dict[str, Any]:
    """Everything the science needs for a fit, loaded from the store (used by the worker)."""
    from app.services import domain_sets

    project = session.get(Project, fit.project_id)
    runs = _select_runs(session, project, fit.run_filter)
    targets = list(fit.target)
    domains = list(fit.domains)
    dv = dict(fit.domain_versions or {})  # fits made before versioning: version 1, compatible
    rows, report = domain_sets.map_runs(session, project, runs, version=int(dv.get("version") or 1), domains=domains,
                                        mode=dv.get("mode") or "compatible")
    usable = [r for r, x in zip(runs, rows, strict=True) if x is not None and all(t in r.metrics for t in targets)]
    mapped = {r.id: x for r, x in zip(runs, rows, strict=True) if x is not None}
    X = np.array([mapped[r.id] for r in usable], dtype=float).reshape(len(usable), len(domains))
    Y = np.array([[r.metrics[t] for t in targets] for r in usable], dtype=float).reshape(len(usable), len(targets))
    curves: list[list[tuple[int, dict[str, float]]]] = [[] for _ in usable]
    index = {r.id: i for i, r in enumerate(usable)}
    if usable:
        for p in session.scalars(select(CurvePoint).where(CurvePoint.run_id.in_(list(index)))
                                 .order_by(CurvePoint.run_id, CurvePoint.step)):
            curves[index[p.run_id]].append((p.step, dict(p.metrics)))
    token_counts = [d.token_count for d in project.domains]
    return {
        "X": X, "Y": Y, "domains": domains, "targets": targets, "weights": [fit.target[t] for t in targets],
        "run_ids": [r.id for r in usable], "skipped": len(mapped) - len(usable), "domain_versions": report,
        "context": {
            "steps": np.array([r.train_steps or np.nan for r in usable], dtype=float),
            "tokens": np.array([r.train_tokens or np.nan for r in usable], dtype=float),
            "model_params": np.array([r.model_params or np.nan for r in usable], dtype=float),
            "curves": curves if any(curves) else None,
            "token_counts": token_counts if all(t for t in token_counts) else None,
        },
    }


def _same(a: Any, b: Any) -> bool:
    return a is not None and b is not None and abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(b)))


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


def predict(fit: Fit, mixtures: list[dict[str, float]], normalize: bool = False,
            target_scale: dict[str, Any] | None = None) -> dict[str, Any]:
    if fit.status != "succeeded" or fit.state is None:
        raise Conflict(f"fit {fit.id} is {fit.status}; predictions need a succeeded fit", field="fit_id")
    X = np.array([list(validate_mixture(m, fit.domains, normalize=normalize, field=f"mixtures[{i}]").values())
                  for i, m in enumerate(mixtures)])
    from mixopt.mixing import service_api

    scale = dict(fit.scale) if fit.scale else None
    chain = chain_summary(fit)
    steps = None
    differ = scale_mismatch(fit, target_scale)
    if differ:
        if fit.state.get("estimator") == "bimix" and differ == ["train_steps"]:
            steps = float(target_scale["train_steps"])
            scale = dict(scale or {}, train_steps=target_scale["train_steps"])
            chain = [{"law": "bimix", "note": f"BiMix evaluated at step {steps:g} natively"}]
        else:
            raise Invalid(f"fit {fit.id} answers at {fit.scale} ({', '.join(differ)} differ); create a fit "
                          "with this target_scale (POST .../fits {target_scale})", field="target_scale")
    weights = [fit.target[t] for t in fit.target]
    out = service_api.predict(fit.state, X, objective_weights=weights, steps=steps)
    return {"fit_id": fit.id, "targets": list(fit.target), "predictions": out["predictions"],
            "objective": out["objective"], "std": out.get("objective_std"), "scale": scale, "chain": chain,
            "trusted": fit.trusted}


def science_constraints(spec: dict[str, Any], domains: list[str],
                        token_counts: list[int | None] | None,
                        group_of: dict[str, str] | None = None) -> dict[str, Any]:
    """Translate the API's constraints (``ConstraintsSpec`` as a dict) into the science's
    :class:`mixopt.mixing.constraints.Constraints` dict (per-domain lower/upper, fixed,
    token counts, target tokens, epochs per domain, KL weight)."""
    spec = ConstraintsSpec.model_validate(spec or {}).model_dump()
    bounds = spec.get("bounds") or {}
    epochs: Any = None
    per = spec.get("max_epochs_per_domain") or {}
    if per:
        default = spec.get("max_epochs")
        epochs = {d: float(per.get(d, default if default is not None else float("inf"))) for d in domains}
    elif spec.get("max_epochs") is not None:
        epochs = float(spec["max_epochs"])
    counts = None
    if token_counts and all(c for c in token_counts):
        counts = {d: float(c) for d, c in zip(domains, token_counts, strict=True)}
    elif epochs is not None and spec.get("target_tokens"):
        raise Invalid("max_epochs with target_tokens needs a token count for every domain", field="constraints")
    return {
        "lower": {d: b["min"] for d, b in bounds.items()} or None,
        "upper": {d: b["max"] for d, b in bounds.items()} or None,
        "fixed": dict(spec.get("fixed") or {}) or None,
        "token_counts": counts,
        "target_tokens": spec.get("target_tokens") if counts is not None else None,
        "max_epochs": epochs if counts is not None and spec.get("target_tokens") else None,
        "kl_weight": float(spec.get("kl_weight") or 0.0),
        "groups": {g: {k: v for k, v in b.items() if v is not None} for g, b in (spec.get("groups") or {}).items()}
        or None,
        "group_of": dict(group_of or {}) or None,
    }


def effective_constraints(project: Project, override: ConstraintsSpec | None) -> dict[str, Any]:
    spec = override if override is not None else ConstraintsSpec.model_validate(project.constraints or {})
    from app.services.projects import _check_constraints, declared_groups

    _check_constraints(spec, [d.name for d in project.domains], declared_groups(project.domains))
    _check_epoch_caps(spec, project)
    return spec.model_dump()


def _check_epoch_caps(spec: ConstraintsSpec, project: Project) -> None:
    """Epoch caps (olmix: w_i <= tokens_i x epochs / target_tokens) need target_tokens and a token
    count for every domain: say so at the door, not in the job."""
    field = "constraints.max_epochs" if spec.max_epochs is not None else "constraints.max_epochs_per_domain"
    if spec.max_epochs is None and not spec.max_epochs_per_domain:
        return
    if not spec.target_tokens:
        raise Invalid("epoch caps are tokens_i x epochs / target_tokens: set constraints.target_tokens too",
                      field="constraints.target_tokens")
    missing = [d.name for d in project.domains if not d.token_count]
    if missing:
        raise Invalid(f"epoch caps need a token count for every domain; {missing} have none (declare "
                      "token_count, or run POST .../domains/ingest on their sources)", field=field)


def untrusted_reason(fit: Fit) -> str:
    return (f"fit {fit.id} is not trusted: {'; '.join(fit.trust_reasons or []) or 'see its notes'}; "
            "pass allow_untrusted=true to recommend from it anyway")


def create_recommendation_job(session: Session, project: Project, data: RecommendationCreate) -> Job:
    if (data.fit_id is None) == (data.estimator is None):
        raise Invalid("give exactly one of fit_id or estimator", field="fit_id")
    constraints = effective_constraints(project, data.constraints)
    requested = data.target_scale.given()
    params = {"constraints": constraints, "target_scale": data.target_scale.model_dump(), "n_boot": data.n_boot,
              "random_state": data.random_state, "allow_untrusted": data.allow_untrusted,
              "options": {"trust_region": data.trust_region, "n_samples": data.n_samples, "top_k": data.top_k,
                          "refine": data.refine, "reference": resolve_reference(session, project, data.reference),
                          "phases": _phases(project, data.phases)}}
    if data.fit_id is not None:
        if data.params:
            raise Invalid("params are the estimator's when it is fitted first; with fit_id leave them out",
                          field="params")
        fit = get_fit(session, project, data.fit_id)
        if fit.status == "failed":
            raise Conflict(f"fit {fit.id} failed: {fit.error}", field="fit_id")
        if set(fit.domains) != {d.name for d in project.domains}:
            version = (fit.domain_versions or {}).get("version", 1)
            raise Conflict(f"fit {fit.id} was made on domain-set version {version} ({list(fit.domains)}); the project "
                           f"is at version {project.domain_version} ({[d.name for d in project.domains]}): fit again "
                           "(runs of older versions are mapped in), or recommend with estimator", field="fit_id")
        if fit.trusted is False and not data.allow_untrusted:
            raise Conflict(untrusted_reason(fit), field="fit_id")
        differ = scale_mismatch(fit, requested)
        if differ:
            raise Invalid(f"fit {fit.id} answers at {fit.scale} ({', '.join(differ)} differ from target_scale); "
                          "recommend with estimator + target_scale, or from a fit made for that scale",
                          field="target_scale")
        if requested is None and fit.scale:
            params["target_scale"] = dict(fit.scale)
        job = job_service.create_job(session, kind="recommend", project_id=project.id,
                                     params={"fit_id": fit.id, **params})
    else:
        _check_estimator(data.estimator)
        _check_params(data.estimator, data.params)
        target = check_runs_for_fit(session, project, RunFilter(), requested, None, data.domain_versions)
        fit, job = _new_fit(session, project, data.estimator, data.params, RunFilter().model_dump(), target,
                            kind="recommend", job_params={"fit_first": True, "cv_folds": 5, **params},
                            target_scale=requested, domain_versions=data.domain_versions)
    session.commit()
    return job


def _phases(project: Project, phases: list | None) -> list[dict[str, Any]] | None:
    """A staged recommendation's phases; their objective metrics must be the project's."""
    if not phases:
        return None
    names = [p.name for p in phases]
    if len(set(names)) != len(names):
        raise Invalid(f"phase names must be distinct: {names}", field="phases")
    known = set(project.objective or {})
    for i, p in enumerate(phases):
        if p.objective is not None:
            unknown = sorted(set(p.objective) - known) if known else []
            if unknown:
                raise Invalid(f"unknown metric(s) {unknown}; the project's objective has {sorted(known)}",
                              field=f"phases[{i}].objective.{unknown[0]}")
            if sum(p.objective.values()) <= 0:
                raise Invalid("objective weights must not all be zero", field=f"phases[{i}].objective")
    return [p.model_dump() for p in phases]


def resolve_reference(session: Session, project: Project, ref: Any) -> dict[str, Any] | None:
    """The reference mixture of a recommendation request (``ReferenceSpec``), by domain, with its
    tolerance and a label; 422/404 naming ``reference.*`` when it cannot be found."""
    if ref is None:
        return None
    domains = [d.name for d in project.domains]
    if ref.baseline is not None:
        b = baselines(project)
        if ref.baseline not in b["mixtures"]:
            why = b["unavailable"].get(ref.baseline.split("_")[0]) or b["unavailable"].get(ref.baseline)
            raise Invalid(f"baseline {ref.baseline!r} is not available" + (f" ({why})" if why else "")
                          + f"; available: {sorted(b['mixtures'])}", field="reference.baseline")
        mixture, label = b["mixtures"][ref.baseline], f"baseline {ref.baseline}"
    elif ref.recommendation_id is not None:
        row = session.get(Recommendation, ref.recommendation_id)
        if row is None or row.project_id != project.id:
            raise NotFound(f"recommendation {ref.recommendation_id} not found", field="reference.recommendation_id")
        if set(row.mixture) - set(domains):
            raise Invalid(f"recommendation {row.id} mixes domains the project no longer has: "
                          f"{sorted(set(row.mixture) - set(domains))}", field="reference.recommendation_id")
        mixture, label = {d: float(row.mixture.get(d, 0.0)) for d in domains}, f"recommendation {row.id}"
    else:
        mixture, label = validate_mixture(ref.mixture, domains, field="reference.mixture"), "explicit mixture"
    return {"mixture": dict(mixture), "tolerance": float(ref.tolerance), "label": label}


def list_recommendations(session: Session, project: Project, limit: int = 100,
                         offset: int = 0) -> tuple[list[Recommendation], int]:
    return _page(session, Recommendation, project, limit, offset)


def get_recommendation(session: Session, project: Project, rec_id: int) -> Recommendation:
    return _owned(session, Recommendation, project, rec_id, "recommendation")


def baselines(project: Project) -> dict[str, Any]:
    """Natural, uniform, temperature and UniMax mixtures (closed form, no fitting)."""
    from mixopt.mixing import baselines as science_baselines
    from mixopt.mixing import service_api

    domains = [d.name for d in project.domains]
    if not domains:
        raise Invalid("the project has no domains", field="domains")
    counts = [d.token_count for d in project.domains]
    unavailable: dict[str, str] = {}
    if all(c for c in counts):
        constraints = science_constraints(project.constraints or {}, domains, counts)
        try:
            mixtures = service_api.baseline_mixtures(counts, constraints)
        except ValueError as exc:  # e.g. UniMax cannot fill the budget within the epoch caps
            mixtures = service_api.baseline_mixtures(counts, {})
            unavailable["unimax"] = str(exc)
        if "unimax" not in mixtures and "unimax" not in unavailable:
            unavailable["unimax"] = "needs constraints.target_tokens and constraints.max_epochs"
    else:
        mixtures = {"uniform": science_baselines.uniform_mixture(len(domains))}
        reason = "needs a token count for every domain (declared, or measured by ingestion)"
        unavailable.update({"natural": reason, "temperature": reason, "unimax": reason})
    mixtures = {k: dict(zip(domains, map(float, v), strict=True)) for k, v in mixtures.items()}
    stats = [(d.stats or {}).get("entropy") or {} for d in project.domains]
    if all(stats):
        from mixopt.mixing.entropy import VARIANTS, proportions_from_entropies

        for variant in VARIANTS:
            if all(variant in st for st in stats):
                mixtures[f"entropy_{variant}"] = proportions_from_entropies(
                    {d: st[variant] for d, st in zip(domains, stats, strict=True)})
    else:
        unavailable["entropy"] = "needs the domains' data: ingest them (POST .../domains/ingest)"
    return {"domains": domains, "mixtures": mixtures, "unavailable": unavailable,
            **_grouped_baselines(project, domains, mixtures, counts)}


def _grouped_baselines(project: Project, domains: list[str], mixtures: dict[str, dict[str, float]],
                       counts: list[int | None]) -> dict[str, Any]:
    """Group totals of every baseline and, under group constraints, ``natural_grouped``: the
    natural mixture projected onto the constraints (group totals included); the baselines
    that break a group bound are listed in ``violates_groups``."""
    from app.services.projects import declared_groups
    from mixopt.mixing import hierarchy
    from mixopt.mixing.constraints import Constraints, InfeasibleConstraintsError

    group_of = declared_groups(project.domains)
    if not hierarchy.groups_of(domains, group_of):
        return {"group_totals": {}, "violates_groups": {}}
    spec = ConstraintsSpec.model_validate(project.constraints or {})
    if spec.groups:
        c = Constraints.from_dict(science_constraints(project.constraints or {}, domains, counts, group_of))
        try:
            base = [mixtures["natural"][d] for d in domains] if "natural" in mixtures else None
            if base is not None:
                w = c.project(base, domains)
                mixtures["natural_grouped"] = dict(zip(domains, map(float, w), strict=True))
        except (InfeasibleConstraintsError, ValueError):
            pass
        system = c.group_system(domains, check=False)
        violates = {k: bool(system.violation([m[d] for d in domains]).max() > 1e-6) for k, m in mixtures.items()}
    else:
        violates = {}
    return {"group_totals": {k: hierarchy.group_totals(m, group_of) for k, m in mixtures.items()},
            "violates_groups": {k: v for k, v in violates.items() if v}}


def create_suggestion_job(session: Session, project: Project, data: SuggestionCreate) -> Job:
    if not project.domains:
        raise Invalid("the project has no domains", field="domains")
    params = data.model_dump()
    if data.strategy == "reuse":
        if data.recommendation_id is None:
            raise Invalid("strategy reuse needs recommendation_id (the mixture chosen on the old domains)",
                          field="recommendation_id")
        row = session.get(Recommendation, data.recommendation_id)
        if row is None or row.project_id != project.id:
            raise NotFound(f"recommendation {data.recommendation_id} not found", field="recommendation_id")
        params["old_mixture"] = dict(row.mixture)
        if data.count is None:  # olmix-sized: runs per dimension x dimensions explored (said in the 202)
            from mixopt.mixing.reuse import reuse_size

            size = reuse_size(row.mixture, [d.name for d in project.domains])
            params.update(count=size["count"], fresh_count=size["fresh_count"],
                          count_source=f"default: {size['runs_per_dim']} runs per dimension x {size['dimensions']} "
                                       "dimensions explored")
    elif data.count is None:
        raise Invalid(f"count is required for strategy {data.strategy!r} (only reuse has a default: runs per "
                      "dimension x dimensions explored)", field="count")
    params["domain_version"] = project.domain_version or 1
    job = job_service.create_job(session, kind="suggest", project_id=project.id, params=params)
    session.commit()
    return job
