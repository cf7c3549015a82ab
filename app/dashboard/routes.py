"""The web dashboard: server-rendered pages under ``/dashboard`` (Jinja2), a little JavaScript
and Chart.js, all served by the app itself (no CDN: it works offline).

Login stores the API token in an HTTP-only, SameSite=Strict cookie (``Secure`` over https),
which :func:`app.api.deps.current_token` also accepts, so the pages' scripts call the ``/v1``
API with it. A token sees only its projects: another project's pages answer 404.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from app.api import csrf, ratelimit
from app.api.deps import CurrentToken, IdPath, SessionDep
from app.api.responses import bundle_response
from app.dashboard import views
from app.schemas.fits import FitCreate
from app.schemas.recommendations import RecommendationCreate
from app.services import dashboard as dash_service
from app.services import experts as expert_service
from app.services import exports
from app.services import fits as fit_service
from app.services import jobs as job_service
from app.services import online as online_service
from app.services import projects as project_service
from app.services import recommendations as rec_service
from app.services import runs as run_service
from app.services import swarms as swarm_service
from app.services import validations as validation_service
from app.services.dispatch import enqueue_job
from app.services.errors import Invalid, NotFound, ServiceError
from app.store.models import ApiToken, Fit

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
COOKIE = "mixopt_token"
COOKIE_MAX_AGE = 8 * 3600
#: pages run only the app's own scripts and talk only to the app
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)

router = APIRouter(prefix="/dashboard", include_in_schema=False)
templates = Jinja2Templates(directory=str(HERE / "templates"))


# -- template filters -----------------------------------------------------------------------
def _fmt(value: Any, digits: int = 4) -> str:
    v = views._num(value)
    return "—" if v is None else f"{v:.{digits}g}"


def _tokens(value: Any) -> str:
    v = views._num(value)
    if v is None:
        return "—"
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= size:
            return f"{v / size:.3g}{unit}"
    return f"{v:.0f}"


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if isinstance(value, datetime) else "—"


templates.env.filters.update(fmt=_fmt, tokens=_tokens, when=_when)


# -- plumbing -------------------------------------------------------------------------------
def _page_token(request: Request, session) -> ApiToken | None:
    """The token of the dashboard session (cookie), or None when absent, revoked or unknown; a
    guessed cookie counts as a failed authentication (429 past the budgets, app.api.ratelimit)."""
    plain = request.cookies.get(COOKIE)
    return ratelimit.authenticate(request, session, plain) if plain else None


def _id(value: str, what: str) -> int:
    """A database id from the URL; anything else is a 404 page (not a 500, not JSON)."""
    if not re.fullmatch(r"[1-9][0-9]{0,9}", value) or int(value) > 2**31 - 1:
        raise NotFound(f"{what} {value!r} not found")
    return int(value)


def _headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {
        "Content-Security-Policy": CSP,
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
        **(extra or {}),
    }


def _render(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    plain = request.cookies.get(COOKIE)
    context = {"csrf": csrf.csrf_token(plain) if plain else "", **context}
    return templates.TemplateResponse(
        request, name, context, status_code=status_code, headers=_headers()
    )


def _login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(
        f"/dashboard/login?next={quote(target, safe='')}", status_code=303, headers=_headers()
    )


def _page(request: Request, session, build: Callable[[ApiToken], Response]) -> Response:
    """Run a page builder for the logged-in token; a service error becomes an HTML error page
    with the service's status (404 for ids the token may not see)."""
    token = _page_token(request, session)
    if token is None:
        return _login_redirect(request)
    try:
        return build(token)
    except ServiceError as exc:
        session.rollback()
        message = (
            exc.message
            if not exc.field or exc.field in exc.message
            else f"{exc.field}: {exc.message}"
        )
        return _render(
            request,
            "error.html",
            {"token": token, "status": exc.status_code, "message": message},
            status_code=exc.status_code,
        )
    except HTTPException as exc:  # CSRF / origin refusals of the dashboard's forms
        session.rollback()
        return _render(
            request,
            "error.html",
            {"token": token, "status": exc.status_code, "message": str(exc.detail)},
            status_code=exc.status_code,
        )


