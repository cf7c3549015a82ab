"""``mixopt demo``: the main job, end to end on the embedded default.

1. start the service (API + embedded Celery worker on SQLite, CPU) in a subprocess;
2. import the 512 public RegMix proxy runs, fit every estimator (``auto``) on the Pile-CC
   loss and recommend a mixture, printed beside uniform with fidelity figures;
3. build the demo corpora, train a swarm of micro proxy models on them, fit, recommend and
   print the recommendation beside natural and uniform (skipped with ``--no-train``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from rich.console import Console

from mixopt.client import ConnectionFailed, MixoptClient
from mixopt.demo_training import training_part
from mixopt.paths import mixopt_home
from mixopt.render import fidelity_table, mixture_table

console = Console()
DATA = Path(__file__).parent / "data" / "regmix"
PILE_CC = "metric/the_pile_pile_cc_val_loss"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(port: int | None = None) -> tuple[subprocess.Popen, str]:
    port = port or _free_port()
    home = mixopt_home()
    home.mkdir(parents=True, exist_ok=True)
    log = open(home / "serve.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "mixopt.cli", "serve", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise ConnectionFailed(url, f"mixopt serve exited; see {home / 'serve.log'}")
        time.sleep(0.1)
    proc.terminate()
    raise ConnectionFailed(url, "mixopt serve did not start in 60 s")


def admin_token() -> str:
    return (mixopt_home() / "admin_token").read_text().strip()


def regmix_part(c: MixoptClient) -> None:
    console.rule("RegMix: 512 public proxy runs (1M-parameter models, 17 Pile domains)")
    p = next((p for p in c.list_projects() if p["name"] == "demo-regmix-pile"), None)
    if p is None:
        p = c.create_project(
            "demo-regmix-pile",
            objective={PILE_CC: 1.0},
            description="RegMix's 512 proxy runs; target: Pile-CC validation loss",
        )
    r = c.import_runs(
        p["id"],
        DATA / "train_mixture_1m.csv",
        DATA / "train_pile_loss_1m.csv",
        on_duplicate="skip",
        tags=["regmix-1m"],
        model_params=1_000_000,
        train_tokens=1_000_000_000,
    )
    console.print(f"imported {r['created']} runs (skipped {r['skipped']} already there)")
    page = c.page_runs(p["id"], limit=3)
    console.print(
        f"{page['count']} runs stored; first: "
        + ", ".join(f"#{x['id']} Pile-CC={x['metrics'][PILE_CC]:.3f}" for x in page["data"])
    )
    accepted = c.fit(p["id"], "auto")
    job = c.wait(accepted, timeout=900)
    fit = c.get_fit(p["id"], job["result"]["fit_id"])
    chosen = ((fit.get("state") or {}).get("fitted") or {}).get("chosen", fit["estimator"])
    console.print(
        fidelity_table(f"5-fold CV on Pile-CC loss, 512 runs (auto chose: {chosen})", fit)
    )
    rec_job = c.wait(c.recommend(p["id"], fit_id=fit["id"]), timeout=900)
    rec = c.get_recommendation(p["id"], rec_job["result"]["recommendation_id"])
    domains = fit["domains"]
    uniform = {d: 1 / len(domains) for d in domains}
    pred = c.predict(p["id"], fit["id"], [uniform, rec["mixture"]])
    console.print(
        mixture_table(
            "recommended vs uniform", domains, {"recommended": rec["mixture"], "uniform": uniform}
        )
    )
    console.print(
        f"predicted Pile-CC loss: recommended {rec['predicted']:.4f} "
        f"[{rec['interval_low']:.4f}, {rec['interval_high']:.4f}], "
        f"uniform {pred['objective'][0]:.4f}; "
        f"binding constraints: {rec['binding'] or 'none'}"
    )


def main(train: bool = True, port: int | None = None) -> None:
    proc, url = start_service(port)
    try:
        c = MixoptClient(url, admin_token(), timeout=600)
        console.print(f"service up at {url} (docs: {url}/docs, dashboard: {url}/dashboard)")
        regmix_part(c)
        if train:
            training_part(c, console)
        console.print(
            "\nthe service is still yours: `mixopt serve` and open "
            f"{url.rsplit(':', 1)[0]}:8000/dashboard"
        )
    finally:  # an error goes on to the command's error path (mixopt.cli.errors)
        # serve stops its worker (up to 20 s of warm shutdown, then SIGKILL to the worker's group)
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
