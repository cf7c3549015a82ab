"""Ingest benchmark: batch-ingest 10,000 runs x 17 domains through the real HTTP API, then list
them back page by page, on SQLite and on PostgreSQL.

Prints runs/s for ingestion, p50/p99 latency of a list page, and the throughput of the same
requests against a bare FastAPI route on the same server (which only parses the JSON body),
as a ratio: how much the service adds on top of FastAPI itself.

    .venv/bin/python -m bench.ingest                     # SQLite only
    eval "$(bash scripts/services.sh)" && .venv/bin/python -m bench.ingest   # + PostgreSQL
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import httpx
import numpy as np

from bench._server import running_server


def make_runs(n: int, k: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    W = rng.dirichlet(np.full(k, 0.5), size=n)
    W = W / W.sum(axis=1, keepdims=True)
    return [
        {
            "mixture": {f"d{j}": float(w[j]) for j in range(k)},
            "metrics": {f"val/d{j}": float(3 + rng.random()) for j in range(13)},
            "model_params": 1_000_000,
            "seed": i,
            "tags": ["bench"],
        }
        for i, w in enumerate(W)
    ]


def percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(np.array(xs), q))


def bench_one(label: str, database_url: str | None, n: int, k: int, batch: int, page: int) -> dict:
    runs = make_runs(n, k)
    with running_server(database_url) as (url, token):
        h = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=h, timeout=600) as c:
            pid = c.post(
                "/v1/projects",
                json={"name": "bench", "domains": [{"name": f"d{j}"} for j in range(k)]},
            ).json()["id"]
            # warm-up (not timed)
            c.post(f"/v1/projects/{pid}/runs", json={"runs": runs[:10]}).raise_for_status()
            c.post("/bench/bare", json={"runs": runs[:10]}).raise_for_status()

            t0 = time.perf_counter()
            for i in range(0, n, batch):
                r = c.post(
                    f"/v1/projects/{pid}/runs",
                    json={"runs": runs[i : i + batch]},
                    headers={"Idempotency-Key": f"b{i}"},
                )
                r.raise_for_status()
            ingest_s = time.perf_counter() - t0

            t0 = time.perf_counter()
            for i in range(0, n, batch):
                c.post("/bench/bare", json={"runs": runs[i : i + batch]}).raise_for_status()
            bare_s = time.perf_counter() - t0

            lat, cursor, seen = [], None, 0
            while True:
                params = {"limit": page, **({"cursor": cursor} if cursor else {})}
                t = time.perf_counter()
                body = c.get(f"/v1/projects/{pid}/runs", params=params).json()
                lat.append(time.perf_counter() - t)
                seen += len(body["data"])
                cursor = body["next_cursor"]
                if not cursor:
                    break
            assert seen == n + 10, (seen, n)
            bare_lat = []
            for _ in range(len(lat)):
                t = time.perf_counter()
                c.get("/bench/bare").raise_for_status()
                bare_lat.append(time.perf_counter() - t)
    return {
        "db": label,
        "runs_per_s": n / ingest_s,
        "bare_runs_per_s": n / bare_s,
        "ingest_ratio": bare_s / ingest_s,
        "list_p50_ms": 1000 * statistics.median(lat),
        "list_p99_ms": 1000 * percentile(lat, 99),
        "bare_get_p50_ms": 1000 * statistics.median(bare_lat),
        "pages": len(lat),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--domains", type=int, default=17)
    ap.add_argument("--batch", type=int, default=10_000, help="runs per request")
    ap.add_argument("--page", type=int, default=100, help="runs per list page")
    ap.add_argument(
        "--postgres",
        default=os.environ.get("MIXOPT_BENCH_DATABASE_URL"),
        help="PostgreSQL URL (default: $MIXOPT_BENCH_DATABASE_URL)",
    )
    args = ap.parse_args()
    targets = [("SQLite", None)] + ([("PostgreSQL", args.postgres)] if args.postgres else [])
    print(
        f"{args.runs} runs x {args.domains} domains, {args.batch} runs/request, list pages of "
        f"{args.page}"
    )
    print(
        f"{'db':<11} {'runs/s':>9} {'bare runs/s':>12} {'ratio':>6} {'list p50 ms':>12} "
        f"{'list p99 ms':>12} {'bare GET p50 ms':>16} {'pages':>6}"
    )
    for label, url in targets:
        r = bench_one(label, url, args.runs, args.domains, args.batch, args.page)
        print(
            f"{r['db']:<11} {r['runs_per_s']:>9.0f} {r['bare_runs_per_s']:>12.0f} "
            f"{r['ingest_ratio']:>6.2f} {r['list_p50_ms']:>12.1f} {r['list_p99_ms']:>12.1f} "
            f"{r['bare_get_p50_ms']:>16.2f} {r['pages']:>6}"
        )
    if not args.postgres:
        print(
            "(PostgreSQL skipped: set MIXOPT_BENCH_DATABASE_URL, "
            'e.g. eval "$(bash scripts/services.sh)")'
        )
    print(
        "ratio = service ingest throughput / bare-route throughput for the same requests "
        "(1.0 = no overhead)"
    )


if __name__ == "__main__":
    main()