def _project_context(session, token: ApiToken, project_id: str, active: str) -> dict[str, Any]:
    project = project_service.get_project(session, token, _id(project_id, "project"))
    return {
        "token": token,
        "project": project,
        "active": active,
        "domains": views.domain_dicts(project),
    }


def _safe_next(value: str | None) -> str:
    if (
        value
        and value.startswith("/dashboard")
        and not value.startswith("//")
        and "\\" not in value
    ):
        return value
    return "/dashboard"


# -- static assets ------------------------------------------------------------------------------
@router.get("/static/{path:path}")
def static(path: str) -> Response:
    """The dashboard's own CSS, JavaScript and the vendored Chart.js (cached for an hour)."""
    target = (STATIC / path).resolve()
    if not path or STATIC not in target.parents or not target.is_file():
        return JSONResponse(
            {"detail": f"static file {path!r} not found", "errors": []}, status_code=404
        )
    media = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    if target.suffix == ".js":
        media = "text/javascript"
    return FileResponse(
        target,
        media_type=media,
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


# -- login ------------------------------------------------------------------------------------
@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None) -> Response:
    return _render(request, "login.html", {"token": None, "next": _safe_next(next), "error": None})


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/dashboard",
) -> Response:
    """Check the API token and keep it in an HTTP-only, SameSite=Strict cookie, with the session's
    CSRF token in a cookie the pages' scripts read (:mod:`app.api.csrf`). Refused from another
    origin; failed attempts are limited per client address and per credential, a valid token
    always logs in (429 with Retry-After: :mod:`app.api.ratelimit`)."""
    csrf.check_origin(request)
    plain = token.strip()
    row = ratelimit.authenticate(request, session, plain) if plain else None
    if row is None:
        message = (
            "enter your API token" if not plain else "this token is not valid (unknown or revoked)"
        )
        return _render(
            request,
            "login.html",
            {"token": None, "next": _safe_next(next), "error": message},
            status_code=422 if not plain else 401,
        )
    response = RedirectResponse(_safe_next(next), status_code=303, headers=_headers())
    secure = request.url.scheme == "https"
    response.set_cookie(
        COOKIE,
        plain,
        max_age=COOKIE_MAX_AGE,
        path="/",
        httponly=True,
        samesite="strict",
        secure=secure,
    )
    response.set_cookie(
        csrf.CSRF_COOKIE,
        csrf.csrf_token(plain),
        max_age=COOKIE_MAX_AGE,
        path="/",
        httponly=False,
        samesite="strict",
        secure=secure,
    )
    return response


@router.post("/logout")
def logout(request: Request, csrf_token: Annotated[str, Form()] = "") -> Response:
    plain = request.cookies.get(COOKIE)
    if plain:
        csrf.check(request, plain, form_value=csrf_token)
    response = RedirectResponse("/dashboard/login", status_code=303, headers=_headers())
    secure = request.url.scheme == "https"
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=secure)
    response.delete_cookie(
        csrf.CSRF_COOKIE, path="/", httponly=False, samesite="strict", secure=secure
    )
    return response


# -- pages ------------------------------------------------------------------------------------
@router.get("", response_class=HTMLResponse)
def projects_page(request: Request, session: SessionDep) -> Response:
    def build(token: ApiToken) -> Response:
        rows, count = project_service.list_projects(session, token, limit=1000)
        counts = dash_service.project_counts(session, [p.id for p in rows])
        return _render(
            request,
            "projects.html",
            {
                "token": token,
                "active": "projects",
                "count": count,
                "projects": [(p, counts[p.id]) for p in rows],
            },
        )

    return _page(request, session, build)


