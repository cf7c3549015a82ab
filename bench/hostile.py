"""Hostile requests against a real uvicorn server (issue 24): what each costs the API process.

Every case is sent to a server this script starts (``bench._server``: migrations + uvicorn, on a
fresh SQLite file, or a fresh database on a PostgreSQL server), with its body generated in
memory before the clock starts. While a case runs, a thread polls ``/healthz`` every 50 ms and
another samples the API process's resident memory (``/proc/<pid>/status``; its peak ``VmHWM`` is
reset before each case, and uvicorn's worker processes are summed). Printed as a Markdown table:
status, time to answer, peak RSS, whether ``/healthz`` answered throughout and its worst latency,
whether the process is still alive.

Expected (exit status 1 otherwise, the figures printed either way): every case answers 4xx
with a message, except the valid ones (the CR-only CSV is imported, the largest valid batch is
stored, the valid token after a burst of guesses is a 200); the guessed tokens and the
rotating ``X-Forwarded-For`` reach 429; no case ends the process; ``/healthz`` answers every
poll in under 1 s. The two export cases read the largest valid batch back (``GET
.../runs/export``, a zip of both CSVs and JSON): the server streams them from the database a page
at a time, so its peak memory is the figure to read.

    .venv/bin/python -m bench.hostile                     # SQLite
    .venv/bin/python -m bench.hostile --postgres          # the PostgreSQL of scripts/services.sh
    .venv/bin/python -m bench.hostile --database-url postgresql+psycopg://u@host:5432/any
    .venv/bin/python -m bench.hostile --quick --cases nested-10k-deep,csv-stray-cr

A PostgreSQL URL names a server: a fresh database (``mixopt_hostile_<pid>_<time>``) is created
on it for the run and dropped afterwards; the named database is never touched.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from bench._server import server_process

SERVICES_PG = "postgresql+psycopg://postgres@127.0.0.1:55432/mixopt_bench"
HEALTH_EVERY_S = 0.05
HEALTH_LIMIT_S = 1.0
RSS_EVERY_S = 0.02
RUN = {"mixture": {"web": 0.5, "code": 0.5}, "metrics": {"loss": 2.0}}
MIXTURES = [
    ["run", "name", "note", "web", "code", "math"],
    ["r1", "first", "plain", "0.2", "0.3", "0.5"],
    ["r2", '"two, quoted"', '"line\nbreak"', "0.6", "0.2", "0.2"],
    ["r3", "", "", "1", "0", "0"],
]
METRICS = [["run", "loss", "acc"], ["r1", "2.5", "0.1"], ["r2", "2.25", ""], ["r3", "3", "0.3"]]


# -- the API process: memory ---------------------------------------------------------------------
def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn's worker processes)."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return pids


def _status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    return sum(_status_kb(p, key) for p in _tree(pid)) / 1024


def reset_peak(pid: int) -> None:
    """Reset each process's VmHWM (peak RSS) to its current RSS (Linux ``clear_refs`` 5)."""
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass


