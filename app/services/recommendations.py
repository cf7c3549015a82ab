"""Recommendations (a mixture from a fit, under constraints) and the baselines they are
compared with.

Recommending runs in a worker (``recommend`` jobs): :func:`create_recommendation_job` checks
the request and plans the job; the task loads :func:`recommendation_inputs`, calls the
science and stores the row with :func:`store_recommendation`, in one transaction.
``baselines`` answers in the request (closed form, no fitting).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.schemas.fits import RunFilter
from app.schemas.projects import ConstraintsSpec
from app.schemas.recommendations import RecommendationCreate, RecommendationUpdate
from app.services import fits as fit_service
from app.services import jobs as job_service
from app.services import labels, rows
from app.services.constraints import effective_constraints, science_constraints
from app.services.domain_rules import declared_groups, natural_prior
from app.services.errors import Conflict, Invalid, NotFound
from app.services.objectives import check_weights
from app.services.runs import validate_mixture
from app.store.models import Fit, Job, Project, Recommendation


def create_recommendation_job(
    session: Session, project: Project, data: RecommendationCreate
) -> Job:
    if (data.fit_id is None) == (data.estimator is None):
        raise Invalid("give exactly one of fit_id or estimator", field="fit_id")
    if data.robust and data.n_boot < 2:
        raise Invalid(
            f"robust averages the argmins of n_boot bootstrap refits: needs n_boot >= 2, "
            f"got {data.n_boot}",
            field="n_boot",
        )
    constraints = effective_constraints(project, data.constraints)
    requested = data.target_scale.given()
    params = {
        "constraints": constraints,
        "target_scale": data.target_scale.model_dump(),
        "requested_scale": requested,  # what was asked for (the exports' budget), or None
        "n_boot": data.n_boot,
        "random_state": data.random_state,
        "allow_untrusted": data.allow_untrusted,
        "options": {
            "trust_region": data.trust_region,
            "allow_extrapolation": data.allow_extrapolation,
            "robust": data.robust,
            "n_samples": data.n_samples,
            "top_k": data.top_k,
            "refine": data.refine,
            "reference": resolve_reference(session, project, data.reference),
            "phases": _phases(project, data.phases),
        },
        "labels": {"name": data.name, "tags": list(dict.fromkeys(data.tags))},
    }
    if data.fit_id is not None:
        if data.params:
            raise Invalid(
                "params are the estimator's when it is fitted first; with fit_id leave them out",
                field="params",
            )
        fit = fit_service.get_fit(session, project, data.fit_id)
        if fit.status == "failed":
            raise Conflict(f"fit {fit.id} failed: {fit.error}", field="fit_id")
        if set(fit.domains) != {d.name for d in project.domains}:
            version = (fit.domain_versions or {}).get("version", 1)
            raise Conflict(
                f"fit {fit.id} was made on domain-set version {version} ({list(fit.domains)}); "
                f"the project is at version {project.domain_version} "
                f"({[d.name for d in project.domains]}): fit again "
                "(runs of older versions are mapped in), or recommend with estimator",
                field="fit_id",
            )
        if fit.trusted is False and not data.allow_untrusted:
            raise Conflict(fit_service.untrusted_reason(fit), field="fit_id")
        differ = fit_service.scale_mismatch(fit, requested)
        if differ:
            raise Invalid(
                f"fit {fit.id} answers at {fit.scale} "
                f"({', '.join(differ)} differ from target_scale); "
                "recommend with estimator + target_scale, or from a fit made for that scale",
                field="target_scale",
            )
        if requested is None and fit.scale:
            params["target_scale"] = dict(fit.scale)
        job = job_service.create_job(
            session, kind="recommend", project_id=project.id, params={"fit_id": fit.id, **params}
        )
    else:
        assert data.estimator is not None  # exactly one of fit_id and estimator (checked above)
        fit_service.check_estimator(data.estimator)
        fit_service.check_params(data.estimator, data.params)
        target = fit_service.check_runs_for_fit(
            session,
            project,
            RunFilter(),
            requested,
            None,
            data.domain_versions,
            estimator=(data.estimator, data.params, "estimator"),
        )
        fit, job = fit_service.new_fit(
            session,
            project,
            data.estimator,
            data.params,
            RunFilter().model_dump(),
            target,
            kind="recommend",
            job_params={"fit_first": True, "cv_folds": 5, **params},
            target_scale=requested,
            domain_versions=data.domain_versions,
        )
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
                raise Invalid(
                    f"unknown metric(s) {unknown}; the project's objective has {sorted(known)}",
                    field=f"phases[{i}].objective.{unknown[0]}",
                )
            check_weights(p.objective, field=f"phases[{i}].objective", empty_ok=False)
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
            why = b["unavailable"].get(ref.baseline.split("_")[0]) or b["unavailable"].get(
                ref.baseline
            )
            raise Invalid(
                f"baseline {ref.baseline!r} is not available"
                + (f" ({why})" if why else "")
                + f"; available: {sorted(b['mixtures'])}",
                field="reference.baseline",
            )
        mixture, label = b["mixtures"][ref.baseline], f"baseline {ref.baseline}"
    elif ref.recommendation_id is not None:
        row = session.get(Recommendation, ref.recommendation_id)
        if row is None or row.project_id != project.id:
            raise NotFound(
                f"recommendation {ref.recommendation_id} not found",
                field="reference.recommendation_id",
            )
        if set(row.mixture) - set(domains):
            raise Invalid(
                f"recommendation {row.id} mixes domains the project no longer has: "
                f"{sorted(set(row.mixture) - set(domains))}",
                field="reference.recommendation_id",
            )
        mixture, label = (
            {d: float(row.mixture.get(d, 0.0)) for d in domains},
            f"recommendation {row.id}",
        )
    else:
        mixture, label = (
            validate_mixture(ref.mixture, domains, field="reference.mixture"),
            "explicit mixture",
        )
    return {"mixture": dict(mixture), "tolerance": float(ref.tolerance), "label": label}


def list_recommendations(
    session: Session, project: Project, limit: int = 100, offset: int = 0, tag: str | None = None
) -> tuple[list[Recommendation], int]:
    where = labels.tagged(Recommendation, tag)
    return rows.page(session, Recommendation, project, limit, offset, where)


def update_recommendation(
    session: Session, rec: Recommendation, data: RecommendationUpdate
) -> Recommendation:
    """Change the recommendation's name and tags (its mixture and prediction never change)."""
    labels.update_labels(session, rec, data)
    return rec