@router.get("/projects/{project_id}", response_class=HTMLResponse)
def overview_page(request: Request, session: SessionDep, project_id: str) -> Response:
    def build(token: ApiToken) -> Response:
        ctx = _project_context(session, token, project_id, "overview")
        project = ctx["project"]
        refs, _, ref_error = views.reference_mixtures(project)
        domains = [d.name for d in project.domains]
        fits = {f.id: f for f in fit_service.list_fits(session, project, limit=100)[0]}
        recs = [
            views.recommendation_view(r, fits, domains)
            for r in rec_service.list_recommendations(session, project, limit=5)[0]
        ]
        columns = [(name, mix) for name, mix in refs.items()] + [
            (r["label"], r["mixture"]) for r in recs
        ]
        counts = dash_service.project_counts(session, [project.id])[project.id]
        return _render(
            request,
            "overview.html",
            ctx
            | {
                "counts": counts,
                "experts": expert_service.dashboard_view(session, project),
                "rounds": swarm_service.rounds_view(session, project),
                "epochs": views.epochs_table(
                    project, columns, {r["label"]: r["phases"] for r in recs if r["phases"]}
                ),
                "ref_error": ref_error,
                "constraints": project.constraints or {},
                "page_data": {
                    "project_id": project.id,
                    "domains": domains,
                    "natural": refs.get("natural"),
                },
            },
        )

    return _page(request, session, build)


@router.get("/projects/{project_id}/mixtures", response_class=HTMLResponse)
def mixtures_page(request: Request, session: SessionDep, project_id: str) -> Response:
    def build(token: ApiToken) -> Response:
        ctx = _project_context(session, token, project_id, "mixtures")
        project = ctx["project"]
        domains = [d.name for d in project.domains]
        refs, unavailable, ref_error = views.reference_mixtures(project)
        fits = {f.id: f for f in fit_service.list_fits(session, project, limit=1000)[0]}
        rows = rec_service.list_recommendations(session, project, limit=50)[0]
        recs = [
            views.recommendation_view(r, fits, domains)
            | {"warnings": views.recommendation_warnings(project, r, fits)}
            for r in rows
        ]
        shown = [(r["label"], r["mixture"]) for r in recs[:6]] + list(refs.items())
        pred_fit, ref_predicted = views.baseline_predictions(list(fits.values()), refs)
        ref_warnings = {k: views.epoch_warnings(m, project) for k, m in refs.items()}
        return _render(
            request,
            "mixtures.html",
            ctx
            | {
                "ref_predicted": ref_predicted,
                "pred_fit": pred_fit,
                "ref_warnings": ref_warnings,
                "recs": recs,
                "refs": refs,
                "unavailable": unavailable,
                "ref_error": ref_error,
                "formats": list(exports.LABELS.items()),
                "page_data": {
                    "domains": domains,
                    "mixtures": [{"label": k, "mixture": v} for k, v in shown],
                },
            },
        )

    return _page(request, session, build)


@router.get("/projects/{project_id}/mixtures/{which}/export")
def export_mixture(
    request: Request,
    session: SessionDep,
    project_id: str,
    which: str,
    format: str = "json",
    part: str | None = None,
) -> Response:
    """A recommendation (by id) or a baseline (by name) for a trainer: the same code as
    ``GET /v1/projects/{id}/recommendations/{rec_id}/export`` (:mod:`app.services.exports`)."""

    def build(token: ApiToken) -> Response:
        ctx = _project_context(session, token, project_id, "mixtures")
        project = ctx["project"]
        if format not in exports.FORMATS:
            raise Invalid(
                f"format must be one of {list(exports.FORMATS)}, not {format!r}", field="format"
            )
        if which.isdigit():
            spec = exports.for_recommendation(session, project, _id(which, "recommendation"))
        else:
            spec = exports.for_baseline(project, which)
        return bundle_response(spec, format, part)

    return _page(request, session, build)


