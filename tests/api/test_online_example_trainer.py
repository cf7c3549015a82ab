"""The example external trainer steers itself through a real server, worker and beat."""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

from tests.conftest import REPO


def test_example_external_trainer_with_aioli(live_server, admin_token, worker):
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    env = {
        **os.environ,
        "MIXOPT_URL": live_server,
        "MIXOPT_TOKEN": admin_token,
        "OMP_NUM_THREADS": "1",
    }
    cmd = [
        sys.executable,
        "examples/external_trainer.py",
        "--algorithm",
        "aioli",
        "--params",
        '{"update_steps": 40, "lp_rounds": 1, "lp_steps": 4}',
        "--domain",
        f"code={stdlib / 'json'}",
        "--domain",
        f"docs={stdlib / 'pydoc_data'}",
        "--steps",
        "130",
        "--report-every",
        "5",
    ]
    out = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "validation bits/byte" in out.stdout
    from mixopt.client import MixoptClient

    c = MixoptClient(live_server, admin_token)
    project = c.list_projects()[0]["id"]
    session = c.list_online_sessions(project)[0]
    hist = c.session_history(project, session["id"])
    # every sweep boundary of every round was reported: 3 rounds x (1 + 2 sweeps) evaluations
    steps = [o["step"] for o in hist["observations"]]
    assert steps == [0, 4, 8, 40, 44, 48, 80, 84, 88, 120, 124, 128], steps
    plan = c.weights(project, session["id"], step=130)[0]["plan"]
    assert plan["phase"] in ("learn", "mix")