def delete_recommendation(session: Session, rec: Recommendation) -> None:
    """Delete a recommendation. Validations and suggestions that used it keep their own copy
    of its mixture; a later request naming it is a 404/422 naming the id."""
    labels.forget(session, rec)
    session.delete(rec)
    session.commit()


def get_recommendation(session: Session, project: Project, rec_id: int) -> Recommendation:
    return rows.owned(session, Recommendation, project, rec_id, "recommendation")


def baselines(project: Project) -> dict[str, Any]:
    """Natural, uniform, temperature and UniMax mixtures (closed form, no fitting)."""
    # lazy: mixopt.mixing loads every estimator (~1.5 s)
    from mixopt.mixing import baselines as science_baselines
    from mixopt.mixing import pipeline  # lazy: mixopt.mixing loads every estimator

    domains = [d.name for d in project.domains]
    if not domains:
        raise Invalid("the project has no domains", field="domains")
    counts = [d.token_count for d in project.domains]
    unavailable: dict[str, str] = {}
    vectors: dict[str, Any]
    if all(c for c in counts):
        constraints = science_constraints(project.constraints or {}, domains, counts)
        try:
            vectors = pipeline.baseline_mixtures(counts, constraints)
        except ValueError as exc:  # e.g. UniMax cannot fill the budget within the epoch caps
            vectors = pipeline.baseline_mixtures(counts, {})
            unavailable["unimax"] = str(exc)
        if "unimax" not in vectors and "unimax" not in unavailable:
            unavailable["unimax"] = "needs constraints.target_tokens and constraints.max_epochs"
    else:
        vectors = {"uniform": science_baselines.uniform_mixture(len(domains))}
        reason = "needs a token count for every domain (declared, or measured by ingestion)"
        unavailable.update({"natural": reason, "temperature": reason, "unimax": reason})
    mixtures = {k: dict(zip(domains, map(float, v), strict=True)) for k, v in vectors.items()}
    stats = [(d.stats or {}).get("entropy") or {} for d in project.domains]
    if all(stats):
        from mixopt.mixing.entropy import VARIANTS, proportions_from_entropies

        for variant in VARIANTS:
            if all(variant in st for st in stats):
                mixtures[f"entropy_{variant}"] = proportions_from_entropies(
                    {d: st[variant] for d, st in zip(domains, stats, strict=True)}
                )
    else:
        unavailable["entropy"] = "needs the domains' data: ingest them (POST .../domains/ingest)"
    return {
        "domains": domains,
        "mixtures": mixtures,
        "unavailable": unavailable,
        **_grouped_baselines(project, domains, mixtures, counts),
    }