@router.get("/projects/{project_id}/fits", response_class=HTMLResponse)
def fits_page(
    request: Request,
    session: SessionDep,
    project_id: str,
    job: Annotated[str | None, Query()] = None,
) -> Response:
    def build(token: ApiToken) -> Response:
        ctx = _project_context(session, token, project_id, "fits")
        project = ctx["project"]
        started = None
        if job is not None:  # the job a form on this page just started (404 when not the token's)
            if not re.fullmatch(r"[0-9a-f]{32}", job):
                raise NotFound(f"job {job!r} not found", field="job")
            started = job_service.job_public(job_service.get_job(session, token, job))
        fit_rows = fit_service.list_fits(session, project, limit=100)[0]
        fits = [views.fidelity_view(f) for f in fit_rows]
        scatter = [
            {
                "id": f["id"],
                "label": f"#{f['id']} {f['estimator']}"
                + (f" ({f['chosen']})" if f["chosen"] else ""),
                "points": f["points"],
                "spearman": f["metrics"]["spearman"],
                "r2": f["metrics"]["r2"],
            }
            for f in fits
            if f["points"]
        ]
        refs, _, _ = views.reference_mixtures(project)
        recs = rec_service.list_recommendations(session, project, limit=20)[0]
        best = dash_service.best_fit(fit_rows)
        return _render(
            request,
            "fits.html",
            ctx
            | {
                "fits": fits,
                "best_fit": best.id if best is not None else None,
                "started": started,
                "estimators": fit_service.known_estimators(),
                "metrics": views.metric_names(session, project),
                "baseline_names": list(refs),
                "recent_recs": [r.id for r in recs],
                "can_write": token.role in ("admin", "write"),
                "page_data": {
                    "fits": scatter,
                    "job": started["id"] if started else None,
                    "poll_ms": 1000,
                },
            },
        )

    return _page(request, session, build)


@router.get("/projects/{project_id}/whatif", response_class=HTMLResponse)
def whatif_page(
    request: Request,
    session: SessionDep,
    project_id: str,
    fit: Annotated[str | None, Query()] = None,
) -> Response:
    def build(token: ApiToken) -> Response:
        ctx = _project_context(session, token, project_id, "whatif")
        project = ctx["project"]
        domains = [d.name for d in project.domains]
        fits = [
            f
            for f in fit_service.list_fits(session, project, limit=100)[0]
            if f.status == "succeeded"
        ]
        refs, _, _ = views.reference_mixtures(project)
        recs = [
            views.recommendation_view(r, {}, domains)
            for r in rec_service.list_recommendations(session, project, limit=10)[0]
        ]
        presets = [{"label": k, "mixture": v} for k, v in refs.items()] + [
            {"label": r["label"], "mixture": r["mixture"]} for r in recs
        ]
        best = dash_service.best_fit(fits)  # the best CV Spearman, as `mixopt best`
        selected = best.id if best is not None else None
        if fit is not None:
            wanted = _id(fit, "fit")
            if wanted not in {f.id for f in fits}:
                raise NotFound(f"fit {wanted} not found among the project's succeeded fits")
            selected = wanted
        start = refs.get("natural") or refs.get("uniform") or {}
        return _render(
            request,
            "whatif.html",
            ctx
            | {
                "fits": [(f.id, views.fit_label(f)) for f in fits],
                "selected": selected,
                "page_data": {
                    "project_id": project.id,
                    "domains": domains,
                    "presets": presets,
                    "start": [float(start.get(d, 1.0 / max(1, len(domains)))) for d in domains],
                    "natural": refs.get("natural"),
                    "availability": views.whatif_availability(project),
                },
            },
        )

    return _page(request, session, build)


