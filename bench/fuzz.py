"""Fuzz campaign (issue 24, item 7): schemathesis, all checks, against a real server and worker.

This script starts the real API (``bench._server``: migrations + uvicorn on a fresh SQLite file,
or a fresh database on a PostgreSQL server) and a real Celery worker (with beat) on the same
database and broker, creates objects for the generated requests to reach (:func:`seed_objects`:
a project with runs and a curve, a fit, a recommendation and an online session), then runs
schemathesis with every check (ours in ``tests/api/contract/hooks.py``, settings in
``tests/api/contract/schemathesis.toml``) over every operation of ``/openapi.json``. A run with
``--examples`` per operation (schemathesis's ``--max-examples``, per phase; the coverage phase
adds its own boundary cases) is repeated with the next seed until at least ``--cases`` generated
cases have been sent. Printed: cases, failures (unique, per check), responses >= 500
(counted by our ``after_call`` hook, every response, not only failing ones), seeds, duration.

    .venv/bin/python -m bench.fuzz --cases 10000 --seed 1            # SQLite
    .venv/bin/python -m bench.fuzz --postgres --cases 10000 --seed 1 # PostgreSQL of services.sh
    .venv/bin/python -m bench.fuzz --database-url postgresql+psycopg://u@host:5432/any

Exit status 0 when no failure, no error and no 5xx was seen; 1 otherwise. A failure is
reproduced with the schemathesis command printed for its seed (the server must hold the same
seeded objects: rerun this script with ``--seed`` and ``--cases`` of one run).

``tests/api/test_contract.py`` runs the same command (:func:`schemathesis_command`) in CI with a
fixed and a rotating seed and fewer examples.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench._server import REPO, server_process
from bench.hostile import _postgres_url, fresh_database

CONTRACT = REPO / "tests" / "api" / "contract"
HOOKS = "tests.api.contract.hooks"
#: the environment variable our ``after_call`` hook writes its status tally to (a JSON file)
TALLY_ENV = "MIXOPT_FUZZ_TALLY"
#: the environment variable naming the seeded objects' ids (JSON) for our path-parameter hook
IDS_ENV = "MIXOPT_FUZZ_IDS"
#: routes of the benchmark app (bench._server), not of the service
EXCLUDE = "^/bench/"
SERVICES_REDIS = "redis://127.0.0.1:56379"
#: Redis database of the campaign's broker (the tests use 0 and flush it)
REDIS_DB = 11


# -- the objects the generated requests reach ----------------------------------------------------
def _wait(c: httpx.Client, job_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    job: dict = {}
    while time.monotonic() < deadline:
        job = c.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            assert job["state"] == "succeeded", job
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def seed_objects(url: str, token: str) -> dict[str, int | str]:
    """A project with three domains, 12 runs (one with a curve), a fit, a recommendation and an
    online session, made through the API of the server at ``url`` (its worker runs the jobs).
    Returns their ids by path parameter name (``project_id``, ``run_id``, ``fit_id``, ``job_id``,
    ``rec_id``, ``session_id``, a baseline's ``name``, two domains for the experts' routes) for
    our ``flatmap_path_parameters`` hook, which sends about half the generated requests to them."""
    h = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=h, timeout=60) as c:
        r = c.post(
            "/v1/projects",
            json={
                "name": "contract",
                "domains": [
                    {"name": "web", "token_count": 10**9},
                    {"name": "code", "token_count": 10**8},
                    {"name": "math", "token_count": 10**7},
                ],
            },
        )
        assert r.status_code == 201, r.text
        p = r.json()
        runs = [
            {
                "mixture": {"web": w, "code": (1 - w) / 2, "math": (1 - w) / 2},
                "metrics": {"val/web": 3 - w, "val/code": 2 + w},
            }
            for w in (i / 12 for i in range(12))
        ]
        r = c.post(f"/v1/projects/{p['id']}/runs", json={"runs": runs})
        assert r.status_code == 201, r.text
        ids = r.json()["ids"]
        c.post(
            f"/v1/projects/{p['id']}/runs/{ids[0]}/curve",
            json={"points": [{"step": 10, "metrics": {"val/web": 3.5}}]},
        )
        r = c.post(
            f"/v1/projects/{p['id']}/fits", json={"estimator": "regmix_linear", "cv_folds": 3}
        )
        assert r.status_code == 202, r.text
        job = r.json()
        _wait(c, job["job"]["id"])
        r = c.post(
            f"/v1/projects/{p['id']}/recommendations",
            json={"fit_id": job["fit"]["id"], "n_boot": 0, "allow_untrusted": True},
        )
        assert r.status_code == 202, r.text
        rec_job = _wait(c, r.json()["job"]["id"])
        r = c.post(f"/v1/projects/{p['id']}/online-sessions", json={"algorithm": "odm"})
        assert r.status_code == 201, r.text
        session = r.json()
        baselines = c.get(f"/v1/projects/{p['id']}/baselines").json()["mixtures"]
        return {
            "project_id": p["id"],
            "run_id": ids[0],
            "fit_id": job["fit"]["id"],
            "job_id": job["job"]["id"],
            "rec_id": rec_job["result"]["recommendation_id"],
            "session_id": session["id"],
            "name": sorted(baselines)[0],
            # experts' routes: the project's domains (none has a measured validation split, so
            # uploads reach the service's checks and are refused with a 422 naming the field)
            "domain": "web",
            "val_domain": "code",
        }


# -- schemathesis ---------------------------------------------------------------------------------
def schemathesis_command(
    url: str, token: str, seed: int, examples: int, report_dir: Path, phases: str = ""
) -> list[str]:
    """The schemathesis CLI, all checks, one worker, ``seed``, ``examples`` per operation (and
    phase), every phase unless ``phases`` names some; the JSON run report goes to
    ``report_dir/report.json``. Run it with :func:`schemathesis_env`."""
    return [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(CONTRACT / "schemathesis.toml"),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(examples),
        "--workers",
        "1",
        "-H",
        f"Authorization: Bearer {token}",
        "--no-color",
        "--seed",
        str(seed),
        "--suppress-health-check",
        "all",
        "--exclude-path-regex",
        EXCLUDE,
        "--report",
        "json",
        "--report-dir",
        str(report_dir),
        "--report-json-path",
        str(report_dir / "report.json"),
    ] + (["--phases", phases] if phases else [])


def schemathesis_env(tally: Path, ids: dict[str, int | str] | None = None) -> dict[str, str]:
    return {
        **os.environ,
        "SCHEMATHESIS_HOOKS": HOOKS,
        "PYTHONPATH": str(REPO),
        TALLY_ENV: str(tally),
        IDS_ENV: json.dumps(ids or {}),
    }


def reproduce(seed: int, examples: int, postgres: bool = False, phases: str = "") -> str:
    """The command that repeats one seed's run (a fresh server, the same seeded objects)."""
    pg = " --postgres" if postgres else ""
    ph = f" --phases {phases}" if phases else ""
    return f".venv/bin/python -m bench.fuzz{pg} --seed {seed} --examples {examples}{ph} --runs 1"


