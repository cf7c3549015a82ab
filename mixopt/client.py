"""Python client for the mixopt HTTP API (httpx), typed with :mod:`mixopt.api_types`.

>>> from mixopt.client import MixoptClient
>>> c = MixoptClient("http://127.0.0.1:8000", token="mxo_...")   # or MIXOPT_URL / MIXOPT_TOKEN
>>> p = c.get_or_create_project("pile", domains=["web", "code", "math"])
>>> c.add_runs(p.id, [{"mixture": {"web": 0.5, "code": 0.3, "math": 0.2}, "metrics": {"val/web": 3.2}}])
>>> fit = c.wait(c.fit(p.id, estimator="auto"))        # raises JobFailed with the reason
>>> rec = c.get_recommendation(p.id, c.wait(c.recommend(p.id, fit_id=fit.result["fit_id"])).result["recommendation_id"])
>>> df = c.runs_frame(p.id)                            # pandas (pip install 'mixopt[pandas]')

Every method returns a pydantic model (``Project``, ``Run``, ``Fit``, ``Recommendation``,
``Job``, ...; they also answer ``obj["field"]`` for code written against the old dicts).
``iter_*`` methods walk every page of a list; ``list_*`` methods return all items.
``AsyncClient`` has the same methods, as coroutines (``iter_*`` are async iterators).

Errors are exceptions: :class:`MixoptError` (``status``, ``field``, ``message``, ``errors``) for
an error answer, :class:`ConnectionFailed` when the server cannot be reached, :class:`JobFailed`
(``job``, ``reason``) from :meth:`MixoptClient.wait` when a job fails or is cancelled.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from mixopt.api_types import (
    FINAL_STATES,
    DomainSet,
    DomainSets,
    Fit,
    Job,
    JobAccepted,
    OnlineSession,
    Page,
    Project,
    Recommendation,
    Run,
    SwarmAccepted,
    Token,
    Weights,
)

DEFAULT_URL = "http://127.0.0.1:8000"
Json = dict[str, Any]
M = TypeVar("M", bound=BaseModel)
#: ``progress(job)`` is called at every poll of :meth:`MixoptClient.wait`
ProgressCallback = Callable[[Job], None]

__all__ = ["AsyncClient", "ConnectionFailed", "JobFailed", "MixoptClient", "MixoptError"]

#: the client method of each API operation whose name differs from the operationId (every other
#: operationId is a method of both clients; tests/api/test_contract.py checks it for all of them)
OPERATIONS = {
    "healthz": "health", "readyz": "ready", "create_runs": "add_runs", "add_curve": "add_curve_points",
    "create_fit": "fit", "create_recommendation": "recommend", "create_suggestions": "suggest",
    "ingest_domains": "ingest", "create_validation": "validate", "create_session": "create_online_session",
    "list_sessions": "list_online_sessions", "get_session": "get_online_session",
    "update_session": "update_online_session", "add_observations": "report", "get_weights": "weights",
    "get_history": "session_history", "remix_now": "remix", "export_recommendation": "export_mixture",
    "export_baseline": "export_mixture", "export_online_session": "export_mixture",
    "list_estimators": "estimators", "list_domain_sets": "domain_sets",
}


class MixoptError(RuntimeError):
    """An error answer from the API: ``status``, the server's one-line ``detail``, and each
    problem as ``errors`` ``[{"field", "message"}]``; ``field``/``message`` are the first one."""

    def __init__(self, status: int | None, detail: str, errors: list | None = None):
        super().__init__(f"HTTP {status}: {detail}" if status else detail)
        self.status = status
        self.detail = detail
        self.errors = list(errors or [])
        first = self.errors[0] if self.errors else {}
        self.field: str | None = first.get("field") or None
        self.message: str = first.get("message") or detail


class ConnectionFailed(MixoptError):
    """The server did not answer (down, wrong URL, timeout)."""

    def __init__(self, url: str, reason: str):
        super().__init__(None, f"cannot reach the mixopt API at {url}: {reason}")
        self.url = url


class JobFailed(MixoptError):
    """A job ended ``failed`` (or ``cancelled``): ``job`` is its last state, ``reason`` its error."""

    def __init__(self, job: Job):
        self.job = job
        self.reason = job.error or (f"the job was {job.state}" if job.state != "failed" else "no reason given")
        super().__init__(None, f"job {job.id} ({job.kind}) {job.state}: {self.reason}")


class JobTimeout(TimeoutError):
    def __init__(self, job: Job, timeout: float):
        self.job = job
        super().__init__(f"job {job.id} ({job.kind}) still {job.state} after {timeout:g} s")


def _error(r: httpx.Response) -> MixoptError:
    try:
        body = r.json()
        detail, errors = body.get("detail", r.text), body.get("errors", [])
    except (ValueError, AttributeError):
        detail, errors = r.text or r.reason_phrase, []
    return MixoptError(r.status_code, str(detail), errors if isinstance(errors, list) else [])


def _parse(r: httpx.Response, model: Any) -> Any:
    if model is None:
        return r.json() if r.content else None
    if model is bytes:
        return r.content
    if model is str:
        return r.text
    if isinstance(model, tuple):  # (Page, item model)
        body = r.json()
        return Page[model[1]].model_validate(body)
    return model.model_validate(r.json())


def _drop_none(d: Json) -> Json:
    return {k: v for k, v in d.items() if v is not None}


def _project_body(name: str, domains: Sequence[str | Json], objective: dict[str, float] | None,
                  constraints: Json | None, description: str | None) -> Json:
    return _drop_none({"name": name, "domains": [d if isinstance(d, dict) else {"name": d} for d in domains],
                       "objective": objective, "constraints": constraints, "description": description})


def _job_id(job: str | Job | JobAccepted | Json) -> str:
    if isinstance(job, str):
        return job
    if isinstance(job, JobAccepted):
        return job.job.id
    if isinstance(job, Job):
        return job.id
    if isinstance(job, dict):
        return job["job"]["id"] if "job" in job else job["id"]
    raise TypeError(f"not a job: {job!r}")


def _check_existing(project: Project, domains: Sequence[str | Json]) -> Project:
    wanted = [d["name"] if isinstance(d, dict) else d for d in domains]
    if wanted and project.domain_names and project.domain_names != wanted:
        raise MixoptError(409, f"project {project.name!r} (id {project.id}) exists with domains "
                               f"{project.domain_names}, not {wanted}",
                          [{"field": "domains", "message": f"the existing project has {project.domain_names}"}])
    return project


class _Endpoints:
    """One method per API operation that takes one request. ``_call`` performs it: synchronously
    in :class:`MixoptClient`, as a coroutine in :class:`AsyncClient`."""

    def _call(self, method: str, path: str, model: Any = None, **kw: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    # -- health and tokens -----------------------------------------------------------------
    def health(self) -> Json:
        return self._call("GET", "/healthz")

    def ready(self) -> Json:
        return self._call("GET", "/readyz")

    def whoami(self) -> Token:
        return self._call("GET", "/v1/tokens/me", Token)

    def create_token(self, name: str, role: str = "write", project_ids: Sequence[int] = ()) -> Token:
        """An API token (admin only); the plain token is in ``.token``, in this answer only."""
        return self._call("POST", "/v1/tokens", Token, json={"name": name, "role": role,
                                                             "project_ids": list(project_ids)})

    def revoke_token(self, token_id: int) -> Token:
        return self._call("DELETE", f"/v1/tokens/{token_id}", Token)

    def estimators(self) -> Page[str]:
        """Registered estimator names (``.data``)."""
        return self._call("GET", "/v1/estimators", (Page, str))

    # -- projects --------------------------------------------------------------------------
    def create_project(self, name: str, domains: Sequence[str | Json] = (), *, objective: dict[str, float] | None = None,
                       constraints: Json | None = None, description: str | None = None) -> Project:
        """``domains``: names, or ``{"name", "token_count", "source": {"path": ...}}``."""
        return self._call("POST", "/v1/projects", Project,
                          json=_project_body(name, domains, objective, constraints, description))

    def page_projects(self, *, offset: int = 0, limit: int = 100) -> Page[Project]:
        return self._call("GET", "/v1/projects", (Page, Project), params={"offset": offset, "limit": limit})

    def get_project(self, project_id: int) -> Project:
        return self._call("GET", f"/v1/projects/{project_id}", Project)

    def update_project(self, project_id: int, **fields: Any) -> Project:
        return self._call("PATCH", f"/v1/projects/{project_id}", Project, json=fields)

    def delete_project(self, project_id: int) -> None:
        return self._call("DELETE", f"/v1/projects/{project_id}")

    def change_domains(self, project_id: int, *, add: Sequence[str | Json] = (), remove: Sequence[str] = (),
                       split: dict[str, Sequence[str | Json]] | None = None, merge: dict[str, Sequence[str]] | None = None,
                       base_version: int | None = None) -> DomainSet:
        """Add, remove, split (``{"web": ["web_news", "web_blog"]}``) or merge (``{"books": ["pg19",
        "books3"]}``) domains: a new version of the domain set (returned). Runs keep theirs; fits
        map them into the new set where valid. ``base_version``: 409 if another change came first."""
        body = _drop_none({"add": [{"name": d} if isinstance(d, str) else d for d in add], "remove": list(remove),
                           "split": {k: list(v) for k, v in (split or {}).items()},
                           "merge": {k: list(v) for k, v in (merge or {}).items()}, "base_version": base_version})
        return self._call("POST", f"/v1/projects/{project_id}/domain-changes", DomainSet, json=body)

    def domain_sets(self, project_id: int) -> DomainSets:
        """Every version of the project's domain set, with what changed and each domain's life."""
        return self._call("GET", f"/v1/projects/{project_id}/domain-sets", DomainSets)

    # -- runs ------------------------------------------------------------------------------
    def add_run(self, project_id: int, mixture: dict[str, float], metrics: dict[str, float] | None = None,
                *, normalize: bool = False, idempotency_key: str | None = None, **fields: Any) -> Run:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._call("POST", f"/v1/projects/{project_id}/runs", Run,
                          json={"mixture": mixture, "metrics": metrics or {}, **fields}, headers=headers,
                          params={"normalize": normalize})

    def page_runs(self, project_id: int, *, cursor: str | None = None, limit: int = 100, **filters: Any) -> Page[Run]:
        """One page (``next_cursor`` leads to the next); filters: status, tag, origin,
        model_params, train_tokens, train_steps, order_by."""
        params = _drop_none({"limit": limit, "cursor": cursor, **filters})
        return self._call("GET", f"/v1/projects/{project_id}/runs", (Page, Run), params=params)

    list_runs = page_runs  # the old name: one page, as before

    def get_run(self, project_id: int, run_id: int) -> Run:
        return self._call("GET", f"/v1/projects/{project_id}/runs/{run_id}", Run)

    def update_run(self, project_id: int, run_id: int, **fields: Any) -> Run:
        """Report the results of a planned run (``metrics``, ``status``) or fix its labels."""
        return self._call("PATCH", f"/v1/projects/{project_id}/runs/{run_id}", Run, json=fields)

    def delete_run(self, project_id: int, run_id: int) -> None:
        return self._call("DELETE", f"/v1/projects/{project_id}/runs/{run_id}")

    def add_curve_points(self, project_id: int, run_id: int, points: Iterable[Json]) -> Json:
        """Loss-curve points ``[{step, tokens, metrics}]``; re-sending a step changes nothing."""
        return self._call("POST", f"/v1/projects/{project_id}/runs/{run_id}/curve", json={"points": list(points)})

    def get_curve(self, project_id: int, run_id: int) -> Json:
        return self._call("GET", f"/v1/projects/{project_id}/runs/{run_id}/curve")

    def import_runs_json(self, project_id: int, document: Json) -> Json:
        """Import a JSON export (:meth:`export_runs` with ``format="json"``) as it is."""
        return self._call("POST", f"/v1/projects/{project_id}/runs/import/json", json=document)

    def export_runs(self, project_id: int, *, format: str = "json", layout: str = "regmix",
                    part: str | None = None, status: str | None = "succeeded") -> Any:
        """JSON (a dict), one CSV (``part`` = mixtures or metrics: text) or a zip of both (bytes)."""
        params = _drop_none({"format": format, "layout": layout, "part": part, "status": status})
        model = None if format == "json" else (str if part else bytes)
        return self._call("GET", f"/v1/projects/{project_id}/runs/export", model, params=params)

    # -- jobs ------------------------------------------------------------------------------
    def get_job(self, job_id: str) -> Job:
        return self._call("GET", f"/v1/jobs/{job_id}", Job)

    def page_jobs(self, *, project_id: int | None = None, state: str | None = None, offset: int = 0,
                  limit: int = 100) -> Page[Job]:
        """``state``: queued (= pending), running, succeeded, failed, cancelled."""
        params = _drop_none({"project_id": project_id, "state": state, "offset": offset, "limit": limit})
        return self._call("GET", "/v1/jobs", (Page, Job), params=params)

    def cancel_job(self, job_id: str) -> Job:
        return self._call("POST", f"/v1/jobs/{job_id}/cancel", Job)

    # -- fits, predictions, recommendations, suggestions -------------------------------------
    def fit(self, project_id: int, estimator: str = "auto", *, params: Json | None = None,
            target: dict[str, float] | None = None, run_filter: Json | None = None, cv_folds: int = 5,
            random_state: int | None = None, target_scale: Json | None = None,
            domain_versions: str | None = None) -> JobAccepted:
        """Fit in a worker: the job to :meth:`wait` for, and the fit row (``.fit``). ``target_scale``
        (``{model_params, train_steps | train_tokens}``): answer at that scale through the scaling laws.
        ``domain_versions``: ``"compatible"`` (default: runs of older domain sets mapped in where
        valid) or ``"current"`` (only runs on the current set); the fit's ``domain_versions`` counts them."""
        body = _drop_none({"estimator": estimator, "params": params or {}, "cv_folds": cv_folds, "target": target,
                           "run_filter": run_filter, "random_state": random_state, "target_scale": target_scale,
                           "domain_versions": domain_versions})
        return self._call("POST", f"/v1/projects/{project_id}/fits", JobAccepted, json=body)

    def page_fits(self, project_id: int, *, offset: int = 0, limit: int = 100) -> Page[Fit]:
        return self._call("GET", f"/v1/projects/{project_id}/fits", (Page, Fit),
                          params={"offset": offset, "limit": limit})

    def get_fit(self, project_id: int, fit_id: int) -> Fit:
        return self._call("GET", f"/v1/projects/{project_id}/fits/{fit_id}", Fit)

    def predict(self, project_id: int, fit_id: int, mixtures: Sequence[dict[str, float]],
                normalize: bool = False, target_scale: Json | None = None) -> Json:
        """Predicted losses for mixtures from a stored fit (synchronous), with the ``scale`` they
        are for and the ``chain`` of laws that produced them."""
        return self._call("POST", f"/v1/projects/{project_id}/fits/{fit_id}/predict",
                          json=_drop_none({"mixtures": list(mixtures), "normalize": normalize,
                                           "target_scale": target_scale}))

    def recommend(self, project_id: int, *, fit_id: int | None = None, estimator: str | None = None,
                  constraints: Json | None = None, target_scale: Json | None = None, n_boot: int = 20,
                  params: Json | None = None, **options: Any) -> JobAccepted:
        """Recommend a mixture in a worker (from ``fit_id``, or fitting ``estimator`` first); the
        job's ``result["recommendation_id"]`` names the recommendation. ``options``: any other
        field of the request (``allow_untrusted``, ``trust_region``, ``random_state``, ...)."""
        body = _drop_none({"n_boot": n_boot, "fit_id": fit_id, "estimator": estimator, "constraints": constraints,
                           "target_scale": target_scale, "params": params, **options})
        return self._call("POST", f"/v1/projects/{project_id}/recommendations", JobAccepted, json=body)

    def page_recommendations(self, project_id: int, *, offset: int = 0, limit: int = 100) -> Page[Recommendation]:
        return self._call("GET", f"/v1/projects/{project_id}/recommendations", (Page, Recommendation),
                          params={"offset": offset, "limit": limit})

    def get_recommendation(self, project_id: int, rec_id: int) -> Recommendation:
        return self._call("GET", f"/v1/projects/{project_id}/recommendations/{rec_id}", Recommendation)

    def baselines(self, project_id: int) -> Json:
        return self._call("GET", f"/v1/projects/{project_id}/baselines")

    def suggest(self, project_id: int, count: int | None = None, **options: Any) -> JobAccepted:
        """Planned runs proposed by a worker (RegMix swarm first, then expected improvement);
        ``strategy="reuse"`` may leave ``count`` out (olmix-sized default, in the job's result)."""
        return self._call("POST", f"/v1/projects/{project_id}/suggestions", JobAccepted,
                          json=_drop_none({"count": count, **options}))

    # -- training: ingestion and swarms ------------------------------------------------------
    def ingest(self, project_id: int) -> JobAccepted:
        """Tokenise every domain's data source and record measured token counts (a job)."""
        return self._call("POST", f"/v1/projects/{project_id}/domains/ingest", JobAccepted)

    def create_swarm(self, project_id: int, count: int, *, train_steps: int | None = None,
                     train_tokens: int | None = None, preset: str = "tiny", **options: Any) -> SwarmAccepted:
        """Design ``count`` proxy runs and train each in a worker (one job per run)."""
        body = _drop_none({"count": count, "train_steps": train_steps, "train_tokens": train_tokens,
                           "preset": preset, **options})
        return self._call("POST", f"/v1/projects/{project_id}/swarms", SwarmAccepted, json=body)

    # -- online re-mixing --------------------------------------------------------------------
    def create_online_session(self, project_id: int, algorithm: str, **options: Any) -> OnlineSession:
        return self._call("POST", f"/v1/projects/{project_id}/online-sessions", OnlineSession,
                          json={"algorithm": algorithm, **options})

    def page_online_sessions(self, project_id: int) -> Page[OnlineSession]:
        return self._call("GET", f"/v1/projects/{project_id}/online-sessions", (Page, OnlineSession))

    def get_online_session(self, project_id: int, session_id: int) -> OnlineSession:
        return self._call("GET", f"/v1/projects/{project_id}/online-sessions/{session_id}", OnlineSession)

    def update_online_session(self, project_id: int, session_id: int, **fields: Any) -> OnlineSession:
        """``status`` (active, paused, stopped) or ``schedule``."""
        return self._call("PATCH", f"/v1/projects/{project_id}/online-sessions/{session_id}", OnlineSession,
                          json=fields)

    def report(self, project_id: int, session_id: int, observations: Sequence[Json]) -> Json:
        """Report per-domain losses: [{step, tokens, train_losses: {...}, eval_losses: {...}}]."""
        return self._call("POST", f"/v1/projects/{project_id}/online-sessions/{session_id}/observations",
                          json={"observations": list(observations)})

    def session_history(self, project_id: int, session_id: int) -> Json:
        return self._call("GET", f"/v1/projects/{project_id}/online-sessions/{session_id}/history")

    def remix(self, project_id: int, session_id: int) -> JobAccepted:
        """Re-mix now instead of waiting for the schedule (a job)."""
        return self._call("POST", f"/v1/projects/{project_id}/online-sessions/{session_id}/remix", JobAccepted)

    # -- validation trainings ------------------------------------------------------------------
    def validate(self, project_id: int, mixtures: Sequence[Json], *, train_steps: int = 300,
                 seeds: Sequence[int] = (0, 1, 2), preset: str = "tiny", **options: Any) -> Json:
        """Train each mixture with the same seeds and compare them, paired (202 + job).

        ``mixtures``: ``{"recommendation_id": 3}``, ``{"baseline": "natural"}`` or
        ``{"mixture": {...}, "label": "mine"}``; ``options``: batch_size, block_size,
        eval_interval, learning_rate, n_layer, n_head, n_embd, queue.
        """
        body = {"mixtures": list(mixtures), "train_steps": train_steps, "seeds": list(seeds), "preset": preset,
                **options}
        return self._call("POST", f"/v1/projects/{project_id}/validations", json=body)

    def page_validations(self, project_id: int, *, offset: int = 0, limit: int = 100) -> Json:
        return self._call("GET", f"/v1/projects/{project_id}/validations", params={"offset": offset, "limit": limit})

    def get_validation(self, project_id: int, validation_id: int) -> Json:
        return self._call("GET", f"/v1/projects/{project_id}/validations/{validation_id}")