@router.get("/projects/{project_id}/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, session: SessionDep, project_id: str, run_id: str) -> Response:
    def build(token: ApiToken) -> Response:
        ctx = _project_context(session, token, project_id, "overview")
        run = run_service.get_run(session, ctx["project"], _id(run_id, "run"))
        domains = [d.name for d in ctx["project"].domains]
        return _render(
            request,
            "run.html",
            ctx
            | {
                "run": run,
                "page_data": {
                    "project_id": ctx["project"].id,
                    "run_id": run.id,
                    "domains": domains,
                    "mixture": [float(run.mixture.get(d, 0.0)) for d in domains],
                },
            },
        )

    return _page(request, session, build)


@router.get("/projects/{project_id}/online", response_class=HTMLResponse)
def online_page(
    request: Request,
    session: SessionDep,
    project_id: str,
    session_id: Annotated[str | None, Query(alias="session")] = None,
) -> Response:
    def build(token: ApiToken) -> Response:
        ctx = _project_context(session, token, project_id, "online")
        rows = online_service.list_sessions(session, ctx["project"])
        selected = None
        if session_id is not None:
            wanted = _id(session_id, "online session")
            selected = next((r for r in rows if r.id == wanted), None)
            if selected is None:
                raise NotFound(f"online session {wanted} not found in project {ctx['project'].id}")
        elif rows:
            selected = rows[-1]
        return _render(
            request,
            "online.html",
            ctx
            | {
                "available": online_service is not None,
                "sessions": rows,
                "selected": selected,
                "page_data": {
                    "project_id": ctx["project"].id,
                    "session_id": selected.id if selected else None,
                    "domains": list(selected.domains) if selected else [],
                    "status": selected.status if selected else None,
                    "poll_ms": 2000,
                },
            },
        )

    return _page(request, session, build)


@router.get("/projects/{project_id}/validations", response_class=HTMLResponse)
def validations_page(
    request: Request,
    session: SessionDep,
    project_id: str,
    validation_id: Annotated[str | None, Query(alias="validation")] = None,
) -> Response:

    def build(token: ApiToken) -> Response:
        ctx = _project_context(session, token, project_id, "validations")
        rows = validation_service.list_validations(session, ctx["project"], limit=100)[0]
        selected = None
        if validation_id is not None:
            selected = validation_service.get_validation(
                session, ctx["project"], _id(validation_id, "validation")
            )
        elif rows:
            selected = next((v for v in rows if v.result), rows[0])
        plot, domains, scale = views.validation_plot(
            selected.result if selected is not None else None
        )
        return _render(
            request,
            "validations.html",
            ctx
            | {
                "validations": rows,
                "selected": selected,
                "plot": plot,
                "domains_list": domains,
                "bar": lambda x: min(30.0, abs(float(x)) * scale),
            },
        )

    return _page(request, session, build)


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, session: SessionDep) -> Response:
    def build(token: ApiToken) -> Response:
        jobs, count = _jobs_with_links(session, token)
        return _render(
            request,
            "jobs.html",
            {
                "token": token,
                "active": "jobs",
                "jobs": jobs,
                "count": count,
                "page_data": {"poll_ms": 2000},
            },
        )

    return _page(request, session, build)


def _jobs_with_links(session: Session, token: ApiToken) -> tuple[list[dict[str, Any]], int]:
    """The token's newest 100 jobs, each with links to what it produced (``links``)."""
    rows, count = job_service.list_jobs(session, token, limit=100)
    jobs = [job_service.job_public(j) for j in rows]
    return [j | {"links": dash_service.job_links(j)} for j in jobs], count


# -- JSON for the pages' scripts ------------------------------------------------------------------
@router.get("/api/jobs")
def jobs_json(session: SessionDep, token: CurrentToken) -> dict[str, Any]:
    """The jobs page's live table: the token's newest 100 jobs with links to what each
    produced (fit, recommendation, runs, validation, online session)."""
    jobs, count = _jobs_with_links(session, token)
    return {"data": jobs, "count": count}


@router.get("/api/projects/{project_id}/runs")
def runs_json(project_id: IdPath, session: SessionDep, token: CurrentToken) -> dict[str, Any]:
    """Every run (up to 20,000, newest) in a compact form: the runs table sorts, filters and
    pages them in the browser, and the coverage chart plots their weights."""
    project = project_service.get_project(session, token, project_id)
    return views.runs_payload(session, project)


# -- issue 17: comparison, Pareto front, overlaid curves, fits and recommendations from the page -
def _ids(
    values: list[str], what: str, field: str, least: int, most: int, purpose: str
) -> list[int]:
    """``least`` to ``most`` distinct ids from repeated (or comma-separated) query values, in
    order; a count outside is a 422, raised as soon as ``most`` is passed (so a long query string
    costs nothing)."""
    out: dict[int, None] = {}

    def wrong_count(n: str) -> Invalid:
        return Invalid(f"pick {least} to {most} {what}s {purpose} (got {n})", field=field)

    for v in values:
        for part in str(v).split(","):
            if not part.strip():
                continue
            try:
                out[_id(part.strip(), what)] = None
            except NotFound as exc:
                raise NotFound(exc.message, field=field) from exc
            if len(out) > most:
                raise wrong_count(f"more than {most}")
    if len(out) < least:
        raise wrong_count(str(len(out)))
    return list(out)


