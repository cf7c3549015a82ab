"""Python client for the mixopt HTTP API (httpx), typed with :mod:`mixopt.api_types`.

>>> from mixopt.client import MixoptClient
>>> c = MixoptClient("http://127.0.0.1:8000", token="mxo_...")   # or MIXOPT_URL / MIXOPT_TOKEN
>>> p = c.get_or_create_project("pile", domains=["web", "code", "math"])
>>> c.add_runs(p.id, [{"mixture": {"web": 0.5, "code": 0.5}, "metrics": {"val/web": 3.2}}])
>>> job = c.wait(c.fit(p.id, estimator="auto"))        # raises JobFailed with the reason
>>> rec_job = c.wait(c.recommend(p.id, fit_id=job.result["fit_id"]))
>>> rec = c.get_recommendation(p.id, rec_job.result["recommendation_id"])
>>> df = c.runs_frame(p.id)                            # pandas (pip install 'mixopt[pandas]')

Every method returns a pydantic model (``Project``, ``Run``, ``Fit``, ``Recommendation``,
``Job``, ...; they also answer ``obj["field"]``). ``page_*`` methods return one page,
``iter_*`` walk every page, ``list_*`` return every item. ``AsyncClient`` has the same methods
as coroutines (``iter_*`` are async iterators).

One implementation, two shells: every method builds a *flow*, a generator that yields
:class:`Request` (and :class:`Sleep`) steps and receives each answer, already parsed, or the
:class:`MixoptError` it raised. Request building, paging, retries, the 409 race of
``get_or_create_project`` and error mapping live in the flows; :class:`MixoptClient` and
:class:`AsyncClient` only perform the steps (``httpx.Client`` or ``httpx.AsyncClient``), so
the two cannot drift (``tests/client/test_parity.py``).

Errors are exceptions: :class:`MixoptError` (``status``, ``field``, ``message``, ``errors``) for
an error answer, :class:`ConnectionFailed` when the server cannot be reached, :class:`JobFailed`
(``job``, ``reason``) and :class:`JobTimeout` from :meth:`MixoptClient.wait`.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import (
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
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
T = TypeVar("T")
#: ``progress(job)`` is called at every poll of :meth:`MixoptClient.wait`
ProgressCallback = Callable[[Job], None]
#: answers worth sending an idempotent request again for
RETRY_STATUSES = (502, 503, 504)

__all__ = [
    "AsyncClient",
    "ConnectionFailed",
    "JobFailed",
    "JobTimeout",
    "MixoptClient",
    "MixoptError",
    "Request",
    "Sleep",
]

#: the client method of each API operation whose name differs from the operationId (every other
#: operationId is a method of both clients; tests/api/test_contract.py checks it for all of them)
OPERATIONS = {
    "healthz": "health",
    "readyz": "ready",
    "create_runs": "add_runs",
    "add_curve": "add_curve_points",
    "create_fit": "fit",
    "create_recommendation": "recommend",
    "create_suggestions": "suggest",
    "ingest_domains": "ingest",
    "create_validation": "validate",
    "create_session": "create_online_session",
    "list_sessions": "list_online_sessions",
    "get_session": "get_online_session",
    "update_session": "update_online_session",
    "add_observations": "report",
    "get_weights": "weights",
    "get_history": "session_history",
    "remix_now": "remix",
    "export_recommendation": "export_mixture",
    "export_baseline": "export_mixture",
    "export_online_session": "export_mixture",
    "list_estimators": "estimators",
    "list_domain_sets": "domain_sets",
}


# -- errors ------------------------------------------------------------------------------------
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
    """A job ended ``failed`` (or ``cancelled``): ``job`` is its last state, ``reason`` its
    error."""

    def __init__(self, job: Job):
        self.job = job
        self.reason = job.error or (
            f"the job was {job.state}" if job.state != "failed" else "no reason given"
        )
        super().__init__(None, f"job {job.id} ({job.kind}) {job.state}: {self.reason}")


class JobTimeout(TimeoutError):
    """A job still not ended after ``timeout`` seconds of :meth:`MixoptClient.wait`."""

    def __init__(self, job: Job, timeout: float):
        self.job = job
        super().__init__(f"job {job.id} ({job.kind}) still {job.state} after {timeout:g} s")


# -- the sans-I/O core: steps, answers, flows -------------------------------------------------
#: ``Request.model``: hand back the ``httpx.Response`` itself (headers, 304, file names)
RAW = "raw"


@dataclass(frozen=True)
class Request:
    """One HTTP request of a flow; ``model`` says how to read a successful answer: None (JSON or
    nothing), ``bytes``, ``str``, :data:`RAW`, a model class, or ``(Page, item model)``."""

    method: str
    path: str
    model: Any = None
    params: Json | None = None
    json: Any = None
    headers: dict[str, str] | None = None
    files: Any = None
    data: Json | None = None
    #: a raw request body (an expert's ``.npy`` probabilities)
    content: bytes | None = None

    def httpx_kwargs(self) -> Json:
        """The keyword arguments of ``httpx.Client.request`` (those that are set)."""
        kw = {
            "params": self.params,
            "json": self.json,
            "headers": self.headers,
            "files": self.files,
            "data": self.data,
            "content": self.content,
        }
        return {k: v for k, v in kw.items() if v is not None}


@dataclass(frozen=True)
class Sleep:
    """Wait ``seconds`` before the next step (a retry's back-off, a job poll)."""

    seconds: float


@dataclass(frozen=True)
class _Item:
    """One item of a list being walked (yielded by paging flows to ``iter_*``)."""

    value: Any


#: a flow yields steps, receives each answer (or has the MixoptError thrown in), returns a value
Flow = Generator[Request | Sleep | _Item, Any, T]


def error_from(r: httpx.Response) -> MixoptError:
    """The :class:`MixoptError` of an error answer (``ErrorBody``, or any text)."""
    try:
        body = r.json()
        detail, errors = body.get("detail", r.text), body.get("errors", [])
    except (ValueError, AttributeError):
        detail, errors = r.text or r.reason_phrase, []
    return MixoptError(r.status_code, str(detail), errors if isinstance(errors, list) else [])


def connection_failed(url: str, exc: Exception) -> ConnectionFailed:
    """The :class:`ConnectionFailed` of a transport error."""
    return ConnectionFailed(url, str(exc) or type(exc).__name__)


def interpret(r: httpx.Response, model: Any) -> Any:
    """A successful answer read as ``model`` (see :class:`Request`); an error answer raised."""
    if r.status_code >= 400:
        raise error_from(r)
    if model == RAW:
        return r
    if model is None:
        return r.json() if r.content else None
    if model is bytes:
        return r.content
    if model is str:
        return r.text
    if isinstance(model, tuple):  # (Page, item model)
        return Page[model[1]].model_validate(r.json())
    return model.model_validate(r.json())


def _one(request: Request) -> Flow[Any]:
    return (yield request)


def _page_parts(page: Any) -> tuple[list, int]:
    """(items, total count) of a page model or a page dict."""
    return list(page["data"]), int(page.get("count", 0) or 0)


def _offset_pages(request: Callable[[int], Request]) -> Flow[None]:
    """Every item of an offset-paged list: pages until ``count`` items came (or an empty one)."""
    offset = 0
    while True:
        data, count = _page_parts((yield request(offset)))
        for item in data:
            yield _Item(item)
        offset += len(data)
        if not data or offset >= count:
            return


def _cursor_pages(request: Callable[[str | None], Request]) -> Flow[None]:
    """Every item of a cursor-paged list (runs): pages until there is no ``next_cursor``."""
    cursor = None
    while True:
        page = yield request(cursor)
        for item in page.data:
            yield _Item(item)
        cursor = page.next_cursor
        if not cursor:
            return


def _collect(items: Flow[None]) -> Flow[list]:
    """A paging flow's items as one list."""
    out: list = []
    try:
        step = next(items)
        while True:
            if isinstance(step, _Item):
                out.append(step.value)
                step = next(items)
            else:
                step = items.send((yield step))
    except StopIteration:
        return out


def _first(items: Flow[None], match: Callable[[Any], bool]) -> Flow[Any]:
    """The first item of a paging flow that ``match`` accepts (later pages are not fetched)."""
    try:
        step = next(items)
        while True:
            if isinstance(step, _Item):
                if match(step.value):
                    items.close()
                    return step.value
                step = next(items)
            else:
                step = items.send((yield step))
    except StopIteration:
        return None


def _retried(request: Request, attempts: int, backoff: float) -> Flow[Any]:
    """``request`` sent again (after ``backoff``, doubling) when the server could not be
    reached or answered 502/503/504; only for idempotent requests."""
    for attempt in range(attempts):
        try:
            return (yield request)
        except MixoptError as exc:
            retryable = isinstance(exc, ConnectionFailed) or exc.status in RETRY_STATUSES
            if not retryable or attempt == attempts - 1:
                raise
        yield Sleep(backoff * 2**attempt)
    raise AssertionError("unreachable")


def _drop_none(d: Json) -> Json:
    return {k: v for k, v in d.items() if v is not None}


def _project_body(
    name: str,
    domains: Sequence[str | Json],
    *,
    objective: dict[str, float] | None = None,
    constraints: Json | None = None,
    description: str | None = None,
) -> Json:
    return _drop_none(
        {
            "name": name,
            "domains": [d if isinstance(d, dict) else {"name": d} for d in domains],
            "objective": objective,
            "constraints": constraints,
            "description": description,
        }
    )


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
        raise MixoptError(
            409,
            f"project {project.name!r} (id {project.id}) exists with domains "
            f"{project.domain_names}, not {wanted}",
            [{"field": "domains", "message": f"the existing project has {project.domain_names}"}],
        )
    return project


def _export_request(
    project_id: int,
    rec_id: int | None,
    baseline: str | None,
    session_id: int | None,
    format: str,
    weights: str,
    part: str | None,
) -> Request:
    if sum(x is not None for x in (rec_id, baseline, session_id)) != 1:
        raise ValueError("give exactly one of rec_id, baseline or session_id")
    params: Json = {"format": format}
    if part:
        params["part"] = part
    base = f"/v1/projects/{project_id}"
    if rec_id is not None:
        return Request("GET", f"{base}/recommendations/{rec_id}/export", RAW, params=params)
    if baseline is not None:
        return Request(
            "GET", f"{base}/baselines/{quote(baseline, safe='')}/export", RAW, params=params
        )
    return Request(
        "GET",
        f"{base}/online-sessions/{session_id}/export",
        RAW,
        params=params | {"weights": weights},
    )


@dataclass(frozen=True)
class ExportedFile:
    """An export as a trainer loads it: its file name, its bytes, and ``notes``: what the trainer
    will not enforce (the ``X-Mixopt-Notes`` header, e.g. Megatron's epoch caps; "" for most
    formats; the whole text is in the export's notes file when it has one)."""

    name: str
    content: bytes
    notes: str = ""


def _export_name(r: httpx.Response, format: str) -> str:
    disposition = r.headers.get("content-disposition", "")
    name = (
        disposition.split('filename="', 1)[1].rstrip('"')
        if 'filename="' in disposition
        else f"mixture-{format}"
    )
    return Path(name).name


def _trust(fit: Fit | None) -> float:
    """How far to trust a fit: its cross-validated Spearman (pooled), -inf when unknown."""
    fid = (fit.fidelity or {}) if fit is not None else {}
    pooled = fid.get("pooled", fid) if isinstance(fid, dict) else {}
    value = pooled.get("spearman") if isinstance(pooled, dict) else None
    return float(value) if isinstance(value, int | float) else float("-inf")


def _pick_best(
    recs: list[Recommendation], fits: dict[int, Fit]
) -> tuple[Recommendation, Fit | None] | None:
    if not recs:
        return None
    best = max(
        recs, key=lambda r: (_trust(fits.get(r.fit_id)) if r.fit_id else float("-inf"), r.id)
    )
    return best, fits.get(best.fit_id) if best.fit_id else None


def _frame(runs: Iterable[Run]) -> Any:
    try:
        import pandas as pd  # type: ignore[import-untyped]  # optional: mixopt[pandas]
    except ImportError:  # pragma: no cover - depends on the install
        raise ImportError("runs_frame needs pandas: pip install 'mixopt[pandas]'") from None
    rows = []
    for r in runs:
        row: Json = {
            "id": r.id,
            "name": r.name,
            "status": r.status,
            "origin": r.origin,
            "tags": ",".join(r.tags),
            "model_params": r.model_params,
            "train_tokens": r.train_tokens,
            "train_steps": r.train_steps,
            "seed": r.seed,
        }
        row.update({f"mixture.{k}": v for k, v in r.mixture.items()})
        row.update({f"metrics.{k}": v for k, v in r.metrics.items()})
        rows.append(row)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame = frame.set_index("id")
        mix = [c for c in frame.columns if c.startswith("mixture.")]
        frame[mix] = frame[mix].fillna(0.0)  # an omitted domain has weight 0
    return frame


def _pandas(what: str) -> Any:
    try:
        import pandas as pd  # type: ignore[import-untyped]  # optional: mixopt[pandas]
    except ImportError:  # pragma: no cover - depends on the install
        raise ImportError(f"{what} needs pandas: pip install 'mixopt[pandas]'") from None
    return pd


def _fits_frame(fits: Iterable[Fit]) -> Any:
    """Fits as a DataFrame indexed by fit id: labels, estimator, status, scale, trust and the
    pooled cross-validated fidelity (``fidelity.<statistic>``)."""
    pd = _pandas("fits_frame")
    rows = []
    for f in fits:
        row: Json = {
            "id": f.id,
            "name": f.name,
            "tags": ",".join(f.tags),
            "estimator": f.estimator,
            "status": f.status,
            "runs": len(f.run_ids),
            "trusted": f.get("trusted"),
            "created_at": f.created_at,
            "finished_at": f.finished_at,
            "error": f.error,
        }
        row.update({f"scale.{k}": v for k, v in (f.get("scale") or {}).items()})
        pooled = (f.fidelity or {}).get("pooled") or {}
        row.update({f"fidelity.{k}": v for k, v in pooled.items() if isinstance(v, int | float)})
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame.set_index("id") if not frame.empty else frame


def _recommendations_frame(recs: Iterable[Recommendation]) -> Any:
    """Recommendations as a DataFrame indexed by recommendation id: labels, source fit, the
    predicted objective with its interval, and ``mixture.<domain>``."""
    pd = _pandas("recommendations_frame")
    rows = []
    for r in recs:
        row: Json = {
            "id": r.id,
            "name": r.name,
            "tags": ",".join(r.tags),
            "fit_id": r.fit_id,
            "source": r.source,
            "predicted": r.predicted,
            "interval_low": r.interval_low,
            "interval_high": r.interval_high,
            "binding": ",".join(r.binding),
            "created_at": r.created_at,
        }
        row.update({f"mixture.{k}": v for k, v in r.mixture.items()})
        rows.append(row)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame = frame.set_index("id")
        mix = [c for c in frame.columns if c.startswith("mixture.")]
        frame[mix] = frame[mix].fillna(0.0)
    return frame


class _Endpoints:
    """Every method of the API, written once as flows. ``_run`` performs a flow (synchronously
    in :class:`MixoptClient`, as a coroutine in :class:`AsyncClient`); ``_iterate`` walks a
    paging flow (an iterator, or an async iterator)."""

    #: first back-off of a retried request, in seconds (doubled at each attempt)
    backoff: float = 0.5
    #: tries of an idempotent request before its error is raised
    attempts: int = 3

    def _run(self, flow: Flow[Any]) -> Any:  # pragma: no cover - each client has one
        raise NotImplementedError

    def _iterate(self, flow: Flow[None]) -> Any:  # pragma: no cover - each client has one
        raise NotImplementedError

    def _call(self, method: str, path: str, model: Any = None, **kw: Any) -> Any:
        return self._run(_one(Request(method, path, model, **kw)))

    # -- health and tokens -----------------------------------------------------------------
    def health(self) -> Json:
        return self._call("GET", "/healthz")

    def ready(self) -> Json:
        return self._call("GET", "/readyz")

    def whoami(self) -> Token:
        return self._call("GET", "/v1/tokens/me", Token)

    def create_token(
        self, name: str, role: str = "write", project_ids: Sequence[int] = ()
    ) -> Token:
        """An API token (admin only); the plain token is in ``.token``, in this answer only."""
        return self._call(
            "POST",
            "/v1/tokens",
            Token,
            json={"name": name, "role": role, "project_ids": list(project_ids)},
        )

    def revoke_token(self, token_id: int) -> Token:
        return self._call("DELETE", f"/v1/tokens/{token_id}", Token)

    def list_tokens(self) -> list[Token]:
        return self._run(_data(Request("GET", "/v1/tokens", (Page, Token))))

    def estimators(self) -> Page[str]:
        """Registered estimator names (``.data``)."""
        return self._call("GET", "/v1/estimators", (Page, str))

    # -- projects --------------------------------------------------------------------------
    def create_project(
        self,
        name: str,
        domains: Sequence[str | Json] = (),
        *,
        objective: dict[str, float] | None = None,
        constraints: Json | None = None,
        description: str | None = None,
    ) -> Project:
        """``domains``: names, or ``{"name", "token_count", "source": {"path": ...}}``."""
        return self._call(
            "POST",
            "/v1/projects",
            Project,
            json=_project_body(
                name, domains, objective=objective, constraints=constraints, description=description
            ),
        )

    def page_projects(self, *, offset: int = 0, limit: int = 100) -> Page[Project]:
        return self._call(
            "GET", "/v1/projects", (Page, Project), params={"offset": offset, "limit": limit}
        )

    def _projects(self, page_size: int = 100) -> Flow[None]:
        return _offset_pages(
            lambda o: Request(
                "GET", "/v1/projects", (Page, Project), params={"offset": o, "limit": page_size}
            )
        )

    def iter_projects(self, *, page_size: int = 100) -> Iterator[Project]:
        """Every project this token sees, page after page."""
        return self._iterate(self._projects(page_size))

    def list_projects(self) -> list[Project]:
        return self._run(_collect(self._projects()))

    def get_project(self, project_id: int) -> Project:
        return self._call("GET", f"/v1/projects/{project_id}", Project)

    def update_project(self, project_id: int, **fields: Any) -> Project:
        return self._call("PATCH", f"/v1/projects/{project_id}", Project, json=fields)

    def delete_project(self, project_id: int) -> None:
        return self._call("DELETE", f"/v1/projects/{project_id}")

    def get_or_create_project(
        self, name: str, domains: Sequence[str | Json] = (), **options: Any
    ) -> Project:
        """The project named ``name`` if this token sees one (its domains must match, when
        given), else a new one: running a script twice does not make two projects; a 409
        because another client created it meanwhile returns that project."""
        return self._run(self._get_or_create(name, domains, options))

    def _get_or_create(
        self, name: str, domains: Sequence[str | Json], options: Json
    ) -> Flow[Project]:
        found = yield from _first(self._projects(), lambda p: p.name == name)
        if found is not None:
            return _check_existing(found, domains)
        create = Request(
            "POST", "/v1/projects", Project, json=_project_body(name, domains, **options)
        )
        try:
            return (yield create)
        except MixoptError as exc:
            if exc.status != 409:
                raise
            conflict = exc
        found = yield from _first(self._projects(), lambda p: p.name == name)  # created meanwhile
        if found is None:
            raise conflict
        return _check_existing(found, domains)

    def change_domains(
        self,
        project_id: int,
        *,
        add: Sequence[str | Json] = (),
        remove: Sequence[str] = (),
        split: Mapping[str, Sequence[str | Json]] | None = None,
        merge: Mapping[str, Sequence[str]] | None = None,
        base_version: int | None = None,
    ) -> DomainSet:
        """Add, remove, split (``{"web": ["web_news", "web_blog"]}``) or merge (``{"books":
        ["pg19", "books3"]}``) domains: a new version of the domain set (returned). Runs keep
        theirs; fits map them into the new set where valid. ``base_version``: 409 if another
        change came first."""
        body = _drop_none(
            {
                "add": [{"name": d} if isinstance(d, str) else d for d in add],
                "remove": list(remove),
                "split": {k: list(v) for k, v in (split or {}).items()},
                "merge": {k: list(v) for k, v in (merge or {}).items()},
                "base_version": base_version,
            }
        )
        return self._call("POST", f"/v1/projects/{project_id}/domain-changes", DomainSet, json=body)

    def domain_sets(self, project_id: int) -> DomainSets:
        """Every version of the project's domain set, with what changed and each domain's life."""
        return self._call("GET", f"/v1/projects/{project_id}/domain-sets", DomainSets)

    # -- runs ------------------------------------------------------------------------------
    def add_run(
        self,
        project_id: int,
        mixture: dict[str, float],
        metrics: dict[str, float] | None = None,
        *,
        normalize: bool = False,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> Run:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._call(
            "POST",
            f"/v1/projects/{project_id}/runs",
            Run,
            json={"mixture": mixture, "metrics": metrics or {}, **fields},
            headers=headers,
            params={"normalize": normalize},
        )

    def add_runs(
        self,
        project_id: int,
        runs: Sequence[Json],
        *,
        normalize: bool = False,
        chunk_size: int = 10_000,
        idempotency_key: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[int]:
        """Add runs in batches; each batch carries an idempotency key, so it is sent again
        (up to ``attempts`` times) when the server cannot be reached or answers 502-504."""
        return self._run(
            self._add_runs(
                project_id,
                runs,
                normalize,
                chunk_size,
                idempotency_key or uuid.uuid4().hex,
                progress,
            )
        )

    def _add_runs(
        self,
        project_id: int,
        runs: Sequence[Json],
        normalize: bool,
        chunk_size: int,
        key: str,
        progress: Callable[[int], None] | None,
    ) -> Flow[list[int]]:
        ids: list[int] = []
        for i in range(0, len(runs), chunk_size):
            chunk = list(runs[i : i + chunk_size])
            request = Request(
                "POST",
                f"/v1/projects/{project_id}/runs",
                json={"runs": chunk},
                headers={"Idempotency-Key": f"{key}-{i // chunk_size}"},
                params={"normalize": normalize},
            )
            body = yield from _retried(request, self.attempts, self.backoff)
            ids.extend(body["ids"])
            if progress is not None:
                progress(len(chunk))
        return ids

    def page_runs(
        self, project_id: int, *, cursor: str | None = None, limit: int = 100, **filters: Any
    ) -> Page[Run]:
        """One page (``next_cursor`` leads to the next); filters: status, tag, origin,
        model_params, train_tokens, train_steps, ``order_by`` (``id``, ``created_at`` or
        ``metric:NAME``, ``-`` first for descending), ``metric`` (only runs reporting it) with
        ``metric_min`` / ``metric_max``."""
        return self._run(_one(_runs_request(project_id, cursor, limit, filters)))

    def _runs(self, project_id: int, page_size: int, filters: Json) -> Flow[None]:
        return _cursor_pages(lambda c: _runs_request(project_id, c, page_size, filters))

    def iter_runs(self, project_id: int, *, page_size: int = 1000, **filters: Any) -> Iterator[Run]:
        """Every run matching the filters, page after page (cursor pagination)."""
        return self._iterate(self._runs(project_id, page_size, filters))

    def list_runs(self, project_id: int, *, page_size: int = 1000, **filters: Any) -> list[Run]:
        """Every run matching the filters (all pages; :meth:`page_runs` for one page)."""
        return self._run(_collect(self._runs(project_id, page_size, filters)))

    def runs_frame(self, project_id: int, **filters: Any) -> Any:
        """The project's runs as a pandas DataFrame indexed by run id: ``mixture.<domain>``,
        ``metrics.<name>``, scale, seed, status, tags (``pip install 'mixopt[pandas]'``)."""
        return self._run(_framed(self._runs(project_id, 1000, filters)))

    def get_run(self, project_id: int, run_id: int) -> Run:
        return self._call("GET", f"/v1/projects/{project_id}/runs/{run_id}", Run)

    def update_run(self, project_id: int, run_id: int, **fields: Any) -> Run:
        """Report the results of a planned run (``metrics``, ``status``) or fix its labels."""
        return self._call("PATCH", f"/v1/projects/{project_id}/runs/{run_id}", Run, json=fields)

    def delete_run(self, project_id: int, run_id: int) -> None:
        return self._call("DELETE", f"/v1/projects/{project_id}/runs/{run_id}")

    def add_curve_points(self, project_id: int, run_id: int, points: Iterable[Json]) -> Json:
        """Loss-curve points ``[{step, tokens, metrics}]``; re-sending a step changes nothing."""
        return self._call(
            "POST", f"/v1/projects/{project_id}/runs/{run_id}/curve", json={"points": list(points)}
        )

    def get_curve(self, project_id: int, run_id: int) -> Json:
        return self._call("GET", f"/v1/projects/{project_id}/runs/{run_id}/curve")

    def import_runs(
        self,
        project_id: int,
        mixtures: str | Path,
        metrics: str | Path,
        *,
        format: str = "auto",
        normalize: bool = True,
        on_duplicate: str = "error",
        tags: Sequence[str] = (),
        model_params: int | None = None,
        train_tokens: int | None = None,
        train_steps: int | None = None,
        on_unmatched: str = "skip",
    ) -> Json:
        """Import a (mixtures, metrics) CSV pair at one scale; the duplicate key is the row id
        with the scale, runs in one file only are reported in ``unmatched`` and skipped."""
        data: Json = {
            "format": format,
            "normalize": str(normalize).lower(),
            "on_duplicate": on_duplicate,
            "on_unmatched": on_unmatched,
            "tags": ",".join(tags),
        }
        params = _drop_none(
            {"model_params": model_params, "train_tokens": train_tokens, "train_steps": train_steps}
        )
        files = {
            "mixtures": (Path(mixtures).name, Path(mixtures).read_bytes(), "text/csv"),
            "metrics": (Path(metrics).name, Path(metrics).read_bytes(), "text/csv"),
        }
        return self._call(
            "POST", f"/v1/projects/{project_id}/runs/import", files=files, data=data, params=params
        )

    def import_runs_json(self, project_id: int, document: Json) -> Json:
        """Import a JSON export (:meth:`export_runs` with ``format="json"``) as it is."""
        return self._call("POST", f"/v1/projects/{project_id}/runs/import/json", json=document)

    def export_runs(
        self,
        project_id: int,
        *,
        format: str = "json",
        layout: str = "regmix",
        part: str | None = None,
        status: str | None = "succeeded",
    ) -> Any:
        """JSON (a dict), one CSV (``part`` = mixtures or metrics: text) or a zip of both
        (bytes)."""
        params = _drop_none({"format": format, "layout": layout, "part": part, "status": status})
        model = None if format == "json" else (str if part else bytes)
        return self._call("GET", f"/v1/projects/{project_id}/runs/export", model, params=params)

    # -- jobs ------------------------------------------------------------------------------
    def get_job(self, job_id: str) -> Job:
        return self._call("GET", f"/v1/jobs/{job_id}", Job)

    def page_jobs(
        self,
        *,
        project_id: int | None = None,
        state: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> Page[Job]:
        """``state``: queued (= pending), running, succeeded, failed, cancelled."""
        return self._run(_one(_jobs_request(project_id, state, offset, limit)))

    def iter_jobs(
        self, *, project_id: int | None = None, state: str | None = None, page_size: int = 100
    ) -> Iterator[Job]:
        return self._iterate(
            _offset_pages(lambda o: _jobs_request(project_id, state, o, page_size))
        )

    def list_jobs(self, project_id: int | None = None, state: str | None = None) -> list[Job]:
        return self._run(
            _collect(_offset_pages(lambda o: _jobs_request(project_id, state, o, 100)))
        )

    def cancel_job(self, job_id: str) -> Job:
        return self._call("POST", f"/v1/jobs/{job_id}/cancel", Job)

    def wait(
        self,
        job: str | Job | JobAccepted,
        *,
        timeout: float = 600.0,
        poll: float = 0.5,
        progress: ProgressCallback | None = None,
    ) -> Job:
        """Poll a job until it ends and return it; :class:`JobFailed` (with ``reason``) if it
        failed or was cancelled, :class:`JobTimeout` if it did not end in ``timeout`` seconds.
        ``progress(job)`` is called at every poll (``job.progress`` in [0, 1],
        ``job.message``)."""
        return self._run(_wait(_job_id(job), timeout, poll, progress))

    # -- fits, predictions, recommendations, suggestions -------------------------------------
    def fit(
        self,
        project_id: int,
        estimator: str = "auto",
        *,
        params: Json | None = None,
        target: dict[str, float] | None = None,
        run_filter: Json | None = None,
        cv_folds: int = 5,
        random_state: int | None = None,
        target_scale: Json | None = None,
        domain_versions: str | None = None,
        name: str | None = None,
        tags: Sequence[str] | None = None,
    ) -> JobAccepted:
        """Fit in a worker: the job to :meth:`wait` for, and the fit row (``.fit``).
        ``target_scale`` (``{model_params, train_steps | train_tokens}``): answer at that scale
        through the scaling laws. ``domain_versions``: ``"compatible"`` (default: runs of older
        domain sets mapped in where valid) or ``"current"`` (only runs on the current set).
        ``name`` and ``tags`` label the fit (:meth:`list_fits` filters by tag)."""
        body = _drop_none(
            {
                "estimator": estimator,
                "params": params or {},
                "cv_folds": cv_folds,
                "target": target,
                "run_filter": run_filter,
                "random_state": random_state,
                "target_scale": target_scale,
                "domain_versions": domain_versions,
                "name": name,
                "tags": list(tags) if tags is not None else None,
            }
        )
        return self._call("POST", f"/v1/projects/{project_id}/fits", JobAccepted, json=body)

    def page_fits(
        self, project_id: int, *, offset: int = 0, limit: int = 100, tag: str | None = None
    ) -> Page[Fit]:
        """One page of the project's fits, newest first (only those tagged ``tag``)."""
        return self._run(_one(_fits_request(project_id, offset, limit, tag)))

    def iter_fits(
        self, project_id: int, *, page_size: int = 100, tag: str | None = None
    ) -> Iterator[Fit]:
        return self._iterate(_offset_pages(lambda o: _fits_request(project_id, o, page_size, tag)))

    def list_fits(self, project_id: int, *, tag: str | None = None) -> list[Fit]:
        """Every fit of the project, newest first (only those tagged ``tag``)."""
        return self._run(_collect(_offset_pages(lambda o: _fits_request(project_id, o, 100, tag))))

    def fits_frame(self, project_id: int, *, tag: str | None = None) -> Any:
        """The project's fits as a pandas DataFrame indexed by fit id: name, tags, estimator,
        status, runs, trusted, ``scale.<key>`` and the pooled CV ``fidelity.<statistic>``
        (``pip install 'mixopt[pandas]'``)."""
        pages = _offset_pages(lambda o: _fits_request(project_id, o, 100, tag))
        return self._run(_then(_collect(pages), _fits_frame))

    def get_fit(self, project_id: int, fit_id: int) -> Fit:
        return self._call("GET", f"/v1/projects/{project_id}/fits/{fit_id}", Fit)

    def update_fit(self, project_id: int, fit_id: int, **fields: Any) -> Fit:
        """Change a fit's ``name`` (None clears it) and ``tags`` (replaced as a whole)."""
        return self._call("PATCH", f"/v1/projects/{project_id}/fits/{fit_id}", Fit, json=fields)

    def delete_fit(self, project_id: int, fit_id: int) -> None:
        """Delete a finished fit (409 while its job runs); its recommendations stay, with
        ``fit_id`` None."""
        return self._call("DELETE", f"/v1/projects/{project_id}/fits/{fit_id}")

    def predict(
        self,
        project_id: int,
        fit_id: int,
        mixtures: Sequence[dict[str, float]],
        normalize: bool = False,
        target_scale: Json | None = None,
    ) -> Json:
        """Predicted losses for mixtures from a stored fit (synchronous), with the ``scale``
        they are for and the ``chain`` of laws that produced them."""
        return self._call(
            "POST",
            f"/v1/projects/{project_id}/fits/{fit_id}/predict",
            json=_drop_none(
                {"mixtures": list(mixtures), "normalize": normalize, "target_scale": target_scale}
            ),
        )

    def recommend(
        self,
        project_id: int,
        *,
        fit_id: int | None = None,
        estimator: str | None = None,
        constraints: Json | None = None,
        target_scale: Json | None = None,
        n_boot: int = 20,
        params: Json | None = None,
        **options: Any,
    ) -> JobAccepted:
        """Recommend a mixture in a worker (from ``fit_id``, or fitting ``estimator`` first);
        the job's ``result["recommendation_id"]`` names the recommendation. ``options``: any
        other field of the request (``allow_untrusted``, ``trust_region``, ...)."""
        body = _drop_none(
            {
                "n_boot": n_boot,
                "fit_id": fit_id,
                "estimator": estimator,
                "constraints": constraints,
                "target_scale": target_scale,
                "params": params,
                **options,
            }
        )
        return self._call(
            "POST", f"/v1/projects/{project_id}/recommendations", JobAccepted, json=body
        )

    def page_recommendations(
        self, project_id: int, *, offset: int = 0, limit: int = 100, tag: str | None = None
    ) -> Page[Recommendation]:
        """One page of the project's recommendations, newest first (only those tagged ``tag``)."""
        return self._run(_one(_recommendations_request(project_id, offset, limit, tag)))

    def iter_recommendations(
        self, project_id: int, *, page_size: int = 100, tag: str | None = None
    ) -> Iterator[Recommendation]:
        return self._iterate(
            _offset_pages(lambda o: _recommendations_request(project_id, o, page_size, tag))
        )

    def list_recommendations(
        self, project_id: int, *, tag: str | None = None
    ) -> list[Recommendation]:
        """Every recommendation of the project, newest first (only those tagged ``tag``)."""
        return self._run(
            _collect(_offset_pages(lambda o: _recommendations_request(project_id, o, 100, tag)))
        )

    def recommendations_frame(self, project_id: int, *, tag: str | None = None) -> Any:
        """The project's recommendations as a pandas DataFrame indexed by id: name, tags,
        fit_id, source, predicted objective and interval, ``mixture.<domain>``
        (``pip install 'mixopt[pandas]'``)."""
        pages = _offset_pages(lambda o: _recommendations_request(project_id, o, 100, tag))
        return self._run(_then(_collect(pages), _recommendations_frame))

    def get_recommendation(self, project_id: int, rec_id: int) -> Recommendation:
        return self._call(
            "GET", f"/v1/projects/{project_id}/recommendations/{rec_id}", Recommendation
        )

    def update_recommendation(self, project_id: int, rec_id: int, **fields: Any) -> Recommendation:
        """Change a recommendation's ``name`` (None clears it) and ``tags`` (replaced)."""
        return self._call(
            "PATCH",
            f"/v1/projects/{project_id}/recommendations/{rec_id}",
            Recommendation,
            json=fields,
        )

    def delete_recommendation(self, project_id: int, rec_id: int) -> None:
        return self._call("DELETE", f"/v1/projects/{project_id}/recommendations/{rec_id}")

    def best(self, project_id: int) -> tuple[Recommendation, Fit | None] | None:
        """The recommendation to trust most: the one whose fit has the highest cross-validated
        Spearman (newest on ties), with that fit; None when the project has none."""
        return self._run(_best(project_id))

    def baselines(self, project_id: int) -> Json:
        return self._call("GET", f"/v1/projects/{project_id}/baselines")

    def export_mixture(
        self,
        project_id: int,
        rec_id: int | None = None,
        *,
        format: str = "json",
        baseline: str | None = None,
        session_id: int | None = None,
        weights: str = "current",
        part: str | None = None,
    ) -> tuple[str, bytes]:
        """A recommendation (``rec_id``), a baseline (``baseline``) or an online session's
        weights (``session_id``, ``weights`` = current, final or trajectory) as the file a
        trainer loads: ``(file name, bytes)``; multi-file formats (olmo-core, megatron) are a
        zip unless ``part`` names one file. Formats: json, olmo-core, megatron, hf, levanter,
        regmix, olmix."""
        request = _export_request(project_id, rec_id, baseline, session_id, format, weights, part)
        return self._run(_exported_pair(request, format))

    def export_mixture_file(
        self,
        project_id: int,
        rec_id: int | None = None,
        *,
        format: str = "json",
        baseline: str | None = None,
        session_id: int | None = None,
        weights: str = "current",
        part: str | None = None,
    ) -> ExportedFile:
        """:meth:`export_mixture` with the export's notes (what the trainer will not enforce,
        e.g. Megatron's epoch caps) as an :class:`ExportedFile`."""
        request = _export_request(project_id, rec_id, baseline, session_id, format, weights, part)
        return self._run(_exported(request, format))

    def suggest(self, project_id: int, count: int | None = None, **options: Any) -> JobAccepted:
        """Planned runs proposed by a worker (RegMix swarm first, then expected improvement);
        ``strategy="reuse"`` may leave ``count`` out (olmix-sized default, in the result)."""
        return self._call(
            "POST",
            f"/v1/projects/{project_id}/suggestions",
            JobAccepted,
            json=_drop_none({"count": count, **options}),
        )

    # -- training: ingestion and swarms ------------------------------------------------------
    def ingest(self, project_id: int) -> JobAccepted:
        """Tokenise every domain's data source and record measured token counts (a job)."""
        return self._call("POST", f"/v1/projects/{project_id}/domains/ingest", JobAccepted)

    def create_swarm(
        self,
        project_id: int,
        count: int | None = None,
        *,
        train_steps: int | None = None,
        train_tokens: int | None = None,
        preset: str = "tiny",
        **options: Any,
    ) -> SwarmAccepted:
        """Design ``count`` proxy runs and train each in a worker (one job per run).

        ``strategy="rounds", total_budget=N, round_size=M`` (no count) spends N runs in rounds:
        the answer's ``run_ids``/``jobs`` are round 1's and ``rounds_job`` plans the others (its
        ``params["rounds"]``: each round's runs and best predicted mixture with its interval)."""
        body = _drop_none(
            {
                "count": count,
                "train_steps": train_steps,
                "train_tokens": train_tokens,
                "preset": preset,
                **options,
            }
        )
        return self._call("POST", f"/v1/projects/{project_id}/swarms", SwarmAccepted, json=body)

    # -- experts (Mixture of Data Experts) -------------------------------------------------------
    def train_experts(
        self,
        project_id: int,
        *,
        train_steps: int | None = None,
        train_tokens: int | None = None,
        swarm: str | None = None,
        domains: Sequence[str] | None = None,
        **options: Any,
    ) -> Json:
        """Train one expert per domain (or per ``domains``) in one job on the workers, with the
        settings of the swarm tagged ``swarm`` or the given budget; ``options``: preset, seed,
        batch_size, block_size, eval_interval, learning_rate, replace, queue. Returns
        ``{"experts", "job", "job_url"}`` (202)."""
        body = _drop_none(
            {
                "train_steps": train_steps,
                "train_tokens": train_tokens,
                "swarm": swarm,
                "domains": list(domains) if domains is not None else None,
                **options,
            }
        )
        return self._call("POST", f"/v1/projects/{project_id}/experts", json=body)

    def list_experts(self, project_id: int) -> Json:
        """The experts' table: ``{"data": [expert], "count", "domains"}``; each expert has its
        ``losses`` on every validation domain."""
        return self._call("GET", f"/v1/projects/{project_id}/experts")

    def get_expert(self, project_id: int, domain: str) -> Json:
        return self._call("GET", f"/v1/projects/{project_id}/experts/{quote(domain, safe='')}")

    def delete_expert(self, project_id: int, domain: str) -> None:
        self._call("DELETE", f"/v1/projects/{project_id}/experts/{quote(domain, safe='')}")

    def upload_expert_probs(
        self,
        project_id: int,
        domain: str,
        val_domain: str,
        probs: Any,
        *,
        block_size: int | None = None,
        n_windows: int | None = None,
    ) -> Json:
        """Upload an externally trained expert's probability of every observed next token of
        ``val_domain`` (``mixopt.training.experts.next_token_probs``' positions): a 1-D float16
        or float32 array, or the bytes of a ``.npy`` file. ``block_size`` / ``n_windows``: the
        evaluation windows (default 128 x 64)."""
        if isinstance(probs, (bytes, bytearray)):
            content = bytes(probs)
        else:
            import io

            import numpy as np

            buf = io.BytesIO()
            np.save(buf, np.asarray(probs), allow_pickle=False)
            content = buf.getvalue()
        path = (
            f"/v1/projects/{project_id}/experts/{quote(domain, safe='')}"
            f"/probs/{quote(val_domain, safe='')}"
        )
        return self._call(
            "PUT",
            path,
            content=content,
            headers={"Content-Type": "application/octet-stream"},
            params=_drop_none({"block_size": block_size, "n_windows": n_windows}) or None,
        )

    # -- online re-mixing --------------------------------------------------------------------
    def create_online_session(
        self, project_id: int, algorithm: str, **options: Any
    ) -> OnlineSession:
        return self._call(
            "POST",
            f"/v1/projects/{project_id}/online-sessions",
            OnlineSession,
            json={"algorithm": algorithm, **options},
        )

    def page_online_sessions(self, project_id: int) -> Page[OnlineSession]:
        return self._call(
            "GET", f"/v1/projects/{project_id}/online-sessions", (Page, OnlineSession)
        )

    def list_online_sessions(self, project_id: int) -> list[OnlineSession]:
        return self._run(
            _data(
                Request("GET", f"/v1/projects/{project_id}/online-sessions", (Page, OnlineSession))
            )
        )

    def get_online_session(self, project_id: int, session_id: int) -> OnlineSession:
        return self._call(
            "GET", f"/v1/projects/{project_id}/online-sessions/{session_id}", OnlineSession
        )

    def update_online_session(
        self, project_id: int, session_id: int, **fields: Any
    ) -> OnlineSession:
        """``status`` (active, paused, stopped) or ``schedule``."""
        return self._call(
            "PATCH",
            f"/v1/projects/{project_id}/online-sessions/{session_id}",
            OnlineSession,
            json=fields,
        )

    def report(self, project_id: int, session_id: int, observations: Sequence[Json]) -> Json:
        """Report per-domain losses: [{step, tokens, train_losses: {...}, eval_losses: {...}}]."""
        return self._call(
            "POST",
            f"/v1/projects/{project_id}/online-sessions/{session_id}/observations",
            json={"observations": list(observations)},
        )

    def weights(
        self, project_id: int, session_id: int, *, step: int | None = None, etag: str | None = None
    ) -> tuple[Weights | None, str | None]:
        """Current weights and their ETag; (None, etag) when unchanged since ``etag``."""
        request = Request(
            "GET",
            f"/v1/projects/{project_id}/online-sessions/{session_id}/weights",
            RAW,
            headers={"If-None-Match": etag} if etag else {},
            params={"step": step} if step is not None else {},
        )
        return self._run(_weights(request, etag))

    def session_history(self, project_id: int, session_id: int) -> Json:
        return self._call("GET", f"/v1/projects/{project_id}/online-sessions/{session_id}/history")

    def remix(self, project_id: int, session_id: int) -> JobAccepted:
        """Re-mix now instead of waiting for the schedule (a job)."""
        return self._call(
            "POST", f"/v1/projects/{project_id}/online-sessions/{session_id}/remix", JobAccepted
        )

    # -- validation trainings ------------------------------------------------------------------
    def validate(
        self,
        project_id: int,
        mixtures: Sequence[Json],
        *,
        train_steps: int = 300,
        seeds: Sequence[int] = (0, 1, 2),
        preset: str = "tiny",
        **options: Any,
    ) -> Json:
        """Train each mixture with the same seeds and compare them, paired (202 + job).

        ``mixtures``: ``{"recommendation_id": 3}``, ``{"baseline": "natural"}`` or
        ``{"mixture": {...}, "label": "mine"}``; ``options``: batch_size, block_size,
        eval_interval, learning_rate, n_layer, n_head, n_embd, queue.
        """
        body = {
            "mixtures": list(mixtures),
            "train_steps": train_steps,
            "seeds": list(seeds),
            "preset": preset,
            **options,
        }
        return self._call("POST", f"/v1/projects/{project_id}/validations", json=body)

    def page_validations(self, project_id: int, *, offset: int = 0, limit: int = 100) -> Json:
        return self._run(_one(_validations_request(project_id, offset, limit)))

    def list_validations(self, project_id: int) -> list[Json]:
        return self._run(
            _collect(_offset_pages(lambda o: _validations_request(project_id, o, 100)))
        )

    def get_validation(self, project_id: int, validation_id: int) -> Json:
        return self._call("GET", f"/v1/projects/{project_id}/validations/{validation_id}")


# -- the requests of the paged lists, and the flows of the helpers ------------------------------
def _runs_request(project_id: int, cursor: str | None, limit: int, filters: Json) -> Request:
    return Request(
        "GET",
        f"/v1/projects/{project_id}/runs",
        (Page, Run),
        params=_drop_none({"limit": limit, "cursor": cursor, **filters}),
    )


def _jobs_request(project_id: int | None, state: str | None, offset: int, limit: int) -> Request:
    return Request(
        "GET",
        "/v1/jobs",
        (Page, Job),
        params=_drop_none(
            {"project_id": project_id, "state": state, "offset": offset, "limit": limit}
        ),
    )


def _fits_request(project_id: int, offset: int, limit: int, tag: str | None = None) -> Request:
    return Request(
        "GET",
        f"/v1/projects/{project_id}/fits",
        (Page, Fit),
        params=_drop_none({"offset": offset, "limit": limit, "tag": tag}),
    )


def _recommendations_request(
    project_id: int, offset: int, limit: int, tag: str | None = None
) -> Request:
    return Request(
        "GET",
        f"/v1/projects/{project_id}/recommendations",
        (Page, Recommendation),
        params=_drop_none({"offset": offset, "limit": limit, "tag": tag}),
    )


def _validations_request(project_id: int, offset: int, limit: int) -> Request:
    return Request(
        "GET", f"/v1/projects/{project_id}/validations", params={"offset": offset, "limit": limit}
    )


def _data(request: Request) -> Flow[list]:
    """The items of a list answered in one page."""
    return (yield request).data


def _then(flow: Flow[Any], fn: Callable[[Any], Any]) -> Flow[Any]:
    """``fn`` of what ``flow`` returns (a list collected from pages, as a DataFrame)."""
    return fn((yield from flow))


def _framed(runs: Flow[None]) -> Flow[Any]:
    return _frame((yield from _collect(runs)))


def _wait(job_id: str, timeout: float, poll: float, progress: ProgressCallback | None) -> Flow[Job]:
    deadline = time.monotonic() + timeout
    while True:
        current = yield Request("GET", f"/v1/jobs/{job_id}", Job)
        if progress is not None:
            progress(current)
        if current.state in FINAL_STATES:
            if current.state != "succeeded":
                raise JobFailed(current)
            return current
        if time.monotonic() > deadline:
            raise JobTimeout(current, timeout)
        yield Sleep(poll)


def _best(project_id: int) -> Flow[tuple[Recommendation, Fit | None] | None]:
    recs = yield from _collect(
        _offset_pages(lambda o: _recommendations_request(project_id, o, 100))
    )
    fits = yield from _collect(_offset_pages(lambda o: _fits_request(project_id, o, 100)))
    return _pick_best(recs, {f.id: f for f in fits})


def _exported(request: Request, format: str) -> Flow[ExportedFile]:
    r = yield request
    return ExportedFile(_export_name(r, format), r.content, r.headers.get("X-Mixopt-Notes", ""))


def _exported_pair(request: Request, format: str) -> Flow[tuple[str, bytes]]:
    f = yield from _exported(request, format)
    return f.name, f.content


def _weights(request: Request, etag: str | None) -> Flow[tuple[Weights | None, str | None]]:
    r = yield request
    if r.status_code == 304:
        return None, etag
    return Weights.model_validate(r.json()), r.headers.get("ETag")


# -- the two shells: they only perform the steps ------------------------------------------------
def _base(url: str | None, token: str | None) -> tuple[str, str | None, dict[str, str]]:
    url = (url or os.environ.get("MIXOPT_URL") or DEFAULT_URL).rstrip("/")
    token = token or os.environ.get("MIXOPT_TOKEN")
    return url, token, {"Authorization": f"Bearer {token}"} if token else {}


class MixoptClient(_Endpoints):
    """Synchronous client. ``url``/``token`` default to ``MIXOPT_URL``/``MIXOPT_TOKEN``;
    ``backoff``: the first wait, in seconds, before an idempotent request is sent again."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 120.0,
        transport: httpx.BaseTransport | None = None,
        backoff: float = 0.5,
    ):
        self.url, self.token, headers = _base(url, token)
        self.backoff = backoff
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> MixoptClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _perform(self, request: Request) -> Any:
        try:
            r = self._http.request(request.method, request.path, **request.httpx_kwargs())
        except httpx.TransportError as exc:
            raise connection_failed(self.url, exc) from exc
        return interpret(r, request.model)

    def _steps(self, flow: Flow[Any]) -> Generator[Any, None, Any]:
        """Perform a flow's steps; yields its items, returns its value."""
        sent: Any = None
        error: MixoptError | None = None
        while True:
            try:
                step = flow.send(sent) if error is None else flow.throw(error)
            except StopIteration as stop:
                return stop.value
            sent, error = None, None
            if isinstance(step, _Item):
                yield step.value
            elif isinstance(step, Sleep):
                time.sleep(step.seconds)
            else:
                try:
                    sent = self._perform(step)
                except MixoptError as exc:
                    error = exc

    def _run(self, flow: Flow[T]) -> T:
        steps = self._steps(flow)
        try:
            while True:
                next(steps)
        except StopIteration as stop:
            return stop.value

    def _iterate(self, flow: Flow[None]) -> Iterator[Any]:
        return self._steps(flow)


class AsyncClient(_Endpoints):
    """The same API with ``httpx.AsyncClient``: every method returns a coroutine, ``iter_*``
    are async iterators. ``async with AsyncClient(url, token) as c: p = await c.get_project(1)``.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 120.0,
        transport: httpx.AsyncBaseTransport | None = None,
        backoff: float = 0.5,
    ):
        self.url, self.token, headers = _base(url, token)
        self.backoff = backoff
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _perform(self, request: Request) -> Any:
        try:
            r = await self._http.request(request.method, request.path, **request.httpx_kwargs())
        except httpx.TransportError as exc:
            raise connection_failed(self.url, exc) from exc
        return interpret(r, request.model)

    async def _step(self, step: Request | Sleep) -> tuple[Any, MixoptError | None]:
        """Perform one step: (answer, None) or (None, the error to throw into the flow)."""
        if isinstance(step, Sleep):
            await asyncio.sleep(step.seconds)
            return None, None
        try:
            return await self._perform(step), None
        except MixoptError as exc:
            return None, exc

    async def _run(self, flow: Flow[T]) -> T:
        sent, error = None, None
        while True:
            try:
                step = flow.send(sent) if error is None else flow.throw(error)
            except StopIteration as stop:
                return stop.value
            sent, error = (None, None) if isinstance(step, _Item) else await self._step(step)

    async def _iterate(self, flow: Flow[None]) -> AsyncIterator[Any]:
        sent, error = None, None
        while True:
            try:
                step = flow.send(sent) if error is None else flow.throw(error)
            except StopIteration:
                return
            if isinstance(step, _Item):
                sent, error = None, None
                yield step.value
            else:
                sent, error = await self._step(step)