@dataclass
class Result:
    """One schemathesis run: its seed, the report's figures and our hook's tally."""

    seed: int
    examples: int
    exit_code: int
    seconds: float
    generated: int = 0
    failures: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    output: str = ""

    @property
    def fivexx(self) -> int:
        return sum(n for s, n in self.statuses.items() if int(s) >= 500)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.failures and not self.errors and not self.fivexx


def run_schemathesis(
    url: str,
    token: str,
    seed: int,
    examples: int,
    workdir: Path,
    phases: str = "",
    timeout: float | None = None,
    ids: dict[str, int | str] | None = None,
) -> Result:
    """Run schemathesis once and read back its JSON report and our tally; ``ids``: the seeded
    objects (:func:`seed_objects`) about half the generated requests go to."""
    report = workdir / f"seed-{seed}"
    report.mkdir(parents=True, exist_ok=True)
    tally = report / "tally.json"
    start = time.monotonic()
    proc = subprocess.run(
        schemathesis_command(url, token, seed, examples, report, phases),
        capture_output=True,
        text=True,
        env=schemathesis_env(tally, ids),
        cwd=report,
        check=False,
        timeout=timeout,
    )
    result = Result(seed, examples, proc.returncode, time.monotonic() - start)
    result.output = proc.stdout + proc.stderr
    doc_path = report / "report.json"
    if doc_path.exists():
        doc = json.loads(doc_path.read_text())
        result.generated = doc["test_cases"]["generated"]
        result.failures = doc["failures"]
        result.errors = doc["errors"]
    if tally.exists():
        t = json.loads(tally.read_text())
        result.statuses = Counter(t["statuses"])
        result.server_errors = t["server_errors"]
    return result


