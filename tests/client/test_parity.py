"""The sync and async clients behave the same on the same answers: one scripted server (an
``httpx.MockTransport``) plays each scenario to both, and the results (or exceptions) and the
requests sent must be identical, retries and the 409 race of get-or-create included."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from mixopt.client import AsyncClient, ConnectionFailed, JobFailed, MixoptClient, MixoptError

T0 = "2026-01-01T00:00:00Z"
Answer = httpx.Response | Exception


def project(pid: int, name: str, domains=("a", "b")) -> dict:
    return {
        "id": pid,
        "name": name,
        "domains": [{"name": d} for d in domains],
        "created_at": T0,
        "updated_at": T0,
    }


def run(rid: int) -> dict:
    return {
        "id": rid,
        "project_id": 1,
        "mixture": {"a": 0.5, "b": 0.5},
        "status": "succeeded",
        "created_at": T0,
        "updated_at": T0,
    }


def job(state: str, error: str | None = None) -> dict:
    return {
        "id": "j1",
        "kind": "fit",
        "state": state,
        "error": error,
        "created_at": T0,
        "result": {"fit_id": 1} if state == "succeeded" else None,
    }


def ok(body: Any, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def refused(status: int, detail: str, field: str | None = None) -> httpx.Response:
    errors = [{"field": field, "message": detail}] if field else []
    return httpx.Response(status, json={"detail": detail, "errors": errors})


class Script:
    """A scripted server: the answers, in order, to whatever is asked; it records each
    request (method, path, query, JSON body, idempotency key)."""

    def __init__(self, answers: list[Answer]):
        self.answers = list(answers)
        self.seen: list[tuple] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = request.content.decode() if request.content else ""
        if body and request.headers.get("content-type", "").startswith("application/json"):
            body = json.loads(body)
        self.seen.append(
            (
                request.method,
                request.url.path,
                str(request.url.query, "ascii"),
                body,
                request.headers.get("Idempotency-Key"),
            )
        )
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        # a fresh copy: the same answer is played to both clients
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)


def outcome(value: Any) -> Any:
    """A comparable form of a result or an exception."""
    if isinstance(value, Iterator):
        value = list(value)
    if isinstance(value, BaseException):
        return (type(value).__name__, getattr(value, "status", None), str(value))
    if isinstance(value, list | tuple):
        return [outcome(v) for v in value]
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return value


def both(answers: list[Answer], call: Callable[[Any], Any]) -> tuple[Any, list[tuple]]:
    """Play the script to the sync and the async client; assert they did the same."""
    sync_script, async_script = Script(answers), Script(answers)
    try:
        sync_result = outcome(
            call(
                MixoptClient(
                    "http://t", "tok", backoff=0, transport=httpx.MockTransport(sync_script)
                )
            )
        )
    except Exception as exc:  # noqa: BLE001 - compared below
        sync_result = outcome(exc)

    async def run_async() -> Any:
        async with AsyncClient(
            "http://t", "tok", backoff=0, transport=httpx.MockTransport(async_script)
        ) as c:
            result = call(c)
            if hasattr(result, "__aiter__"):
                return [x async for x in result]
            return await result

    try:
        async_result = outcome(asyncio.run(run_async()))
    except Exception as exc:  # noqa: BLE001 - compared below
        async_result = outcome(exc)
    assert sync_result == async_result
    assert sync_script.seen == async_script.seen
    assert not sync_script.answers and not async_script.answers, "answers left unasked"
    return sync_result, sync_script.seen


def test_add_runs_retries_a_lost_batch_with_its_idempotency_key():
    answers = [
        refused(503, "database down"),
        httpx.ConnectError("refused"),
        ok({"ids": [1, 2]}, 201),
        ok({"ids": [3]}, 201),
    ]
    runs = [{"mixture": {"a": 1.0}}] * 3
    result, seen = both(answers, lambda c: c.add_runs(1, runs, chunk_size=2, idempotency_key="k"))
    assert result == [1, 2, 3]
    assert [s[4] for s in seen] == ["k-0", "k-0", "k-0", "k-1"]  # the same key for a retry


def test_add_runs_gives_up_after_three_attempts_and_never_retries_a_refusal():
    result, seen = both(
        [refused(503, "down")] * 3,
        lambda c: c.add_runs(1, [{"mixture": {"a": 1.0}}], idempotency_key="k"),
    )
    assert result[:2] == ("MixoptError", 503) and len(seen) == 3
    result, seen = both(
        [refused(422, "runs[0].mixture: must sum to 1", "runs[0].mixture")],
        lambda c: c.add_runs(1, [{"mixture": {"a": 2.0}}], idempotency_key="k"),
    )
    assert result[:2] == ("MixoptError", 422) and len(seen) == 1


def test_get_or_create_survives_the_409_race():
    answers = [
        ok({"data": [], "count": 0}),
        refused(409, "name: taken", "name"),
        ok({"data": [project(7, "p")], "count": 1}),
    ]
    result, seen = both(answers, lambda c: c.get_or_create_project("p", ["a", "b"]))
    assert result["id"] == 7
    assert [(m, p) for m, p, *_ in seen] == [
        ("GET", "/v1/projects"),
        ("POST", "/v1/projects"),
        ("GET", "/v1/projects"),
    ]


def test_get_or_create_raises_the_409_when_the_project_is_still_unseen():
    answers = [
        ok({"data": [], "count": 0}),
        refused(409, "name: taken", "name"),
        ok({"data": [], "count": 0}),
    ]
    result, _ = both(answers, lambda c: c.get_or_create_project("p", ["a", "b"]))
    assert result[:2] == ("MixoptError", 409)


def test_get_or_create_refuses_an_existing_project_with_other_domains():
    result, seen = both(
        [ok({"data": [project(7, "p", ("x",))], "count": 1})],
        lambda c: c.get_or_create_project("p", ["a", "b"]),
    )
    assert result[:2] == ("MixoptError", 409) and len(seen) == 1


def test_list_runs_walks_every_cursor_page():
    answers = [
        ok({"data": [run(1), run(2)], "count": 5, "next_cursor": "c2"}),
        ok({"data": [run(3), run(4)], "count": 5, "next_cursor": "c4"}),
        ok({"data": [run(5)], "count": 5, "next_cursor": None}),
    ]
    result, seen = both(answers, lambda c: c.list_runs(1, page_size=2, tag="t"))
    assert [r["id"] for r in result] == [1, 2, 3, 4, 5]
    assert [q for _, _, q, *_ in seen] == [
        "limit=2&tag=t",
        "limit=2&cursor=c2&tag=t",
        "limit=2&cursor=c4&tag=t",
    ]
    result, _ = both(answers, lambda c: c.iter_runs(1, page_size=2, tag="t"))
    assert [r["id"] for r in result] == [1, 2, 3, 4, 5]


def test_offset_lists_walk_every_page():
    answers = [
        ok({"data": [project(1, "a"), project(2, "b")], "count": 3}),
        ok({"data": [project(3, "c")], "count": 3}),
    ]
    result, seen = both(answers, lambda c: c.iter_projects(page_size=2))
    assert [p["id"] for p in result] == [1, 2, 3]
    assert [q for _, _, q, *_ in seen] == ["offset=0&limit=2", "offset=2&limit=2"]


def test_wait_polls_until_the_job_fails_with_its_reason():
    answers = [ok(job("pending")), ok(job("running")), ok(job("failed", "needs 3 runs"))]
    result, seen = both(answers, lambda c: c.wait("j1", poll=0))
    assert result == ("JobFailed", None, "job j1 (fit) failed: needs 3 runs") and len(seen) == 3
    result, _ = both([ok(job("running")), ok(job("succeeded"))], lambda c: c.wait("j1", poll=0))
    assert result["state"] == "succeeded"


def test_errors_map_the_same_way():
    result, _ = both(
        [refused(422, "mixture: must sum to 1", "mixture")], lambda c: c.add_run(1, {"a": 0.3})
    )
    assert result[:2] == ("MixoptError", 422)
    result, _ = both([httpx.ConnectError("refused")], lambda c: c.get_project(1))
    assert result[0] == "ConnectionFailed"
    assert "cannot reach the mixopt API at http://t" in result[2]
    result, _ = both([httpx.Response(500, text="boom")], lambda c: c.get_project(1))
    assert result == ("MixoptError", 500, "HTTP 500: boom")


def test_weights_etag_and_export_file_names():
    weights = {
        "session_id": 1,
        "algorithm": "aioli",
        "version": 2,
        "step": 0,
        "weights": {"a": 0.5, "b": 0.5},
    }
    result, seen = both([ok(weights, ETag='"v2"'), httpx.Response(304)], lambda c: _two_weights(c))
    assert result[0][0]["version"] == 2 and result[1] == [None, '"v2"']
    assert seen[1][0] == "GET"
    zipped = httpx.Response(
        200,
        content=b"PK",
        headers={"content-disposition": 'attachment; filename="mix-olmo-core.zip"'},
    )
    result, _ = both(
        [zipped], lambda c: c.export_mixture(1, baseline="natural", format="olmo-core")
    )
    assert result == ["mix-olmo-core.zip", b"PK"]


def _two_weights(c: Any) -> Any:
    if isinstance(c, AsyncClient):

        async def go() -> list:
            first = await c.weights(1, 1)
            return [first, await c.weights(1, 1, etag=first[1])]

        return go()
    first = c.weights(1, 1)
    return [first, c.weights(1, 1, etag=first[1])]


def test_best_picks_the_most_trusted_fit():
    fits = [
        {
            "id": 1,
            "project_id": 1,
            "estimator": "gp",
            "status": "succeeded",
            "fidelity": {"pooled": {"spearman": 0.9}},
            "created_at": T0,
        },
        {
            "id": 2,
            "project_id": 1,
            "estimator": "lin",
            "status": "succeeded",
            "fidelity": {"pooled": {"spearman": 0.5}},
            "created_at": T0,
        },
    ]
    recs = [
        {
            "id": 10,
            "project_id": 1,
            "fit_id": 1,
            "source": "gp",
            "mixture": {"a": 1.0},
            "created_at": T0,
        },
        {
            "id": 11,
            "project_id": 1,
            "fit_id": 2,
            "source": "lin",
            "mixture": {"b": 1.0},
            "created_at": T0,
        },
    ]
    result, _ = both(
        [ok({"data": recs, "count": 2}), ok({"data": fits, "count": 2})], lambda c: c.best(1)
    )
    assert result[0]["id"] == 10 and result[1]["id"] == 1


@pytest.mark.parametrize("exc", [JobFailed, ConnectionFailed])
def test_error_classes_are_mixopt_errors(exc):
    assert issubclass(exc, MixoptError)
