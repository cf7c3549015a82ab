"""The wheel is complete and the installs come by need (pyproject extras).

* the base wheel, installed into a fresh venv from the package registry, is the client and CLI
  front: ``mixopt.client`` imports with numpy and torch absent, and a server command says which
  extra to install instead of a traceback;
* the same wheel, installed without its source tree, runs ``mixopt serve`` from another
  directory: migrations, dashboard templates and static files are package data. That venv
  borrows the already-installed dependencies of this one through a path entry (not a site
  dir, so this checkout's editable install is not loaded): the test is about what the wheel
  carries, not about downloading the server stack again.
"""

from __future__ import annotations

import shutil
import socket
import sqlite3
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.packaging
SKIP = shutil.ignore_patterns(
    ".venv",
    ".git",
    "__pycache__",
    "artifacts",
    "build",
    "dist",
    "*.egg-info",
    ".pytest_cache",
    ".ruff_cache",
    "node_modules",
)


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=kw.pop("timeout", 600), **kw)
    assert out.returncode == 0, (
        f"{cmd}: {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    )
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of this tree (the build never writes into the checkout)."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    shutil.copytree(ROOT, src, ignore=SKIP)
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(work / "dist"),
            str(src),
        ]
    )
    (whl,) = (work / "dist").glob("mixopt-*.whl")
    return whl


def _venv(path: Path) -> Path:
    _run([sys.executable, "-m", "venv", str(path)])
    return path / "bin"


def test_base_install_is_the_client_only(wheel, tmp_path):
    bin_dir = _venv(tmp_path / "base")
    _run([str(bin_dir / "pip"), "install", "-q", "--disable-pip-version-check", str(wheel)])
    probe = (
        "import importlib.util, sys\n"
        "import mixopt.client, mixopt.cli\n"
        "assert importlib.util.find_spec('numpy') is None, 'numpy installed'\n"
        "assert importlib.util.find_spec('torch') is None, 'torch installed'\n"
        "assert importlib.util.find_spec('fastapi') is None, 'fastapi installed'\n"
        "print(mixopt.client.MixoptClient.__name__)\n"
    )
    out = _run([str(bin_dir / "python"), "-c", probe], cwd=tmp_path)
    assert out.stdout.strip() == "MixoptClient"
    # a command whose extra is missing: exit 3 and the pip command, no traceback
    res = subprocess.run(
        [str(bin_dir / "mixopt"), "serve"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert res.returncode == 3, res.stdout + res.stderr
    assert "mixopt[server]" in res.stderr and not res.stdout
    assert "Traceback" not in res.stderr
    res = subprocess.run(
        [str(bin_dir / "mixopt"), "demo-data"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert res.returncode == 3 and "mixopt[train]" in res.stderr and not res.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_wheel_serves_from_another_directory(wheel, tmp_path):
    bin_dir = _venv(tmp_path / "srv")
    _run(
        [
            str(bin_dir / "pip"),
            "install",
            "-q",
            "--no-deps",
            "--disable-pip-version-check",
            str(wheel),
        ]
    )
    site = next((tmp_path / "srv" / "lib").glob("python3*/site-packages"))
    # this venv's dependencies, appended after the wheel's own files
    (site / "zz_borrowed_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    where = _run(
        [
            str(bin_dir / "python"),
            "-c",
            "import app, migrations, mixopt, workers;"
            "print(app.__file__, migrations.__file__, mixopt.__file__, workers.__file__)",
        ],
        cwd=tmp_path,
    )
    assert all(p.startswith(str(site)) for p in where.stdout.split()), where.stdout
    home, cwd = tmp_path / "home", tmp_path / "elsewhere"
    cwd.mkdir()
    port = _free_port()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MIXOPT_HOME": str(home)}
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(bin_dir / "mixopt"), "serve", "--no-worker", "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
        else:
            raise AssertionError("serve did not answer: " + (tmp_path / "serve.log").read_text())
        login = httpx.get(url + "/dashboard/login", timeout=10)
        assert login.status_code == 200 and "<form" in login.text
        assert httpx.get(url + "/dashboard/static/dashboard.css", timeout=10).status_code == 200
        with sqlite3.connect(home / "mixopt.db") as db:
            (version,) = db.execute("select version_num from alembic_version").fetchone()
        assert version
        assert (
            httpx.get(
                url + "/v1/projects",
                timeout=10,
                headers={"Authorization": f"Bearer {(home / 'admin_token').read_text().strip()}"},
            ).status_code
            == 200
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