def summary(result: Result) -> str:
    """A few lines: the run's figures, then its failures and errors, if any."""
    lines = [
        f"seed {result.seed}: {result.generated} cases, {sum(result.statuses.values())} "
        f"responses ({dict(sorted(result.statuses.items()))}), {len(result.failures)} unique "
        f"failures, {len(result.errors)} errors, {result.fivexx} responses >= 500, "
        f"exit {result.exit_code}, {result.seconds:.0f} s"
    ]
    for f in result.failures:
        lines.append(f"  failure [{f['code']}] x{f['count']}: {f['title']} in {f['operations']}")
    for e in result.errors:
        lines.append(f"  error x{e['count']}: {e['title']}")
    lines += [f"  5xx: {s}" for s in result.server_errors[:20]]
    return "\n".join(lines)


# -- the server and its worker --------------------------------------------------------------------
def _redis_url() -> str | None:
    """The Redis of scripts/services.sh (its campaign database), if one answers."""
    base = os.environ.get("MIXOPT_TEST_REDIS_URL", SERVICES_REDIS).rsplit("/", 1)[0]
    if base.count("/") < 2:  # no database part: the whole URL is the server
        base = os.environ.get("MIXOPT_TEST_REDIS_URL", SERVICES_REDIS)
    try:
        import redis

        client = redis.Redis.from_url(f"{base}/{REDIS_DB}", socket_connect_timeout=2)
        client.flushdb()
    except Exception:  # noqa: BLE001 - any failure: no Redis
        return None
    return f"{base}/{REDIS_DB}"


