"""``/metrics`` in the Prometheus text format (prometheus-client), and the request middleware
that feeds it and carries the request id (``app.core.logs``).

Metrics:

- ``mixopt_http_requests_total{method,route,status}`` and
  ``mixopt_http_request_duration_seconds{method,route}`` (histogram): every request, by route
  template (``/v1/projects/{project_id}/fits``), so ids do not explode the label set;
- ``mixopt_jobs{kind,state}``: jobs in the database by kind and state (read at scrape time);
- ``mixopt_queue_depth{queue}``: jobs waiting for a worker (state pending), per Celery queue;
- ``mixopt_job_duration_seconds{kind}`` (summary: ``_sum``/``_count``) over finished jobs, so
  ``rate(sum)/rate(count)`` is the mean fit or training time; ``mixopt_job_duration_max_seconds``.

The job figures come from the database, which every API process and worker shares, so any API
process answers for the whole deployment. ``/metrics`` needs no token (like ``/healthz``): it
carries counts and timings, never project data; keep it off the public network.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core import logs
from app.services.metrics import job_metrics

REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = Counter(
    "mixopt_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=REGISTRY
)
LATENCY = Histogram(
    "mixopt_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def _route(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class RequestMiddleware:
    """Request id in and out (``X-Request-ID``), metrics and one access log line per request."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])
        }
        request_id = logs.new_request_id(headers.get("x-request-id"))
        token = logs.request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = _route(scope)
            method = scope.get("method", "?")
            if route != "/metrics":
                REQUESTS.labels(method, route, str(status)).inc()
                LATENCY.labels(method, route).observe(time.perf_counter() - started)
            logs.access_log(method, scope.get("path", ""), route, status, started)
            logs.request_id_var.reset(token)


class JobCollector(Collector):
    """Job counts, queue depth and durations, read from the database at scrape time."""

    def collect(self) -> Iterable:

        jobs = GaugeMetricFamily("mixopt_jobs", "jobs by kind and state", labels=["kind", "state"])
        depth = GaugeMetricFamily(
            "mixopt_queue_depth", "jobs waiting for a worker, per queue", labels=["queue"]
        )
        durations = SummaryMetricFamily(
            "mixopt_job_duration_seconds", "run time of finished jobs", labels=["kind"]
        )
        longest = GaugeMetricFamily(
            "mixopt_job_duration_max_seconds", "longest finished job", labels=["kind"]
        )
        try:
            figures = job_metrics()
        except Exception:  # the database is down: say so rather than fail the scrape
            yield GaugeMetricFamily(
                "mixopt_database_up", "the database answered the scrape", value=0
            )
            return
        yield GaugeMetricFamily("mixopt_database_up", "the database answered the scrape", value=1)
        for (kind, state), n in sorted(figures["jobs"].items()):
            jobs.add_metric([kind, state], n)
        for queue, n in sorted(figures["queues"].items()):
            depth.add_metric([queue], n)
        for kind, (count, total, peak) in sorted(figures["durations"].items()):
            durations.add_metric([kind], count_value=count, sum_value=total)
            longest.add_metric([kind], peak)
        yield from (jobs, depth, durations, longest)


REGISTRY.register(JobCollector())


def install(app: FastAPI) -> None:
    app.add_middleware(RequestMiddleware)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