def _export_path(project_id: int, rec_id: int | None, baseline: str | None, session_id: int | None,
                 format: str, weights: str, part: str | None) -> tuple[str, Json]:
    if sum(x is not None for x in (rec_id, baseline, session_id)) != 1:
        raise ValueError("give exactly one of rec_id, baseline or session_id")
    params: Json = {"format": format}
    if part:
        params["part"] = part
    if rec_id is not None:
        return f"/v1/projects/{project_id}/recommendations/{rec_id}/export", params
    if baseline is not None:
        return f"/v1/projects/{project_id}/baselines/{quote(baseline, safe='')}/export", params
    return f"/v1/projects/{project_id}/online-sessions/{session_id}/export", params | {"weights": weights}


def _export_name(r: httpx.Response, format: str) -> str:
    disposition = r.headers.get("content-disposition", "")
    name = disposition.split('filename="', 1)[1].rstrip('"') if 'filename="' in disposition else f"mixture-{format}"
    return Path(name).name


def _trust(fit: Fit | None) -> float:
    """How far to trust a fit: its cross-validated Spearman (pooled), -inf when unknown."""
    fid = (fit.fidelity or {}) if fit is not None else {}
    pooled = fid.get("pooled", fid) if isinstance(fid, dict) else {}
    value = pooled.get("spearman") if isinstance(pooled, dict) else None
    return float(value) if isinstance(value, int | float) else float("-inf")