# -- what runs beside a case ---------------------------------------------------------------------
@dataclass
class Monitor:
    """Polls /healthz and samples the process tree's RSS while a case runs."""

    url: str
    pid: int
    before_mb: float = 0.0
    peak_mb: float = 0.0
    polls: int = 0
    answered: int = 0
    worst_s: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)

    def _health(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as c:
            while True:
                start = time.perf_counter()
                try:
                    ok = c.get("/healthz").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.worst_s = max(self.worst_s, time.perf_counter() - start)
                self.polls += 1
                self.answered += ok
                if self._stop.wait(HEALTH_EVERY_S):
                    return

    def _memory(self) -> None:
        while not self._stop.wait(RSS_EVERY_S):
            self.peak_mb = max(self.peak_mb, rss_mb(self.pid))

    @contextmanager
    def watching(self):
        reset_peak(self.pid)
        self.before_mb = self.peak_mb = rss_mb(self.pid)
        threads = [threading.Thread(target=t, daemon=True) for t in (self._health, self._memory)]
        for t in threads:
            t.start()
        try:
            yield self
        finally:
            self._stop.set()
            for t in threads:
                t.join()
            self.peak_mb = max(self.peak_mb, rss_mb(self.pid, "VmHWM"))


# -- the cases -----------------------------------------------------------------------------------
@dataclass
class Outcome:
    status: str
    ok: bool
    message: str


@dataclass
class Ctx:
    client: httpx.Client
    url: str
    token: str
    quick: bool
    #: (project id, runs stored) of the largest valid batch: the export cases read it back
    big: tuple[int, int] | None = None

    def project(self, domains: tuple[str, ...] = ("web", "code", "math")) -> int:
        name = f"hostile-{time.monotonic_ns()}"
        body = {"name": name, "domains": [{"name": d} for d in domains]}
        r = self.client.post("/v1/projects", json=body)
        r.raise_for_status()
        return r.json()["id"]

    def size(self, full: int, quick: int) -> int:
        return quick if self.quick else full


def _message(r: httpx.Response) -> str:
    """The answer's message; a long field path (``details.x[0][0]...``) shortened."""
    try:
        body = r.json()
    except ValueError:
        return r.text[:200]
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and len(errors) == 1 and isinstance(errors[0], dict):
        path = str(errors[0].get("field", ""))
        path = path if len(path) <= 24 else path[:21] + "..."
        return f"{path}: {errors[0].get('message', '')}"
    detail = body.get("detail") if isinstance(body, dict) else body
    return detail if isinstance(detail, str) else json.dumps(detail)[:200]


def refused(r: httpx.Response) -> Outcome:
    """The expectation of a hostile request: a 4xx with a message."""
    message = _message(r)
    return Outcome(str(r.status_code), 400 <= r.status_code < 500 and bool(message), message)


Prepared = Callable[[], Outcome]


def _json_case(body: Callable[[Ctx], bytes]) -> Callable[[Ctx], Prepared]:
    def prepare(ctx: Ctx) -> Prepared:
        url = f"/v1/projects/{ctx.project(('web', 'code'))}/runs"
        raw = body(ctx)
        headers = {"Content-Type": "application/json"}
        return lambda: refused(ctx.client.post(url, content=raw, headers=headers))

    return prepare


def _long_name(ctx: Ctx) -> bytes:
    return json.dumps({**RUN, "name": "x" * ctx.size(60_000_000, 6_000_000)}).encode()


def _many_tags(ctx: Ctx) -> bytes:
    run = {**RUN, "tags": [f"{i:x}" for i in range(200)]}
    runs = [run] * ctx.size(50_000, 5_000)
    return json.dumps({"runs": runs}, separators=(",", ":")).encode()


def _many_keys(ctx: Ctx) -> bytes:
    details = {f"k{i}": i for i in range(ctx.size(1_000_000, 200_000))}
    return json.dumps({**RUN, "details": details}, separators=(",", ":")).encode()


def _deep(ctx: Ctx) -> bytes:
    return (
        '{"mixture": {"web": 1}, "details": {"x": ' + "[" * 10_000 + "]" * 10_000 + "}}"
    ).encode()


def _deep_nan(ctx: Ctx) -> bytes:
    return (
        '{"mixture": {"web": 1}, "details": {"x": ' + "[" * 1000 + "NaN" + "]" * 1000 + "}}"
    ).encode()


def _commas(ctx: Ctx) -> bytes:
    return (
        b'{"mixture": {"web": 1}, "details": {"x": ['
        + b"1," * ctx.size(30_000_000, 3_000_000)
        + b"1]}}"
    )


def _largest_batch(ctx: Ctx) -> Prepared:
    """The largest batch the README documents (50,000 runs of 40 values: 15 domains, 15
    metrics, 2 tags, details), 2.0M values under MIXOPT_MAX_JSON_NODES: stored, a 201."""
    domains = tuple(f"domain_{i:02d}" for i in range(15))
    url = f"/v1/projects/{ctx.project(domains)}/runs"
    n = ctx.size(50_000, 5_000)
    run = {
        "name": "run",
        "mixture": {d: 1 / 15 for d in domains},
        "metrics": {f"val/{d}": 2.5 for d in domains},
        "tags": ["a", "b"],
        "details": {"note": "x" * 40, "lr": 3e-4},
    }
    raw = json.dumps({"runs": [run] * n}).encode()
    headers = {"Content-Type": "application/json"}

    def send() -> Outcome:
        r = ctx.client.post(url, content=raw, headers=headers)
        got = r.json().get("count") if r.status_code == 201 else None
        ok = got == n
        if ok:
            ctx.big = (int(url.split("/")[3]), n)
        return Outcome(str(r.status_code), ok, f"stored {got} runs" if ok else _message(r))

    return send


def _big_project(ctx: Ctx) -> tuple[int, int]:
    """The largest valid batch's project (stored now, before the clock, when that case did not
    run)."""
    if ctx.big is None:
        outcome = _largest_batch(ctx)()
        if not outcome.ok:
            raise RuntimeError(f"could not store the runs to export: {outcome.message}")
    assert ctx.big is not None
    return ctx.big


def _export_case(fmt: str) -> Callable[[Ctx], Prepared]:
    """``GET .../runs/export`` of the largest valid batch (a zip of both CSVs, or JSON): a 200
    with every run; the server streams it (its memory is the figure to read)."""

    def prepare(ctx: Ctx) -> Prepared:
        pid, n = _big_project(ctx)
        url = f"/v1/projects/{pid}/runs/export"

        def send() -> Outcome:
            r = ctx.client.get(url, params={"format": fmt} if fmt == "json" else {})
            if r.status_code != 200:
                return Outcome(str(r.status_code), False, _message(r))
            if fmt == "json":
                got = len(r.json()["runs"])
            else:
                with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
                    got = zf.read("train_loss.csv").count(b"\n") - 1
            size = f"{len(r.content) / 2**20:.1f} MB"
            return Outcome("200", got == n, f"{got} of {n} runs, {size}")

        return send

    return prepare


def _csv(rows: list[list[str]], end: str = "\n") -> bytes:
    return "".join(",".join(row) + end for row in rows).encode()


def _csv_case(files: Callable[[Ctx], tuple[bytes, bytes]], created: int | None = None):
    """An import of (mixtures, metrics); ``created``: the valid case, a 201 with that many runs."""

    def prepare(ctx: Ctx) -> Prepared:
        url = f"/v1/projects/{ctx.project()}/runs/import"
        mix, met = files(ctx)
        upload = {"mixtures": ("m.csv", mix, "text/csv"), "metrics": ("l.csv", met, "text/csv")}

        def send() -> Outcome:
            r = ctx.client.post(url, files=upload)
            if created is None:
                return refused(r)
            got = r.json().get("created") if r.status_code == 201 else None
            ok = got == created
            return Outcome(str(r.status_code), ok, f"created {got}" if ok else _message(r))

        return send

    return prepare


def _stray_cr(ctx: Ctx) -> tuple[bytes, bytes]:
    mix = b"run,name,web,code,math\nr1,first,0.2,0.3,0.5\nr2,sec\rond,0.6,0.2,0.2\nr3,,1,0,0\n"
    return mix, _csv(METRICS)


def _big_field(size: int) -> Callable[[Ctx], tuple[bytes, bytes]]:
    def files(ctx: Ctx) -> tuple[bytes, bytes]:
        n = size if not ctx.quick else min(size, 5_000_000)
        rows = [["run", "loss", "acc"], ["r1", "2.5", "0.1"], ["r2", "9" * n, "1"]]
        return _csv(MIXTURES), _csv(rows)

    return files


def _columns(ctx: Ctx) -> tuple[bytes, bytes]:
    names = [f"metric{i}" for i in range(ctx.size(200_000, 20_000))]
    rows = [["run", *names], *(["r" + str(i), *(["1"] * len(names))] for i in (1, 2, 3))]
    return _csv(MIXTURES), _csv(rows)


def _tally(codes: list[int]) -> str:
    return ", ".join(f"{code} x{n}" for code, n in sorted(Counter(codes).items()))


def _token_burst(ctx: Ctx) -> Prepared:
    """120 guessed tokens from one address (127.0.0.2: its own budget), then the valid token."""

    def send() -> Outcome:
        transport = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(base_url=ctx.url, transport=transport, timeout=30) as c:
            codes, last = [], None
            for i in range(120):
                last = c.get("/v1/projects", headers=_bearer(f"mxo_guess_{i:06d}"))
                codes.append(last.status_code)
            valid = c.get("/v1/projects", headers=_bearer(ctx.token))
        ok = valid.status_code == 200 and 429 in codes and set(codes) <= {401, 429}
        status = f"{_tally(codes)}; valid {valid.status_code}"
        return Outcome(status, ok, _message(last) if last is not None else "")

    return send


def _forwarded_burst(ctx: Ctx) -> Prepared:
    """120 guesses from 127.0.0.1, each with another X-Forwarded-For: must reach 429."""

    def send() -> Outcome:
        with httpx.Client(base_url=ctx.url, timeout=30) as c:
            codes, first_429 = [], None
            for i in range(120):
                forwarded = {"X-Forwarded-For": f"198.51.{i // 250}.{i % 250 + 1}"}
                r = c.get("/v1/projects", headers={**_bearer(f"guess_{i:06d}"), **forwarded})
                codes.append(r.status_code)
                if r.status_code == 429 and first_429 is None:
                    first_429 = r
        ok = first_429 is not None and set(codes) <= {401, 429}
        message = _message(first_429) if first_429 is not None else "never 429"
        return Outcome(_tally(codes), ok, message)

    return send


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


CASES: dict[str, tuple[str, Callable[[Ctx], Prepared]]] = {
    "name-60MB": ("a run with a 60 MB name", _json_case(_long_name)),
    "tags-50k-runs": ("50,000 runs x 200 tags (52 MB)", _json_case(_many_tags)),
    "details-1M-keys": ("1M keys in details (17 MB)", _json_case(_many_keys)),
    "values-30M": ("30M numbers in one array (60 MB)", _json_case(_commas)),
    "nested-10k-deep": ("JSON nested 10,000 deep", _json_case(_deep)),
    "nested-1k-nan": ("nested 1,000 deep with a NaN", _json_case(_deep_nan)),
    "csv-cr-only": (
        "CSV, CR-only line ends",
        _csv_case(lambda _: (_csv(MIXTURES, "\r"), _csv(METRICS, "\r")), created=3),
    ),
    "csv-stray-cr": ("CSV, a stray CR", _csv_case(_stray_cr)),
    "csv-field-200kB": ("CSV, a 200 kB field", _csv_case(_big_field(200_000))),
    "csv-field-50MB": ("CSV, a 50 MB field", _csv_case(_big_field(50_000_000))),
    "csv-200k-columns": ("CSV, 200,000 columns (2 MB)", _csv_case(_columns)),
    "largest-valid-batch": ("valid: 50,000 runs x 40 values (45 MB)", _largest_batch),
    "export-zip": ("export of the 50,000 runs, CSV zip", _export_case("zip")),
    "export-json": ("export of the 50,000 runs, JSON", _export_case("json")),
    "token-burst": ("120 guessed tokens, then a valid one", _token_burst),
    "xff-burst": ("rotating X-Forwarded-For from 127.0.0.1", _forwarded_burst),
}
QUICK_LABELS = {
    "name-60MB": "a run with a 6 MB name",
    "tags-50k-runs": "5,000 runs x 200 tags (5 MB)",
    "details-1M-keys": "200k keys in details (3 MB)",
    "csv-field-50MB": "CSV, a 5 MB field",
    "values-30M": "3M numbers in one array (6 MB)",
    "largest-valid-batch": "valid: 5,000 runs x 40 values (4.5 MB)",
    "csv-200k-columns": "CSV, 20,000 columns",
    "export-zip": "export of the 5,000 runs, CSV zip",
    "export-json": "export of the 5,000 runs, JSON",
}


# -- running and reporting -----------------------------------------------------------------------
@dataclass
class Row:
    case: str
    outcome: Outcome
    seconds: float
    monitor: Monitor
    alive: bool

    @property
    def health_ok(self) -> bool:
        m = self.monitor
        return m.polls > 0 and m.answered == m.polls and m.worst_s < HEALTH_LIMIT_S

    @property
    def ok(self) -> bool:
        return self.outcome.ok and self.alive and self.health_ok


def _alive(proc, url: str) -> bool:
    if proc.poll() is not None:
        return False
    try:
        return httpx.get(url + "/healthz", timeout=10).status_code == 200
    except httpx.HTTPError:
        return False


def run_case(ctx: Ctx, proc, label: str, prepare: Callable[[Ctx], Prepared]) -> Row:
    send = prepare(ctx)  # bodies built here, before the clock and the monitor start
    monitor = Monitor(ctx.url, proc.pid)
    with monitor.watching():
        start = time.perf_counter()
        try:
            outcome = send()
        except httpx.HTTPError as e:
            outcome = Outcome(f"no answer: {type(e).__name__}", False, str(e)[:200])
        seconds = time.perf_counter() - start
    return Row(label, outcome, seconds, monitor, _alive(proc, ctx.url))


def _duration(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1000:.0f} ms"


def _cell(text: str, width: int = 110) -> str:
    text = " ".join(text.split())
    text = text if len(text) <= width else text[: width - 3] + "..."
    return text.replace("|", "\\|")


def table(rows: list[Row]) -> str:
    lines = [
        "| case | status | time | peak RSS (before) | /healthz answered | /healthz worst "
        "| alive | answer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r.monitor
        lines.append(
            f"| {r.case} | {r.outcome.status} | {_duration(r.seconds)} "
            f"| {m.peak_mb:.0f} MB ({m.before_mb:.0f}) | {m.answered}/{m.polls} "
            f"| {m.worst_s * 1000:.0f} ms | {'yes' if r.alive else 'NO'} "
            f"| {'' if r.ok else '**FAILED** '}{_cell(r.outcome.message)} |"
        )
    return "\n".join(lines)


# -- the database --------------------------------------------------------------------------------
@contextmanager
def fresh_database(url: str | None):
    """``url`` itself for SQLite (None: a file in the server's home); for PostgreSQL a new
    database on that server, dropped afterwards."""
    if not url or not url.startswith("postgresql"):
        yield url
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"mixopt_hostile_{os.getpid()}_{int(time.time())}"
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _postgres_url() -> str:
    url = os.environ.get("MIXOPT_BENCH_DATABASE_URL") or SERVICES_PG
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as c:
            c.execute(text("SELECT 1"))
    except Exception as e:  # noqa: BLE001 - any failure: the server is not there
        sys.exit(f'no PostgreSQL at {url} ({type(e).__name__}): eval "$(bash scripts/services.sh)"')
    return url


def _selected(spec: str | None) -> list[str]:
    if not spec:
        return list(CASES)
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        sys.exit(f"unknown cases {unknown}; known: {', '.join(CASES)}")
    return names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--database-url", help="sqlite:///... or a PostgreSQL server's URL")
    ap.add_argument("--postgres", action="store_true", help="the PostgreSQL of services.sh")
    ap.add_argument("--cases", help=f"comma-separated subset of: {', '.join(CASES)}")
    ap.add_argument("--quick", action="store_true", help="bodies about 10x smaller")
    ap.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    ap.add_argument(
        "--no-proxy-headers",
        action="store_true",
        help="uvicorn as `mixopt serve` runs it (default: uvicorn's own default, which takes "
        "127.0.0.1's X-Forwarded-For as the client: the harder case for the limits)",
    )
    ap.add_argument(
        "--http",
        choices=("auto", "h11", "httptools"),
        default="auto",
        help="uvicorn's HTTP parser (auto: httptools when installed, as `mixopt serve` runs it)",
    )
    args = ap.parse_args(argv)
    names = _selected(args.cases)
    url = _postgres_url() if args.postgres and not args.database_url else args.database_url
    extra = (["--no-proxy-headers"] if args.no_proxy_headers else []) + ["--http", args.http]
    db = "PostgreSQL" if url and url.startswith("postgresql") else "SQLite"
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {db}, {os.cpu_count()} cores, "
        f"{platform.python_version()}, uvicorn workers {args.workers}"
        f"{', --no-proxy-headers' if args.no_proxy_headers else ''}, http {args.http}"
        f"{', quick' if args.quick else ''}",
        flush=True,
    )
    rows: list[Row] = []
    with fresh_database(url) as db_url, server_process(db_url, args.workers, extra) as server:
        base, token, proc = server
        headers = _bearer(token)
        with httpx.Client(base_url=base, headers=headers, timeout=300) as client:
            ctx = Ctx(client, base, token, args.quick)
            for name in names:
                label = QUICK_LABELS.get(name, CASES[name][0]) if args.quick else CASES[name][0]
                if rows and not rows[-1].alive:
                    print(f"{name}: not run, the server is gone", flush=True)
                    continue
                rows.append(run_case(ctx, proc, label, CASES[name][1]))
                print(f"{name}: {rows[-1].outcome.status} in {rows[-1].seconds:.2f} s", flush=True)
    print()
    print(table(rows))
    failed = [r.case for r in rows if not r.ok] + (
        ["(cases not run)"] if len(rows) < len(names) else []
    )
    print(f"\n{'FAILED: ' + '; '.join(failed) if failed else 'every expectation met'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
