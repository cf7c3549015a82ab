"""Exports from the store: load a recommendation, a baseline or an online session, describe it
as a :class:`mixopt.exports.MixtureExport` and write it with :func:`render`.

The writers are pure and live in :mod:`mixopt.exports` (one module per trainer format and the
``WRITERS`` registry; a new format is a writer module and a registry line there, nothing
here). This module adds what needs the server: the loaders, and the translation of a writer's
:class:`mixopt.exports.ExportError` into a 422 naming the field.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.services import online as online_service
from app.services import recommendations as rec_service
from app.services.errors import Invalid, NotFound
from app.store.models import Fit, Project, Recommendation
from mixopt import exports as writers
from mixopt.exports import FORMATS, LABELS, Bundle, MixtureExport

__all__ = [
    "FORMATS",
    "LABELS",
    "Bundle",
    "ExportError",
    "MixtureExport",
    "for_baseline",
    "for_online_session",
    "for_recommendation",
    "notes_header",
    "recommendation_epoch_warnings",
    "recommendation_spec",
    "render",
    "requested_scale",
]


class ExportError(Invalid):
    """Something a format needs is missing or unusable (a 422); ``field`` names where to fix it."""

    def __init__(self, message: str, field: str):
        super().__init__(message, field=field)


def render(fmt: str, spec: MixtureExport) -> Bundle:
    """The export of ``spec`` in ``fmt`` (one of :data:`FORMATS`); :class:`ExportError` (a 422)
    names what the project must declare when something the format needs is missing."""
    try:
        return writers.render(fmt, spec)
    except writers.ExportError as exc:
        raise ExportError(exc.message, exc.field) from None


# -- from the store (the use cases the routes and the dashboard call) ------------------------
def _domains(project: Project) -> list[dict[str, Any]]:
    return [
        {
            "name": d.name,
            "token_count": d.token_count,
            "documents": d.documents,
            "source": d.source,
            "trainer_paths": d.trainer_paths,
            "group": d.group_path,
        }
        for d in project.domains
    ]


def _base(project: Project, mixture: dict[str, float], **kw: Any) -> MixtureExport:
    return MixtureExport(
        mixture=dict(mixture),
        domains=_domains(project),
        constraints=dict(project.constraints or {}),
        objective=project.objective,
        **kw,
    )


def notes_header(bundle: Bundle, limit: int = 2000) -> str:
    """``bundle.notes`` as one HTTP header value: one line, ASCII (other characters as
    ``\\uXXXX``), at most ``limit`` characters (then it points to the notes file)."""
    text = " | ".join(" ".join(n.split()) for n in bundle.notes)
    text = text.encode("ascii", "backslashreplace").decode("ascii")
    if len(text) > limit:
        text = text[: limit - 40].rstrip() + " ... (the rest in the notes file)"
    return text


def requested_scale(rec: Recommendation, fit: Fit | None) -> dict[str, Any]:
    """The scale a recommendation was asked for: what the request gave (stored as
    ``details.requested_scale``), else the target its fit (``fit``, None when gone) was made
    for. Never the proxy runs' own scale, which ``rec.target_scale`` holds when no target was
    asked for (it is the scale the answer is for): the export's budget is then
    ``constraints.target_tokens``. A recommendation from before ``requested_scale`` was stored
    whose fit is gone keeps ``target_scale`` (nothing else says what it was asked for)."""
    details = rec.details or {}
    asked = dict(details.get("requested_scale") or {})
    if fit is not None and fit.target_scale:
        return {**dict(fit.target_scale), **asked}
    if asked or "requested_scale" in details or fit is not None:
        return asked
    return dict(rec.target_scale or {})


def for_recommendation(session: Session, project: Project, rec_id: int) -> MixtureExport:
    """What a recommendation exports: its mixture (or phases), the budget it was asked for
    (:func:`requested_scale`), the constraints it was made under and where it came from."""
    rec = rec_service.get_recommendation(session, project, rec_id)
    fit = session.get(Fit, rec.fit_id) if rec.fit_id is not None else None
    if fit is not None and fit.project_id != project.id:
        fit = None
    origin: dict[str, Any] = {
        "kind": "recommendation",
        "project_id": project.id,
        "recommendation_id": rec.id,
        "source": rec.source,
        "fit_id": rec.fit_id,
        "predicted": rec.predicted,
        "interval": [rec.interval_low, rec.interval_high],
        "binding": rec.binding,
        # the scale the prediction is for (the runs' own when no target was asked for); the
        # export's budget is ``scale`` (requested_scale) or the project's target_tokens
        "answers_at": dict(rec.target_scale or {}),
        "created_at": rec.created_at.isoformat() if rec.created_at else None,
    }
    if rec.fit_id is not None:  # None: the fit was deleted, the recommendation keeps its say
        origin["fit"] = None
        if fit is not None:
            origin["fit"] = {
                "id": fit.id,
                "estimator": fit.estimator,
                "params": fit.params,
                "target": fit.target,
                "run_ids": fit.run_ids,
                "fidelity": fit.fidelity,
            }
    return recommendation_spec(project, rec, fit, origin=origin)


def recommendation_spec(
    project: Project, rec: Recommendation, fit: Fit | None, origin: dict[str, Any] | None = None
) -> MixtureExport:
    """A recommendation as the exports see it (``fit``: its fit, None when gone): mixture and
    phases, :func:`requested_scale`, its constraints over the project's current ones."""
    spec = _base(
        project,
        rec.mixture,
        scale=requested_scale(rec, fit),
        origin=origin or {},
        slug=f"project-{project.id}-recommendation-{rec.id}",
        phases=((rec.details or {}).get("staged") or {}).get("phases"),
    )
    spec.constraints = {
        **spec.constraints,
        **{k: v for k, v in (rec.constraints or {}).items() if v is not None},
    }
    return spec