@contextmanager
def worker_process(home: Path) -> Iterator[subprocess.Popen]:
    """A Celery worker with beat on every queue the settings name, logging to ``home``."""
    from app.core.config import Settings
    from workers.embedded import worker_command

    settings = Settings()
    queues = sorted(
        {*settings.queue_list, settings.job_queue, settings.maintenance_queue, "default", "gpu"}
    )
    log_path = home / "worker.log"
    log = open(log_path, "ab")  # noqa: SIM115 - closed below
    # the embedded worker's command (one process), plus beat in it and no cluster chatter
    cmd = worker_command(settings, ",".join(queues), 1, role="fuzz") + [
        "--without-heartbeat",
        "--without-gossip",
        "--without-mingle",
        "-B",
        "-s",
        str(home / "beat-schedule"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while b"ready." not in log_path.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def campaign_env(home: Path, broker: str) -> dict[str, str]:
    """Settings of the server and worker under fuzzing (set in this process's environment,
    which both inherit): schemathesis sends bad tokens on purpose, so the failed-authentication
    limits are lifted (they would turn the rest of the run into 429s)."""
    return {
        "MIXOPT_HOME": str(home),
        "MIXOPT_BROKER_URL": broker,
        "MIXOPT_ADMIN_TOKEN": "mxo_bench_admin_token_0123456789abcdef",
        "MIXOPT_AUTH_FAILURES_PER_WINDOW": "1000000",
        "MIXOPT_AUTH_CREDENTIAL_FAILURES_PER_WINDOW": "1000000",
        "MIXOPT_TORCH_THREADS": "1",
    }


def _operations(url: str) -> int:
    doc = httpx.get(f"{url}/openapi.json", timeout=30).json()
    methods = {"get", "put", "post", "delete", "patch", "head", "options"}
    return sum(
        1
        for path, item in doc["paths"].items()
        if not path.startswith("/bench/")
        for m in item
        if m in methods
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--database-url", help="sqlite:///... or a PostgreSQL server's URL")
    ap.add_argument("--postgres", action="store_true", help="the PostgreSQL of services.sh")
    ap.add_argument("--cases", type=int, default=10_000, help="generated cases, at least")
    ap.add_argument("--seed", type=int, default=1, help="the first run's seed (then +1, ...)")
    ap.add_argument("--examples", type=int, default=100, help="per operation and phase, per run")
    ap.add_argument("--runs", type=int, default=50, help="at most this many runs")
    ap.add_argument("--phases", default="", help="schemathesis phases (default: all)")
    ap.add_argument("--keep", help="keep the reports in this folder")
    args = ap.parse_args(argv)
    # a TERM (or an INT, which a background job ignores) ends the campaign through the context
    # managers: the server, the worker and the fresh database go with it
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    url = _postgres_url() if args.postgres and not args.database_url else args.database_url
    pg = bool(url and url.startswith("postgresql"))
    home = Path(tempfile.mkdtemp(prefix="mixopt-fuzz-"))
    work = Path(args.keep) if args.keep else home / "reports"
    broker = (_redis_url() if pg else None) or f"sqla+sqlite:///{home}/broker.db"
    os.environ.update(campaign_env(home, broker))
    start = time.monotonic()
    results: list[Result] = []
    with fresh_database(url) as db_url:
        db_url = db_url or f"sqlite:///{home}/fuzz.db"
        with server_process(db_url) as (api, token, _proc):
            os.environ["MIXOPT_DATABASE_URL"] = db_url
            with worker_process(home):
                ids = seed_objects(api, token)
                ops = _operations(api)
                examples = args.examples
                print(
                    f"fuzz: {'PostgreSQL' if pg else 'SQLite'}, {ops} operations, {examples} "
                    f"examples per operation and run, broker {broker.split(':')[0]}",
                    flush=True,
                )
                seed = args.seed
                while len(results) < args.runs and sum(r.generated for r in results) < args.cases:
                    result = run_schemathesis(
                        api, token, seed, examples, work, args.phases, ids=ids
                    )
                    results.append(result)
                    print(summary(result), flush=True)
                    if not result.ok:
                        print(
                            f"  reproduce: {reproduce(seed, examples, pg, args.phases)}", flush=True
                        )
                        print(result.output[-6000:], flush=True)
                    h = {"Authorization": f"Bearer {token}"}
                    kept = httpx.get(f"{api}/v1/projects/{ids['project_id']}", headers=h)
                    print(f"  the seeded project is still there: {kept.status_code == 200}")
                    if result.generated == 0:
                        break
                    seed += 1
    cases = sum(r.generated for r in results)
    statuses = sum((r.statuses for r in results), Counter())
    failures = sum(len(r.failures) for r in results)
    errors = sum(len(r.errors) for r in results)
    fivexx = sum(r.fivexx for r in results)
    print(
        f"\ncampaign on {'PostgreSQL' if pg else 'SQLite'}: {cases} generated cases, "
        f"{sum(statuses.values())} responses, seeds {[r.seed for r in results]}, "
        f"{failures} unique failures, {errors} errors, {fivexx} responses >= 500, "
        f"{time.monotonic() - start:.0f} s; statuses {dict(sorted(statuses.items()))}"
    )
    ok = all(r.ok for r in results) and cases >= args.cases
    if ok:
        shutil.rmtree(home, ignore_errors=True)
    else:  # the database (SQLite), the worker's log: what the failures left
        print(f"kept for inspection: {home}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