def _pick_best(recs: list[Recommendation], fits: dict[int, Fit]) -> tuple[Recommendation, Fit | None] | None:
    if not recs:
        return None
    best = max(recs, key=lambda r: (_trust(fits.get(r.fit_id)) if r.fit_id else float("-inf"), r.id))
    return best, fits.get(best.fit_id) if best.fit_id else None


def _frame(runs: Iterable[Run]) -> Any:
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - depends on the install
        raise ImportError("runs_frame needs pandas: pip install 'mixopt[pandas]'") from None
    rows = []
    for r in runs:
        row = {"id": r.id, "name": r.name, "status": r.status, "origin": r.origin, "tags": ",".join(r.tags),
               "model_params": r.model_params, "train_tokens": r.train_tokens, "train_steps": r.train_steps,
               "seed": r.seed}
        row.update({f"mixture.{k}": v for k, v in r.mixture.items()})
        row.update({f"metrics.{k}": v for k, v in r.metrics.items()})
        rows.append(row)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame = frame.set_index("id")
        mix = [c for c in frame.columns if c.startswith("mixture.")]
        frame[mix] = frame[mix].fillna(0.0)  # an omitted domain has weight 0
    return frame


class MixoptClient(_Endpoints):
    """Synchronous client. ``url``/``token`` default to ``MIXOPT_URL``/``MIXOPT_TOKEN``."""

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 120.0,
                 transport: httpx.BaseTransport | None = None):
        self.url = (url or os.environ.get("MIXOPT_URL") or DEFAULT_URL).rstrip("/")
        self.token = token or os.environ.get("MIXOPT_TOKEN")
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> MixoptClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing --------------------------------------------------------------------------
    def _send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            r = self._http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise ConnectionFailed(self.url, str(exc) or type(exc).__name__) from exc
        if r.status_code >= 400:
            raise _error(r)
        return r

    _request = _send  # the old name

    def _call(self, method: str, path: str, model: Any = None, **kw: Any) -> Any:
        return _parse(self._send(method, path, **kw), model)

    def _pages(self, fetch: Callable[[int], Page], page_size: int) -> Iterator[Any]:
        offset = 0
        while True:
            page = fetch(offset)
            yield from page.data
            offset += len(page.data)
            if not page.data or offset >= page.count:
                return

    # -- every page of every list -------------------------------------------------------------
    def iter_projects(self, *, page_size: int = 100) -> Iterator[Project]:
        return self._pages(lambda o: self.page_projects(offset=o, limit=page_size), page_size)

    def list_projects(self) -> list[Project]:
        return list(self.iter_projects())

    def iter_runs(self, project_id: int, *, page_size: int = 1000, **filters: Any) -> Iterator[Run]:
        """Every run matching the filters, page after page (cursor pagination)."""
        cursor = None
        while True:
            page = self.page_runs(project_id, cursor=cursor, limit=page_size, **filters)
            yield from page.data
            cursor = page.next_cursor
            if not cursor:
                return

    def iter_fits(self, project_id: int, *, page_size: int = 100) -> Iterator[Fit]:
        return self._pages(lambda o: self.page_fits(project_id, offset=o, limit=page_size), page_size)

    def list_fits(self, project_id: int) -> list[Fit]:
        return list(self.iter_fits(project_id))

    def iter_recommendations(self, project_id: int, *, page_size: int = 100) -> Iterator[Recommendation]:
        return self._pages(lambda o: self.page_recommendations(project_id, offset=o, limit=page_size), page_size)

    def list_recommendations(self, project_id: int) -> list[Recommendation]:
        return list(self.iter_recommendations(project_id))

    def iter_jobs(self, *, project_id: int | None = None, state: str | None = None,
                  page_size: int = 100) -> Iterator[Job]:
        return self._pages(lambda o: self.page_jobs(project_id=project_id, state=state, offset=o, limit=page_size),
                           page_size)

    def list_jobs(self, project_id: int | None = None, state: str | None = None) -> list[Job]:
        return list(self.iter_jobs(project_id=project_id, state=state))

    def list_online_sessions(self, project_id: int) -> list[OnlineSession]:
        return self.page_online_sessions(project_id).data

    def list_tokens(self) -> list[Token]:
        return self._call("GET", "/v1/tokens", (Page, Token)).data

    def list_validations(self, project_id: int) -> list[Json]:
        out, offset = [], 0
        while True:
            page = self.page_validations(project_id, offset=offset)
            out.extend(page["data"])
            offset += len(page["data"])
            if not page["data"] or offset >= page.get("count", 0):
                return out

    # -- workflow helpers ------------------------------------------------------------------
    def get_or_create_project(self, name: str, domains: Sequence[str | Json] = (), **options: Any) -> Project:
        """The project named ``name`` if this token sees one (its domains must match, when
        given), else a new one: running a script twice does not make two projects."""
        for p in self.iter_projects():
            if p.name == name:
                return _check_existing(p, domains)
        try:
            return self.create_project(name, domains, **options)
        except MixoptError as exc:
            if exc.status != 409:
                raise
            found = next((p for p in self.iter_projects() if p.name == name), None)  # created meanwhile
            if found is None:
                raise
            return _check_existing(found, domains)

    def add_runs(self, project_id: int, runs: Sequence[Json], *, normalize: bool = False, chunk_size: int = 10_000,
                 idempotency_key: str | None = None, progress: Callable[[int], None] | None = None) -> list[int]:
        """Add runs in batches; each batch carries an idempotency key so a retry is safe."""
        base = idempotency_key or uuid.uuid4().hex
        ids: list[int] = []
        for i in range(0, len(runs), chunk_size):
            chunk = list(runs[i:i + chunk_size])
            body = self._post_with_retry(f"/v1/projects/{project_id}/runs", {"runs": chunk},
                                         {"Idempotency-Key": f"{base}-{i // chunk_size}"}, {"normalize": normalize})
            ids.extend(body["ids"])
            if progress is not None:
                progress(len(chunk))
        return ids

    def _post_with_retry(self, path: str, body: Json, headers: dict, params: dict, attempts: int = 3) -> Any:
        for attempt in range(attempts):
            try:
                return self._call("POST", path, json=body, headers=headers, params=params)
            except MixoptError as exc:
                retryable = isinstance(exc, ConnectionFailed) or exc.status in (502, 503, 504)
                if not retryable or attempt == attempts - 1:
                    raise
                time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")

    def import_runs(self, project_id: int, mixtures: str | Path, metrics: str | Path, *, format: str = "auto",
                    normalize: bool = True, on_duplicate: str = "error", tags: Sequence[str] = (),
                    model_params: int | None = None, train_tokens: int | None = None,
                    train_steps: int | None = None, on_unmatched: str = "skip") -> Json:
        """Import a (mixtures, metrics) CSV pair at one scale; the duplicate key is the row id
        with the scale, runs in one file only are reported in ``unmatched`` and skipped."""
        data: Json = {"format": format, "normalize": str(normalize).lower(), "on_duplicate": on_duplicate,
                      "on_unmatched": on_unmatched, "tags": ",".join(tags)}
        params = _drop_none({"model_params": model_params, "train_tokens": train_tokens, "train_steps": train_steps})
        with open(mixtures, "rb") as fm, open(metrics, "rb") as ft:
            files = {"mixtures": (Path(mixtures).name, fm, "text/csv"), "metrics": (Path(metrics).name, ft, "text/csv")}
            return self._call("POST", f"/v1/projects/{project_id}/runs/import", files=files, data=data,
                              params=params)

    def export_mixture(self, project_id: int, rec_id: int | None = None, *, format: str = "json",
                       baseline: str | None = None, session_id: int | None = None, weights: str = "current",
                       part: str | None = None) -> tuple[str, bytes]:
        """A recommendation (``rec_id``), a baseline (``baseline``) or an online session's weights
        (``session_id``, ``weights`` = current, final or trajectory) as the file a trainer loads:
        ``(file name, bytes)``; multi-file formats (olmo-core, megatron) are a zip unless ``part``
        names one file. Formats: json, olmo-core, megatron, hf, levanter, regmix, olmix."""
        path, params = _export_path(project_id, rec_id, baseline, session_id, format, weights, part)
        r = self._send("GET", path, params=params)
        return _export_name(r, format), r.content

    def weights(self, project_id: int, session_id: int, *, step: int | None = None,
                etag: str | None = None) -> tuple[Weights | None, str | None]:
        """Current weights and their ETag; (None, etag) when unchanged since ``etag``."""
        headers = {"If-None-Match": etag} if etag else {}
        params = {"step": step} if step is not None else {}
        r = self._send("GET", f"/v1/projects/{project_id}/online-sessions/{session_id}/weights", headers=headers,
                       params=params)
        if r.status_code == 304:
            return None, etag
        return Weights.model_validate(r.json()), r.headers.get("ETag")

    def wait(self, job: str | Job | JobAccepted, *, timeout: float = 600.0, poll: float = 0.5,
             progress: ProgressCallback | None = None) -> Job:
        """Poll a job until it ends and return it; :class:`JobFailed` (with ``reason``) if it
        failed or was cancelled, :class:`JobTimeout` if it did not end in ``timeout`` seconds.
        ``progress(job)`` is called at every poll (``job.progress`` in [0, 1], ``job.message``)."""
        job_id = _job_id(job)
        deadline = time.monotonic() + timeout
        while True:
            current = self.get_job(job_id)
            if progress is not None:
                progress(current)
            if current.state in FINAL_STATES:
                if current.state != "succeeded":
                    raise JobFailed(current)
                return current
            if time.monotonic() > deadline:
                raise JobTimeout(current, timeout)
            time.sleep(poll)

    def wait_job(self, job_id: str, *, timeout: float = 600.0, poll: float = 0.5,
                 on_progress: ProgressCallback | None = None) -> Job:
        """The old name of :meth:`wait`."""
        return self.wait(job_id, timeout=timeout, poll=poll, progress=on_progress)

    def best(self, project_id: int) -> tuple[Recommendation, Fit | None] | None:
        """The recommendation to trust most: the one whose fit has the highest cross-validated
        Spearman (newest on ties), with that fit; None when the project has none."""
        recs = self.list_recommendations(project_id)
        fits = {f.id: f for f in self.iter_fits(project_id)}
        return _pick_best(recs, fits)

    def runs_frame(self, project_id: int, **filters: Any) -> Any:
        """The project's runs as a pandas DataFrame indexed by run id: ``mixture.<domain>``,
        ``metrics.<name>``, scale, seed, status, tags (``pip install 'mixopt[pandas]'``)."""
        return _frame(self.iter_runs(project_id, **filters))