@router.get("/projects/{project_id}/compare", response_class=HTMLResponse)
def compare_page(
    request: Request,
    session: SessionDep,
    project_id: str,
    rec: Annotated[list[str], Query()] = [],  # noqa: B006 (FastAPI copies it)
) -> Response:
    """2-4 recommendations side by side (checked on the proposed-mixtures page)."""

    def build(token: ApiToken) -> Response:
        ctx = _project_context(session, token, project_id, "mixtures")
        project = ctx["project"]
        ids = _ids(rec, "recommendation", "rec", views.COMPARE_MIN, views.COMPARE_MAX, "to compare")
        recs = [rec_service.get_recommendation(session, project, i) for i in ids]
        # the fits the recommendations came from (only those: a fit's state can be large)
        fits = {
            f.id: f
            for f in (session.get(Fit, i) for i in {r.fit_id for r in recs if r.fit_id is not None})
            if f is not None and f.project_id == project.id
        }
        validations = validation_service.list_validations(session, project, limit=200)[0]
        table = views.comparison(project, recs, fits, validations)
        domains = [d.name for d in project.domains]
        return _render(
            request,
            "compare.html",
            ctx
            | {
                "cmp": table,
                "page_data": {
                    "domains": domains,
                    "mixtures": [
                        {"label": c["label"], "mixture": c["mixture"]} for c in table["columns"]
                    ],
                },
            },
        )

    return _page(request, session, build)


@router.get("/projects/{project_id}/pareto", response_class=HTMLResponse)
def pareto_page(
    request: Request,
    session: SessionDep,
    project_id: str,
    fit: Annotated[str | None, Query()] = None,
    x: Annotated[str | None, Query()] = None,
    y: Annotated[str | None, Query()] = None,
    rec: Annotated[str | None, Query()] = None,
) -> Response:
    """The fitted model's predictions of candidate mixtures on two metrics, the non-dominated front
    highlighted, the reference (natural, or ``rec``'s reference) and the recommendations marked."""

    def build(token: ApiToken) -> Response:
        ctx = _project_context(session, token, project_id, "pareto")
        project = ctx["project"]
        fits = [
            f
            for f in fit_service.list_fits(session, project, limit=100)[0]
            if f.status == "succeeded"
        ]
        multi = [f for f in fits if len(f.target or {}) >= 2]
        chosen = None
        if fit is not None:
            wanted = _id(fit, "fit")
            chosen = next((f for f in fits if f.id == wanted), None)
            if chosen is None:
                raise NotFound(
                    f"fit {wanted} not found among the project's succeeded fits", field="fit"
                )
        elif multi:
            chosen = dash_service.best_fit(multi)  # the best CV Spearman, as `mixopt best`
        reference_rec = (
            rec_service.get_recommendation(session, project, _id(rec, "recommendation"))
            if rec is not None
            else None
        )
        view = None
        if chosen is not None:
            refs, _, _ = views.reference_mixtures(project)
            recs = [
                r
                for r in rec_service.list_recommendations(session, project, limit=10)[0]
                if r.fit_id == chosen.id
            ]
            view = views.pareto_view(project, chosen, refs, recs, x, y, reference_rec)
        return _render(
            request,
            "pareto.html",
            ctx
            | {
                "fits": [(f.id, views.fit_label(f), list(f.target)) for f in multi],
                "selected": chosen,
                "view": view,
                "reference_rec": reference_rec,
                "page_data": {"pareto": view["chart"] if view else None},
            },
        )

    return _page(request, session, build)


@router.get("/projects/{project_id}/curves", response_class=HTMLResponse)
def curves_page(
    request: Request,
    session: SessionDep,
    project_id: str,
    runs: Annotated[list[str], Query()] = [],  # noqa: B006
    metric: Annotated[str | None, Query()] = None,
    x: Annotated[str, Query()] = "steps",
) -> Response:
    """Several runs' loss curves for one metric on one chart (x = steps or tokens)."""

    def build(token: ApiToken) -> Response:
        ctx = _project_context(session, token, project_id, "overview")
        ids = _ids(runs, "run", "runs", 1, views.MAX_OVERLAY_RUNS, "to overlay")
        view = views.curves_overlay(session, ctx["project"], ids, metric, x)
        return _render(
            request,
            "curves.html",
            ctx
            | {
                "view": view,
                "run_ids": ",".join(map(str, ids)),
                "page_data": {"x": view["x"], "metric": view["metric"], "series": view["series"]},
            },
        )

    return _page(request, session, build)


