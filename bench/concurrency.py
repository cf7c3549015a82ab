"""Concurrency benchmark: 100 concurrent clients against one real uvicorn server on loopback, on
SQLite and on PostgreSQL.

* clients 0-49 come in pairs that send the *same* requests with the *same* Idempotency-Keys at
  the same time (a client and its retry racing), and retry on a 503 / transport error with that
  key: every key must create its runs once, and both members of a pair must get the same ids;
* clients 50-99 add single runs, list runs, and every fifth one posts one batch of 1,000 runs.

Required (exit status 1 otherwise): 0 responses >= 500, 0 connection resets, runs stored == runs
expected, no duplicate for a replayed key. Prints p50/p99 latency per kind of request. Bounded:
100 clients x 8 requests plus 10 batches of 1,000 runs (about a minute on 2 cores).

    .venv/bin/python -m bench.concurrency                       # SQLite
    .venv/bin/python -m bench.concurrency --database-url postgresql+psycopg://postgres@127.0.0.1:55432/mixopt_x
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import defaultdict

import httpx
import numpy as np

from bench._server import running_server

K = 5
DOMAINS = [f"d{j}" for j in range(K)]


def _runs(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    W = rng.dirichlet(np.ones(K), size=n)
    W = W / W.sum(axis=1, keepdims=True)
    return [
        {
            "mixture": dict(zip(DOMAINS, map(float, w), strict=True)),
            "metrics": {"loss": float(3 + rng.random())},
            "seed": int(seed),
            "tags": ["conc"],
        }
        for w in W
    ]


class Stats:
    def __init__(self) -> None:
        self.lat: dict[str, list[float]] = defaultdict(list)
        self.status: dict[int, int] = defaultdict(int)
        self.resets = 0
        self.retries = 0
        self.ids_by_key: dict[str, list[list[int]]] = defaultdict(list)
        self.expected_runs: dict[str, int] = {}  # idempotency key (or a unique label) -> runs


async def _send(
    client: httpx.AsyncClient, stats: Stats, kind: str, method: str, url: str, *, retry: bool, **kw
) -> httpx.Response | None:
    for attempt in range(5):
        t0 = time.perf_counter()
        try:
            r = await client.request(method, url, **kw)
        except httpx.TransportError:
            stats.resets += 1
            if retry:
                stats.retries += 1
                await asyncio.sleep(0.2 * (attempt + 1))
                continue
            return None
        stats.lat[kind].append(time.perf_counter() - t0)
        stats.status[r.status_code] += 1
        if r.status_code == 503 and retry:
            stats.retries += 1
            await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
            continue
        return r
    return None


async def pair_client(
    url: str,
    headers: dict,
    pid: int,
    pair: int,
    member: int,
    n_requests: int,
    stats: Stats,
    start: asyncio.Event,
) -> None:
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300) as c:
        await start.wait()
        for i in range(n_requests):
            key = f"pair-{pair}-req-{i}"
            batch = i % 4 == 3
            body = (
                {"runs": _runs(20, seed=pair * 100 + i)}
                if batch
                else _runs(1, seed=pair * 100 + i)[0]
            )
            r = await _send(
                c,
                stats,
                "write (shared key)",
                "POST",
                f"/v1/projects/{pid}/runs",
                retry=True,
                json=body,
                headers={"Idempotency-Key": key},
            )
            if r is not None and r.status_code in (200, 201):
                data = r.json()
                stats.ids_by_key[key].append(sorted(data["ids"]) if batch else [data["id"]])
                stats.expected_runs[key] = 20 if batch else 1


async def plain_client(
    url: str, headers: dict, pid: int, n: int, n_requests: int, stats: Stats, start: asyncio.Event
) -> None:
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300) as c:
        await start.wait()
        if n % 5 == 0:
            r = await _send(
                c,
                stats,
                "batch of 1000",
                "POST",
                f"/v1/projects/{pid}/runs",
                retry=False,
                json={"runs": _runs(1000, seed=10_000 + n)},
            )
            if r is not None and r.status_code == 201:
                stats.expected_runs[f"batch-{n}"] = len(r.json()["ids"])
        for i in range(n_requests):
            if i % 2 == 0:
                r = await _send(
                    c,
                    stats,
                    "write (single)",
                    "POST",
                    f"/v1/projects/{pid}/runs",
                    retry=False,
                    json=_runs(1, seed=20_000 + n * 100 + i)[0],
                )
                if r is not None and r.status_code == 201:
                    stats.expected_runs[f"single-{n}-{i}"] = 1
            else:
                await _send(
                    c,
                    stats,
                    "read (list)",
                    "GET",
                    f"/v1/projects/{pid}/runs?limit=100",
                    retry=False,
                )


async def run_load(url: str, token: str, clients: int, n_requests: int) -> tuple[Stats, int, float]:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as c:
        r = await c.post(
            "/v1/projects", json={"name": "conc", "domains": [{"name": d} for d in DOMAINS]}
        )
        r.raise_for_status()
        pid = r.json()["id"]
    stats, start = Stats(), asyncio.Event()
    half = clients // 2
    tasks = [
        pair_client(url, headers, pid, i // 2, i % 2, n_requests, stats, start) for i in range(half)
    ]
    tasks += [
        plain_client(url, headers, pid, n, n_requests, stats, start) for n in range(half, clients)
    ]
    futures = [asyncio.ensure_future(t) for t in tasks]
    await asyncio.sleep(0.5)  # every client connected and waiting
    t0 = time.perf_counter()
    start.set()
    await asyncio.gather(*futures)
    wall = time.perf_counter() - t0
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as c:
        stored = (await c.get(f"/v1/projects/{pid}/runs?limit=1")).json()["count"]
    return stats, stored, wall


def report(label: str, stats: Stats, stored: int, wall: float) -> bool:
    expected = sum(stats.expected_runs.values())
    dupes = sum(1 for ids in stats.ids_by_key.values() if any(x != ids[0] for x in ids))
    unanswered = sum(1 for k in stats.ids_by_key if not stats.ids_by_key[k])
    n_5xx = sum(v for k, v in stats.status.items() if k >= 500)
    total = sum(len(v) for v in stats.lat.values())
    print(
        f"\n== {label}: {total} responses in {wall:.1f} s ({total / wall:.0f}/s), statuses "
        f"{dict(stats.status)}"
    )
    allv = [x for v in stats.lat.values() for x in v]
    print(
        f"  {'all requests':22s} n={len(allv):5d}  p50 {np.percentile(allv, 50) * 1e3:8.1f} ms  "
        f"p99 {np.percentile(allv, 99) * 1e3:8.1f} ms"
    )
    for kind, xs in sorted(stats.lat.items()):
        print(
            f"  {kind:22s} n={len(xs):5d}  p50 {np.percentile(xs, 50) * 1e3:8.1f} ms  "
            f"p99 {np.percentile(xs, 99) * 1e3:8.1f} ms"
        )
    print(
        f"  responses >= 500: {n_5xx}   connection resets: {stats.resets}   retries: "
        f"{stats.retries}"
    )
    print(
        f"  runs stored {stored}, expected {expected}; keys replayed with different ids: {dupes}; "
        f"keys without an answer: {unanswered}"
    )
    ok = n_5xx == 0 and stats.resets == 0 and stored == expected and dupes == 0 and unanswered == 0
    print(f"  {'PASS' if ok else 'FAIL'}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument(
        "--requests", type=int, default=8, help="requests per client (besides the batches)"
    )
    args = ap.parse_args()
    label = (
        "PostgreSQL"
        if args.database_url and args.database_url.startswith("postgresql")
        else "SQLite"
    )
    with running_server(args.database_url) as (url, token):
        stats, stored, wall = asyncio.run(run_load(url, token, args.clients, args.requests))
    return 0 if report(label, stats, stored, wall) else 1


if __name__ == "__main__":
    sys.exit(main())