def _grouped_baselines(
    project: Project,
    domains: list[str],
    mixtures: dict[str, dict[str, float]],
    counts: list[int | None],
) -> dict[str, Any]:
    """Group totals of every baseline and, under group constraints, ``natural_grouped``: the
    natural mixture projected onto the constraints (group totals included); the baselines
    that break a group bound are listed in ``violates_groups``."""
    from mixopt.mixing import hierarchy  # lazy: mixopt.mixing loads every estimator (~1.5 s)
    from mixopt.mixing.constraints import Constraints, InfeasibleConstraintsError

    group_of = declared_groups(project.domains)
    if not hierarchy.groups_of(domains, group_of):
        return {"group_totals": {}, "violates_groups": {}}
    spec = ConstraintsSpec.model_validate(project.constraints or {})
    if spec.groups:
        c = Constraints.from_dict(
            science_constraints(project.constraints or {}, domains, counts, group_of)
        )
        try:
            base = [mixtures["natural"][d] for d in domains] if "natural" in mixtures else None
            if base is not None:
                w = c.project(base, domains)
                mixtures["natural_grouped"] = dict(zip(domains, map(float, w), strict=True))
        except (InfeasibleConstraintsError, ValueError):
            pass
        system = c.group_system(domains, check=False)
        violates = {
            k: bool(system.violation([m[d] for d in domains]).max() > 1e-6)
            for k, m in mixtures.items()
        }
    else:
        violates = {}
    return {
        "group_totals": {k: hierarchy.group_totals(m, group_of) for k, m in mixtures.items()},
        "violates_groups": {k: v for k, v in violates.items() if v},
    }


# -- the worker's side (workers/tasks/recommendations.py) ----------------------------------
def _fidelity_summary(fidelity: dict | None) -> dict[str, Any]:
    """The pooled cross-validated metrics of a fit (spearman, pearson, mae, r2, regret, n)."""
    return dict((fidelity or {}).get("pooled") or {})


def recommendation_inputs(session: Session, fit_id: int, params: dict[str, Any]) -> dict[str, Any]:
    """Everything the science's ``recommend`` needs, loaded from the store: the fit's state, the
    runs it saw, the prior and the constraints (``RuntimeError`` when the fit cannot serve)."""
    fit = rows.load(session, Fit, fit_id)
    if fit.status != "succeeded":
        raise RuntimeError(f"fit {fit_id} is {fit.status}: {fit.error or 'not finished'}")
    if fit.trusted is False and not params.get("allow_untrusted"):
        raise RuntimeError(fit_service.untrusted_reason(fit))
    project = rows.load(session, Project, fit.project_id)
    data = fit_service.training_data(session, fit)
    counts = [d.token_count for d in project.domains]
    domains = list(fit.domains)
    return {
        "state": fit.state,
        "weights": [fit.target[t] for t in fit.target],
        "domains": domains,
        "X": data["X"],
        "Y": data["Y"],
        "prior": natural_prior(counts),
        "prior_label": "natural" if natural_prior(counts) is not None else "uniform",
        "constraints": science_constraints(
            params["constraints"], domains, counts, declared_groups(project.domains)
        ),
        "scaling": fit.scaling,
        "fidelity": fit.fidelity,
        "fit_scale": fit.scale,
        "trusted": fit.trusted,
        "chain": fit_service.chain_summary(fit),
    }


def _by_domain(domains: list[str], w: Any) -> dict[str, float]:
    return dict(zip(domains, map(float, w), strict=True))


def store_recommendation(
    session: Session, job: Job, inputs: dict[str, Any], rec: dict[str, Any], elapsed: float
) -> dict[str, Any]:
    """Add the recommendation the science made (``rec``) for ``job``; returns the job result."""
    p, domains, state = job.params, inputs["domains"], inputs["state"]
    fit_id, fit_scale, scaling = p["fit_id"], inputs["fit_scale"], inputs["scaling"]
    interval = rec.get("interval") or [None, None]
    unconstrained = rec.get("unconstrained_mixture")
    cross_scale = {
        k: v for k, v in ((scaling or {}).get("cross_scale") or {}).items() if k != "predictions"
    }
    row = Recommendation(
        project_id=job.project_id,
        fit_id=fit_id,
        job_id=job.id,
        source=state["estimator"],
        mixture=_by_domain(domains, rec["mixture"]),
        predicted=rec.get("predicted_objective"),
        interval_low=interval[0],
        interval_high=interval[1],
        binding=list(rec.get("binding") or []),
        constraints=p["constraints"],
        target_scale=fit_scale or p.get("target_scale") or {},
        details={
            "unconstrained_mixture": _by_domain(domains, unconstrained) if unconstrained else None,
            "unconstrained_objective": rec.get("unconstrained_objective"),
            "interval_method": rec.get("interval_method"),
            "kl_to_prior": rec.get("kl_to_prior"),
            "strategy": rec.get("strategy"),
            "explanation": rec.get("explanation"),
            "fidelity": _fidelity_summary(inputs["fidelity"]),
            "recommend_s": elapsed,
            "scale": fit_scale,
            "requested_scale": p.get("requested_scale"),
            "chain": inputs["chain"],
            "trusted": inputs["trusted"],
            "cross_scale": cross_scale,
            "extrapolation": rec.get("extrapolation"),
            "group_totals": rec.get("group_totals"),
            "reference": rec.get("reference"),
            "survival": rec.get("survival"),
            "robust": rec.get("robust"),
            "staged": rec.get("staged"),
        },
    )
    session.add(row)
    session.flush()
    given = p.get("labels") or {}
    row.name = given.get("name")
    labels.set_tags(session, row, given.get("tags") or [])
    return {"recommendation_id": row.id, "fit_id": fit_id}