def _form_error(exc: Exception, prefix: str = "") -> Invalid:
    """A pydantic ValidationError of a form as a 422 naming its first field."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError) and exc.errors():
        e = exc.errors()[0]
        field = prefix + ".".join(str(p) for p in e["loc"])
        return Invalid(f"{field}: {e['msg']}", field=field)
    return Invalid(str(exc))


def _form_post(
    request: Request, session, csrf_token: str, build: Callable[[ApiToken], Response]
) -> Response:
    """A dashboard form's POST: logged in, same origin and the session's CSRF token, then the
    same service call as the API (errors become the HTML error page with their status)."""

    def checked(token: ApiToken) -> Response:
        csrf.check(request, request.cookies.get(COOKIE) or "", form_value=csrf_token)
        return build(token)

    return _page(request, session, checked)


@router.post("/projects/{project_id}/fits")
def start_fit(
    request: Request,
    session: SessionDep,
    project_id: str,
    csrf_token: Annotated[str, Form()] = "",
    estimator: Annotated[str, Form()] = "auto",
    target: Annotated[str, Form()] = "",
    cv_folds: Annotated[str, Form()] = "5",
) -> Response:
    """Start a fit from the fits page: :func:`app.services.fits.create_fit`, as
    ``POST /v1/.../fits`` (write access needed); back to the fits page with the job's
    progress."""
    from pydantic import ValidationError

    def build(token: ApiToken) -> Response:
        project = project_service.get_project(
            session, token, _id(project_id, "project"), write=True
        )
        body: dict[str, Any] = {"estimator": estimator.strip(), "cv_folds": cv_folds.strip() or 5}
        if target.strip():
            body["target"] = {target.strip(): 1.0}
        try:
            data = FitCreate.model_validate(body)
        except ValidationError as exc:
            raise _form_error(exc) from exc
        fit, job = fit_service.create_fit(session, project, data)
        enqueue_job(session, job)
        return RedirectResponse(
            f"/dashboard/projects/{project.id}/fits?job={job.id}#started",
            status_code=303,
            headers=_headers(),
        )

    return _form_post(request, session, csrf_token, build)


@router.post("/projects/{project_id}/recommendations")
def start_recommendation(
    request: Request,
    session: SessionDep,
    project_id: str,
    csrf_token: Annotated[str, Form()] = "",
    fit_id: Annotated[str, Form()] = "",
    reference: Annotated[str, Form()] = "",
    n_boot: Annotated[str, Form()] = "20",
    allow_untrusted: Annotated[str, Form()] = "",
) -> Response:
    """Recommend from a fit on the fits page (:func:`app.services.fits.create_recommendation_job`,
    as ``POST /v1/.../recommendations``), optionally against a baseline (``natural``) or an
    earlier recommendation (``rec:ID``) to beat."""
    from pydantic import ValidationError

    def build(token: ApiToken) -> Response:
        project = project_service.get_project(
            session, token, _id(project_id, "project"), write=True
        )
        if not fit_id.strip():
            raise Invalid("fit_id: choose the fit to recommend from", field="fit_id")
        body: dict[str, Any] = {
            "fit_id": _id(fit_id.strip(), "fit"),
            "n_boot": n_boot.strip() or 20,
            "allow_untrusted": allow_untrusted in ("1", "on", "true"),
        }
        ref = reference.strip()
        if ref.startswith("rec:"):
            body["reference"] = {"recommendation_id": ref[4:]}
        elif ref:
            body["reference"] = {"baseline": ref}
        try:
            data = RecommendationCreate.model_validate(body)
        except ValidationError as exc:
            raise _form_error(exc) from exc
        job = rec_service.create_recommendation_job(session, project, data)
        enqueue_job(session, job)
        return RedirectResponse(
            f"/dashboard/projects/{project.id}/fits?job={job.id}#started",
            status_code=303,
            headers=_headers(),
        )

    return _form_post(request, session, csrf_token, build)
