"""The trainer examples run against a real server: each reports a succeeded run with its
per-domain losses and its curve, and reports to the online session it created."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mixopt.client import MixoptClient
from tests.conftest import REPO


@pytest.mark.parametrize(
    "script, module",
    [
        ("hf_trainer.py", "transformers"),
        ("lightning_trainer.py", "lightning"),
        ("olmo_core_trainer.py", "olmo_core"),
    ],
)
def test_trainer_example(live_server, admin_token, script, module):
    pytest.importorskip(module)
    env = {**os.environ, "MIXOPT_URL": live_server, "MIXOPT_TOKEN": admin_token}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, f"examples/{script}", "--steps", "30", "--interval", "5"]
    out = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    c = MixoptClient(live_server, admin_token)
    (project,) = c.list_projects()
    (run,) = c.list_runs(project.id)
    assert run.status == "succeeded" and run.train_steps == 30
    assert set(run.metrics) == {"val_loss/code", "val_loss/docs", "val_loss/mail"}
    assert f"run {run.id} succeeded" in out.stdout
    steps = [p["step"] for p in c.get_curve(project.id, run.id)["points"]]
    assert steps == [10, 20, 30]
    (session,) = c.list_online_sessions(project.id)
    obs = c.session_history(project.id, session.id)["observations"]
    assert [o["step"] for o in obs[:6]] == [4, 9, 14, 19, 24, 29]
    assert all(set(o["train_losses"]) == {"code", "docs", "mail"} for o in obs[:6])
