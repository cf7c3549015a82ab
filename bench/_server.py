"""A real uvicorn server in a subprocess, for benchmarks (API app + a bare reference route)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


def bench_app():
    """The mixopt app plus ``POST /bench/bare``: parses the same JSON body and does nothing else
    (the reference for the service's own overhead)."""
    from typing import Any

    from fastapi import Body

    from app.main import create_app

    app = create_app()

    @app.post("/bench/bare")
    def bare(payload: dict[str, Any] = Body(...)) -> dict[str, int]:
        return {"count": len(payload.get("runs", []))}

    @app.get("/bench/bare")
    def bare_get() -> dict[str, int]:
        return {"count": 0}

    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(database_url: str | None, workers: int = 1):
    """Start migrations + uvicorn on a fresh database; yield (base_url, admin_token)."""
    with server_process(database_url, workers) as (url, token, _proc):
        yield url, token


@contextmanager
def server_process(database_url: str | None, workers: int = 1, extra_args: Sequence[str] = ()):
    """:func:`running_server` that also yields the uvicorn process (its pid: memory figures)
    and passes ``extra_args`` to uvicorn; yield (base_url, admin_token, process)."""
    home = tempfile.mkdtemp(prefix="mixopt-bench-")
    env = {
        **os.environ,
        "MIXOPT_HOME": home,
        "MIXOPT_ADMIN_TOKEN": "mxo_bench_admin_token_0123456789abcdef",
    }
    env["MIXOPT_DATABASE_URL"] = database_url or f"sqlite:///{home}/bench.db"
    if database_url and database_url.startswith("postgresql"):
        reset = (
            "from sqlalchemy import create_engine, text\n"
            f"e = create_engine({database_url!r})\n"
            "with e.begin() as c:\n c.execute(text('DROP SCHEMA public CASCADE')); "
            "c.execute(text('CREATE SCHEMA public'))\n"
        )
        subprocess.run([sys.executable, "-c", reset], check=True, env=env, cwd=REPO)
    subprocess.run(
        [sys.executable, "-m", "mixopt.cli", "db", "upgrade"],
        check=True,
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run(
        [sys.executable, "-c", "from app.bootstrap import prepare; prepare()"],
        check=True,
        env=env,
        cwd=REPO,
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench._server:bench_app",
            "--factory",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--workers",
            str(workers),
            *extra_args,
        ],
        env=env,
        cwd=REPO,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            raise RuntimeError("server did not start")
        yield url, env["MIXOPT_ADMIN_TOKEN"], proc
    finally:
        proc.terminate()
        proc.wait(timeout=20)