class AsyncClient(_Endpoints):
    """The same API with ``httpx.AsyncClient``: every method is a coroutine, ``iter_*`` are
    async iterators. ``async with AsyncClient(url, token) as c: p = await c.get_project(1)``."""

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 120.0,
                 transport: httpx.AsyncBaseTransport | None = None):
        self.url = (url or os.environ.get("MIXOPT_URL") or DEFAULT_URL).rstrip("/")
        self.token = token or os.environ.get("MIXOPT_TOKEN")
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self._http = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            r = await self._http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise ConnectionFailed(self.url, str(exc) or type(exc).__name__) from exc
        if r.status_code >= 400:
            raise _error(r)
        return r

    async def _call(self, method: str, path: str, model: Any = None, **kw: Any) -> Any:
        return _parse(await self._send(method, path, **kw), model)

    async def _pages(self, fetch: Callable[[int], Any]) -> AsyncIterator[Any]:
        offset = 0
        while True:
            page = await fetch(offset)
            for item in page.data:
                yield item
            offset += len(page.data)
            if not page.data or offset >= page.count:
                return

    def iter_projects(self, *, page_size: int = 100) -> AsyncIterator[Project]:
        return self._pages(lambda o: self.page_projects(offset=o, limit=page_size))

    async def list_projects(self) -> list[Project]:
        return [p async for p in self.iter_projects()]

    async def iter_runs(self, project_id: int, *, page_size: int = 1000, **filters: Any) -> AsyncIterator[Run]:
        cursor = None
        while True:
            page = await self.page_runs(project_id, cursor=cursor, limit=page_size, **filters)
            for run in page.data:
                yield run
            cursor = page.next_cursor
            if not cursor:
                return

    def iter_fits(self, project_id: int, *, page_size: int = 100) -> AsyncIterator[Fit]:
        return self._pages(lambda o: self.page_fits(project_id, offset=o, limit=page_size))

    async def list_fits(self, project_id: int) -> list[Fit]:
        return [f async for f in self.iter_fits(project_id)]

    def iter_recommendations(self, project_id: int, *, page_size: int = 100) -> AsyncIterator[Recommendation]:
        return self._pages(lambda o: self.page_recommendations(project_id, offset=o, limit=page_size))

    async def list_recommendations(self, project_id: int) -> list[Recommendation]:
        return [r async for r in self.iter_recommendations(project_id)]

    def iter_jobs(self, *, project_id: int | None = None, state: str | None = None,
                  page_size: int = 100) -> AsyncIterator[Job]:
        return self._pages(lambda o: self.page_jobs(project_id=project_id, state=state, offset=o, limit=page_size))

    async def list_jobs(self, project_id: int | None = None, state: str | None = None) -> list[Job]:
        return [j async for j in self.iter_jobs(project_id=project_id, state=state)]

    async def list_online_sessions(self, project_id: int) -> list[OnlineSession]:
        return (await self.page_online_sessions(project_id)).data

    async def list_tokens(self) -> list[Token]:
        return (await self._call("GET", "/v1/tokens", (Page, Token))).data

    async def list_validations(self, project_id: int) -> list[Json]:
        return (await self.page_validations(project_id, limit=1000))["data"]

    async def weights(self, project_id: int, session_id: int, *, step: int | None = None,
                      etag: str | None = None) -> tuple[Weights | None, str | None]:
        headers = {"If-None-Match": etag} if etag else {}
        params = {"step": step} if step is not None else {}
        r = await self._send("GET", f"/v1/projects/{project_id}/online-sessions/{session_id}/weights",
                             headers=headers, params=params)
        if r.status_code == 304:
            return None, etag
        return Weights.model_validate(r.json()), r.headers.get("ETag")

    async def get_or_create_project(self, name: str, domains: Sequence[str | Json] = (), **options: Any) -> Project:
        async for p in self.iter_projects():
            if p.name == name:
                return _check_existing(p, domains)
        return await self.create_project(name, domains, **options)

    async def add_runs(self, project_id: int, runs: Sequence[Json], *, normalize: bool = False,
                       chunk_size: int = 10_000, idempotency_key: str | None = None) -> list[int]:
        base = idempotency_key or uuid.uuid4().hex
        ids: list[int] = []
        for i in range(0, len(runs), chunk_size):
            body = await self._call("POST", f"/v1/projects/{project_id}/runs", json={"runs": list(runs[i:i + chunk_size])},
                                    headers={"Idempotency-Key": f"{base}-{i // chunk_size}"},
                                    params={"normalize": normalize})
            ids.extend(body["ids"])
        return ids

    async def import_runs(self, project_id: int, mixtures: str | Path, metrics: str | Path, *, format: str = "auto",
                          normalize: bool = True, on_duplicate: str = "error", tags: Sequence[str] = (),
                          model_params: int | None = None, train_tokens: int | None = None,
                          train_steps: int | None = None, on_unmatched: str = "skip") -> Json:
        data: Json = {"format": format, "normalize": str(normalize).lower(), "on_duplicate": on_duplicate,
                      "on_unmatched": on_unmatched, "tags": ",".join(tags)}
        params = _drop_none({"model_params": model_params, "train_tokens": train_tokens, "train_steps": train_steps})
        files = {"mixtures": (Path(mixtures).name, Path(mixtures).read_bytes(), "text/csv"),
                 "metrics": (Path(metrics).name, Path(metrics).read_bytes(), "text/csv")}
        return await self._call("POST", f"/v1/projects/{project_id}/runs/import", files=files, data=data,
                                params=params)

    async def export_mixture(self, project_id: int, rec_id: int | None = None, *, format: str = "json",
                             baseline: str | None = None, session_id: int | None = None, weights: str = "current",
                             part: str | None = None) -> tuple[str, bytes]:
        path, params = _export_path(project_id, rec_id, baseline, session_id, format, weights, part)
        r = await self._send("GET", path, params=params)
        return _export_name(r, format), r.content

    async def wait(self, job: str | Job | JobAccepted, *, timeout: float = 600.0, poll: float = 0.5,
                   progress: ProgressCallback | None = None) -> Job:
        job_id = _job_id(job)
        deadline = time.monotonic() + timeout
        while True:
            current = await self.get_job(job_id)
            if progress is not None:
                progress(current)
            if current.state in FINAL_STATES:
                if current.state != "succeeded":
                    raise JobFailed(current)
                return current
            if time.monotonic() > deadline:
                raise JobTimeout(current, timeout)
            await asyncio.sleep(poll)

    async def best(self, project_id: int) -> tuple[Recommendation, Fit | None] | None:
        recs = await self.list_recommendations(project_id)
        fits = {f.id: f for f in await self.list_fits(project_id)}
        return _pick_best(recs, fits)

    async def runs_frame(self, project_id: int, **filters: Any) -> Any:
        return _frame([r async for r in self.iter_runs(project_id, **filters)])
