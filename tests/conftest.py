"""Test fixtures: a real database migrated with Alembic (SQLite by default, PostgreSQL when
``MIXOPT_TEST_DATABASE_URL`` names one), emptied after every test."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text

_HOME = tempfile.mkdtemp(prefix="mixopt-test-")
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
DATABASE_URL = os.environ.get("MIXOPT_TEST_DATABASE_URL") or f"sqlite:///{_HOME}/test.db"
os.environ["MIXOPT_HOME"] = _HOME
os.environ["MIXOPT_DATABASE_URL"] = DATABASE_URL
os.environ.pop("MIXOPT_ADMIN_TOKEN", None)
os.environ["MIXOPT_AUTO_MIGRATE"] = "false"  # the engine fixture runs the migrations once

REPO = Path(__file__).resolve().parent.parent
#: data roots of the tests: the home's data dir, the fixture corpora, and /data (examples in
#: tests name /data/... paths that need not exist)
DATA_ROOTS = [Path(_HOME) / "data", REPO / "tests" / "fixtures" / "corpora", Path("/data")]
os.environ["MIXOPT_DATA_ROOTS"] = os.pathsep.join(map(str, DATA_ROOTS))
os.environ.pop("MIXOPT_ADMIN_DATA_ROOTS", None)
#: swarm queues must be configured ones (MIXOPT_QUEUES): these are the ones tests route jobs to
os.environ["MIXOPT_QUEUES"] = "default,gpu,killtest,faults,gpu-a,gpu-b,valpar,idle"

REGMIX_DIR = REPO / "mixopt" / "data" / "regmix"


def _drop_everything(engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        else:
            tables = [
                r[0]
                for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))
            ]
            conn.execute(text("PRAGMA foreign_keys=OFF"))
            for t in tables:
                conn.execute(text(f'DROP TABLE IF EXISTS "{t}"'))


@pytest.fixture(scope="session")
def engine():
    from app.store import migrate
    from app.store.db import get_engine, reset_caches

    reset_caches()
    eng = get_engine()
    _drop_everything(eng)
    migrate.upgrade(DATABASE_URL)
    yield eng
    reset_caches()


def _empty_tables(engine) -> None:
    from app.store.models import Base

    names = [t.name for t in reversed(Base.metadata.sorted_tables)]
    if engine.dialect.name == "postgresql":
        from sqlalchemy.exc import OperationalError

        # the session's worker (its reaper) may hold a share lock the TRUNCATE waits on while it
        # waits on the TRUNCATE's: PostgreSQL breaks the deadlock by failing one side; try again
        for attempt in range(5):
            try:
                with engine.begin() as conn:
                    conn.execute(
                        text(
                            "TRUNCATE "
                            + ", ".join(f'"{n}"' for n in names)
                            + " RESTART IDENTITY CASCADE"
                        )
                    )
                return
            except OperationalError as exc:
                if "deadlock detected" not in str(exc) or attempt == 4:
                    raise
                time.sleep(0.2)
    with engine.begin() as conn:
        for n in names:
            conn.execute(text(f'DELETE FROM "{n}"'))
        conn.execute(text("DELETE FROM sqlite_sequence")) if _has_sqlite_sequence(conn) else None


def _has_sqlite_sequence(conn) -> bool:
    return bool(
        conn.execute(text("SELECT 1 FROM sqlite_master WHERE name='sqlite_sequence'")).first()
    )


@pytest.fixture
def db(engine) -> Iterator[None]:
    yield
    _empty_tables(engine)
    # files named by database ids (experts' probabilities) would be found by the next test's
    # objects, whose ids start again at 1
    shutil.rmtree(Path(_HOME) / "experts", ignore_errors=True)


@pytest.fixture
def session(db):
    from app.store.db import get_sessionmaker

    s = get_sessionmaker()()
    yield s
    s.close()


@pytest.fixture
def client(db):
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app()) as c:
        yield c


@pytest.fixture
def admin_token(db) -> str:
    from app.services import tokens
    from app.store.db import session_scope

    with session_scope() as s:
        _, plain = tokens.create_token(s, "test admin", "admin")
    return plain


@pytest.fixture
def admin(admin_token) -> dict[str, str]:
    return {"Authorization": f"Bearer {admin_token}"}


def make_project(client, headers, name="demo", domains=("web", "code", "math"), **extra) -> dict:
    body = {"name": name, "domains": [{"name": d} for d in domains], **extra}
    r = client.post("/v1/projects", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def count_rows(table: str) -> int:
    from app.store.db import get_engine

    with get_engine().connect() as conn:
        return conn.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one()


PURE_DIRS = ("science", "training", "online")


def pytest_collection_modifyitems(config, items):
    for item in items:
        parts = Path(str(item.fspath)).parts
        if any(d in parts for d in PURE_DIRS):
            item.add_marker(pytest.mark.science)


# -- a real Celery worker -------------------------------------------------------------------
# Redis when scripts/services.sh started one (CI), else kombu's SQLAlchemy transport over a
# SQLite file in the test home: a real broker and a real worker process either way.
BROKER_URL = os.environ.get("MIXOPT_TEST_REDIS_URL") or f"sqla+sqlite:///{_HOME}/broker.db"
os.environ["MIXOPT_BROKER_URL"] = BROKER_URL
os.environ.setdefault("MIXOPT_STALE_JOB_SECONDS", "6")
os.environ.setdefault("MIXOPT_ONLINE_TICK_SECONDS", "1")
os.environ.setdefault("MIXOPT_REAP_INTERVAL_SECONDS", "2")
os.environ.setdefault("MIXOPT_TORCH_THREADS", "1")


def _flush_broker() -> None:
    if BROKER_URL.startswith("redis"):
        import redis

        redis.Redis.from_url(BROKER_URL).flushdb()


def start_worker_process(
    name: str,
    extra_env: dict | None = None,
    beat: bool = False,
    queues: str = "default,gpu",
    concurrency: int = 1,
):
    import subprocess
    import sys

    log = open(Path(_HOME) / f"worker-{name}.log", "ab")  # noqa: SIM115
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.celery_app",
        "worker",
        "-Q",
        queues,
        "-c",
        str(concurrency),
        "--loglevel",
        "INFO",
        "-n",
        f"{name}@%h",
        "--without-heartbeat",
        "--without-gossip",
        "--without-mingle",
    ]
    if beat:
        cmd += ["-B", "-s", str(Path(_HOME) / f"beat-{name}")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(extra_env or {})}
    from workers.procs import die_with_parent

    parent = os.getpid()  # a killed pytest run leaves no worker behind
    proc = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=REPO,
        start_new_session=True,
        preexec_fn=lambda: die_with_parent(parent),
    )
    deadline = time.monotonic() + 60
    path = Path(_HOME) / f"worker-{name}.log"
    while time.monotonic() < deadline:
        if b"ready." in path.read_bytes():
            return proc
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited: {path.read_text()[-2000:]}")
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"worker did not start: {path.read_text()[-2000:]}")


@pytest.fixture(scope="session")
def worker(engine):
    _flush_broker()
    # its beat's housekeeping goes to the maintenance queue: this worker consumes it too
    proc = start_worker_process("main", beat=True, queues="default,gpu,maintenance")
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except Exception:
        proc.kill()


def wait_job(client, headers, job_id: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s: {job}")


@contextmanager
def server_in_thread():
    """A real uvicorn server (in a thread) on the test database; yields its base URL."""
    import socket
    import threading

    import uvicorn

    from app.main import create_app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def live_server(db):
    with server_in_thread() as url:
        yield url