def recommendation_epoch_warnings(
    project: Project, rec: Recommendation, fit: Fit | None
) -> list[str]:
    """Domains the recommendation reads beyond their epoch cap (or without tokens) at the budget
    its exports use, over all its phases when staged: :func:`mixopt.exports.epoch_warnings`,
    the figure of the exports' notes and of the science's ``epochs_used``."""
    return writers.epoch_warnings(recommendation_spec(project, rec, fit))


def for_baseline(project: Project, name: str) -> MixtureExport:
    out = rec_service.baselines(project)
    if name not in out["mixtures"]:
        raise NotFound(f"baseline {name!r} not found; baselines here: {sorted(out['mixtures'])}")
    origin = {"kind": "baseline", "project_id": project.id, "baseline": name}
    return _base(project, out["mixtures"][name], origin=origin, slug=f"project-{project.id}-{name}")


def for_online_session(
    session: Session, project: Project, session_id: int, which: str = "current"
) -> MixtureExport:
    """An online session's ``current`` weights, its ``final`` weights (the mixer's
    recommendation for a re-run, e.g. DoReMi's average), or its ``trajectory`` (every stored
    version with the step it applies from; Levanter trains on it as stages)."""
    row = online_service.get_session_row(session, project, session_id)
    origin = {
        "kind": "online",
        "project_id": project.id,
        "session_id": row.id,
        "algorithm": row.algorithm,
        "version": row.version,
        "weights": which,
    }
    slug = f"project-{project.id}-online-{row.id}-{which}"
    if which == "current":
        return _base(project, row.weights, origin=origin, slug=slug)
    if which == "final":
        return _base(
            project,
            online_service.weights_view(session, row)["final_weights"],
            origin=origin,
            slug=slug,
        )
    if which == "trajectory":
        versions = online_service.history(session, row)["weights"]
        schedule = [(int(v.step), dict(v.weights)) for v in versions] or [(0, dict(row.weights))]
        return _base(project, row.weights, origin=origin, schedule=schedule, slug=slug)
    raise Invalid(f"weights must be current, final or trajectory, not {which!r}", field="weights")
