"""Python client for the mixopt HTTP API (httpx).

>>> from mixopt.client import MixoptClient
>>> c = MixoptClient("http://127.0.0.1:8000", token="mxo_...")   # or MIXOPT_URL / MIXOPT_TOKEN
>>> p = c.create_project("pile", domains=["web", "code", "math"])
>>> c.add_runs(p["id"], [{"mixture": {"web": 0.5, "code": 0.5}, "metrics": {"val/web": 3.2}}])
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
Json = dict[str, Any]


class MixoptError(RuntimeError):
    """An error answer from the API: ``status`` and the server's ``detail`` message."""

    def __init__(self, status: int, detail: str, errors: list | None = None):
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail
        self.errors = errors or []


class MixoptClient:
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
    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        r = self._http.request(method, path, **kw)
        if r.status_code >= 400:
            try:
                body = r.json()
                detail, errors = body.get("detail", r.text), body.get("errors", [])
            except ValueError:
                detail, errors = r.text, []
            raise MixoptError(r.status_code, str(detail), errors)
        return r

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        r = self._request(method, path, **kw)
        return r.json() if r.content else None

    # -- health and tokens -----------------------------------------------------------------
    def health(self) -> Json:
        return self._json("GET", "/healthz")

    def whoami(self) -> Json:
        return self._json("GET", "/v1/tokens/me")

    def create_token(self, name: str, role: str = "write", project_ids: Sequence[int] = ()) -> Json:
        return self._json("POST", "/v1/tokens", json={"name": name, "role": role, "project_ids": list(project_ids)})

    def list_tokens(self) -> list[Json]:
        return self._json("GET", "/v1/tokens")["data"]

    def revoke_token(self, token_id: int) -> Json:
        return self._json("DELETE", f"/v1/tokens/{token_id}")

    # -- projects --------------------------------------------------------------------------
    def create_project(self, name: str, domains: Sequence[str | Json] = (), *, objective: dict[str, float] | None = None,
                       constraints: Json | None = None, description: str | None = None) -> Json:
        body: Json = {"name": name, "domains": [d if isinstance(d, dict) else {"name": d} for d in domains]}
        if objective is not None:
            body["objective"] = objective
        if constraints is not None:
            body["constraints"] = constraints
        if description is not None:
            body["description"] = description
        return self._json("POST", "/v1/projects", json=body)

    def list_projects(self) -> list[Json]:
        return self._json("GET", "/v1/projects", params={"limit": 1000})["data"]

    def get_project(self, project_id: int) -> Json:
        return self._json("GET", f"/v1/projects/{project_id}")

    def update_project(self, project_id: int, **fields: Any) -> Json:
        return self._json("PATCH", f"/v1/projects/{project_id}", json=fields)

    def delete_project(self, project_id: int) -> None:
        self._request("DELETE", f"/v1/projects/{project_id}")

    # -- runs ------------------------------------------------------------------------------
    def add_run(self, project_id: int, mixture: dict[str, float], metrics: dict[str, float] | None = None,
                *, normalize: bool = False, idempotency_key: str | None = None, **fields: Any) -> Json:
        body = {"mixture": mixture, "metrics": metrics or {}, **fields}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._json("POST", f"/v1/projects/{project_id}/runs", json=body, headers=headers,
                          params={"normalize": normalize})

    def add_runs(self, project_id: int, runs: Sequence[Json], *, normalize: bool = False, chunk_size: int = 10_000,
                 idempotency_key: str | None = None, progress: Any = None) -> list[int]:
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
                return self._json("POST", path, json=body, headers=headers, params=params)
            except (httpx.TransportError, MixoptError) as exc:
                retryable = isinstance(exc, httpx.TransportError) or exc.status in (502, 503, 504)
                if not retryable or attempt == attempts - 1:
                    raise
                time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")

    def list_runs(self, project_id: int, *, cursor: str | None = None, limit: int = 100, **filters: Any) -> Json:
        params = {"limit": limit, **{k: v for k, v in filters.items() if v is not None}}
        if cursor:
            params["cursor"] = cursor
        return self._json("GET", f"/v1/projects/{project_id}/runs", params=params)

    def iter_runs(self, project_id: int, *, page_size: int = 1000, **filters: Any) -> Iterator[Json]:
        cursor = None
        while True:
            page = self.list_runs(project_id, cursor=cursor, limit=page_size, **filters)
            yield from page["data"]
            cursor = page["next_cursor"]
            if not cursor:
                return

    def get_run(self, project_id: int, run_id: int) -> Json:
        return self._json("GET", f"/v1/projects/{project_id}/runs/{run_id}")

    def update_run(self, project_id: int, run_id: int, **fields: Any) -> Json:
        return self._json("PATCH", f"/v1/projects/{project_id}/runs/{run_id}", json=fields)

    def add_curve_points(self, project_id: int, run_id: int, points: Iterable[Json]) -> Json:
        return self._json("POST", f"/v1/projects/{project_id}/runs/{run_id}/curve", json={"points": list(points)})

    def import_runs(self, project_id: int, mixtures: str | Path, metrics: str | Path, *, format: str = "auto",
                    normalize: bool = True, on_duplicate: str = "error", tags: Sequence[str] = (),
                    model_params: int | None = None, train_tokens: int | None = None,
                    train_steps: int | None = None, on_unmatched: str = "skip") -> Json:
        """Import a (mixtures, metrics) CSV pair at one scale; the duplicate key is the row id
        with the scale, runs in one file only are reported in ``unmatched`` and skipped."""
        data: Json = {"format": format, "normalize": str(normalize).lower(), "on_duplicate": on_duplicate,
                      "on_unmatched": on_unmatched, "tags": ",".join(tags)}
        params = {k: v for k, v in (("model_params", model_params), ("train_tokens", train_tokens),
                                    ("train_steps", train_steps)) if v is not None}
        with open(mixtures, "rb") as fm, open(metrics, "rb") as ft:
            files = {"mixtures": (Path(mixtures).name, fm, "text/csv"), "metrics": (Path(metrics).name, ft, "text/csv")}
            return self._json("POST", f"/v1/projects/{project_id}/runs/import", files=files, data=data,
                              params=params)

    def export_mixture(self, project_id: int, rec_id: int | None = None, *, format: str = "json",
                       baseline: str | None = None, session_id: int | None = None, weights: str = "current",
                       part: str | None = None) -> tuple[str, bytes]:
        """A recommendation (``rec_id``), a baseline (``baseline``) or an online session's weights
        (``session_id``, ``weights`` = current, final or trajectory) as the file a trainer loads:
        ``(file name, bytes)``; multi-file formats (olmo-core, megatron) are a zip unless ``part``
        names one file. Formats: json, olmo-core, megatron, hf, levanter, regmix, olmix."""
        if sum(x is not None for x in (rec_id, baseline, session_id)) != 1:
            raise ValueError("give exactly one of rec_id, baseline or session_id")
        params: Json = {"format": format}
        if part:
            params["part"] = part
        if rec_id is not None:
            path = f"/v1/projects/{project_id}/recommendations/{rec_id}/export"
        elif baseline is not None:
            path = f"/v1/projects/{project_id}/baselines/{quote(baseline, safe='')}/export"
        else:
            path = f"/v1/projects/{project_id}/online-sessions/{session_id}/export"
            params["weights"] = weights
        r = self._request("GET", path, params=params)
        disposition = r.headers.get("content-disposition", "")
        name = disposition.split('filename="', 1)[1].rstrip('"') if 'filename="' in disposition else f"mixture-{format}"
        return Path(name).name, r.content

    def export_runs(self, project_id: int, *, format: str = "json", layout: str = "regmix",
                    part: str | None = None) -> Any:
        params = {"format": format, "layout": layout}
        if part:
            params["part"] = part
        r = self._request("GET", f"/v1/projects/{project_id}/runs/export", params=params)
        return r.json() if format == "json" else (r.text if part else r.content)

    # -- jobs ------------------------------------------------------------------------------
    def get_job(self, job_id: str) -> Json:
        return self._json("GET", f"/v1/jobs/{job_id}")

    def list_jobs(self, project_id: int | None = None, state: str | None = None) -> list[Json]:
        params = {k: v for k, v in (("project_id", project_id), ("state", state)) if v is not None}
        return self._json("GET", "/v1/jobs", params=params)["data"]

    def cancel_job(self, job_id: str) -> Json:
        return self._json("POST", f"/v1/jobs/{job_id}/cancel")

    def wait_job(self, job_id: str, *, timeout: float = 600.0, poll: float = 0.5, on_progress: Any = None) -> Json:
        """Poll a job until it ends; raises MixoptError if it failed, TimeoutError if it did not end."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get_job(job_id)
            if on_progress is not None:
                on_progress(job)
            if job["state"] in ("succeeded", "failed", "cancelled"):
                if job["state"] == "failed":
                    raise MixoptError(500, f"job {job_id} failed: {job['error']}")
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['state']} after {timeout} s")
            time.sleep(poll)

    # -- fits, predictions, recommendations, suggestions -------------------------------------
    def fit(self, project_id: int, estimator: str = "auto", *, params: Json | None = None,
            target: dict[str, float] | None = None, run_filter: Json | None = None, cv_folds: int = 5) -> Json:
        body: Json = {"estimator": estimator, "params": params or {}, "cv_folds": cv_folds}
        if target is not None:
            body["target"] = target
        if run_filter is not None:
            body["run_filter"] = run_filter
        return self._json("POST", f"/v1/projects/{project_id}/fits", json=body)

    def list_fits(self, project_id: int) -> list[Json]:
        return self._json("GET", f"/v1/projects/{project_id}/fits")["data"]

    def get_fit(self, project_id: int, fit_id: int) -> Json:
        return self._json("GET", f"/v1/projects/{project_id}/fits/{fit_id}")

    def predict(self, project_id: int, fit_id: int, mixtures: Sequence[dict[str, float]],
                normalize: bool = False) -> Json:
        return self._json("POST", f"/v1/projects/{project_id}/fits/{fit_id}/predict",
                          json={"mixtures": list(mixtures), "normalize": normalize})

    def recommend(self, project_id: int, *, fit_id: int | None = None, estimator: str | None = None,
                  constraints: Json | None = None, target_scale: Json | None = None, n_boot: int = 20) -> Json:
        body: Json = {"n_boot": n_boot}
        for k, v in (("fit_id", fit_id), ("estimator", estimator), ("constraints", constraints),
                     ("target_scale", target_scale)):
            if v is not None:
                body[k] = v
        return self._json("POST", f"/v1/projects/{project_id}/recommendations", json=body)

    def list_recommendations(self, project_id: int) -> list[Json]:
        return self._json("GET", f"/v1/projects/{project_id}/recommendations")["data"]

    def get_recommendation(self, project_id: int, rec_id: int) -> Json:
        return self._json("GET", f"/v1/projects/{project_id}/recommendations/{rec_id}")

    def baselines(self, project_id: int) -> Json:
        return self._json("GET", f"/v1/projects/{project_id}/baselines")

    def suggest(self, project_id: int, count: int, **options: Any) -> Json:
        return self._json("POST", f"/v1/projects/{project_id}/suggestions", json={"count": count, **options})

    # -- online re-mixing --------------------------------------------------------------------
    def create_online_session(self, project_id: int, algorithm: str, **options: Any) -> Json:
        return self._json("POST", f"/v1/projects/{project_id}/online-sessions", json={"algorithm": algorithm, **options})

    def report(self, project_id: int, session_id: int, observations: Sequence[Json]) -> Json:
        """Report per-domain losses: [{step, tokens, train_losses: {...}, eval_losses: {...}}]."""
        return self._json("POST", f"/v1/projects/{project_id}/online-sessions/{session_id}/observations",
                          json={"observations": list(observations)})

    def weights(self, project_id: int, session_id: int, *, step: int | None = None,
                etag: str | None = None) -> tuple[Json | None, str | None]:
        """Current weights and their ETag; (None, etag) when unchanged since ``etag``."""
        headers = {"If-None-Match": etag} if etag else {}
        params = {"step": step} if step is not None else {}
        r = self._http.get(f"/v1/projects/{project_id}/online-sessions/{session_id}/weights", headers=headers,
                           params=params)
        if r.status_code == 304:
            return None, etag
        if r.status_code >= 400:
            raise MixoptError(r.status_code, r.json().get("detail", r.text))
        return r.json(), r.headers.get("ETag")

    def session_history(self, project_id: int, session_id: int) -> Json:
        return self._json("GET", f"/v1/projects/{project_id}/online-sessions/{session_id}/history")


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
        return self._json("POST", f"/v1/projects/{project_id}/validations", json=body)

    def list_validations(self, project_id: int) -> list[Json]:
        return self._json("GET", f"/v1/projects/{project_id}/validations")["data"]

    def get_validation(self, project_id: int, validation_id: int) -> Json:
        return self._json("GET", f"/v1/projects/{project_id}/validations/{validation_id}")
