"""``mixopt swarm --strategy rounds``: the options it needs, the API's refusal named, and what
it prints once the swarm is planned (against a real server, no worker)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from mixopt.cli import ExitStatus
from mixopt.cli import app as cli
from mixopt.client import MixoptClient
from tests.factories import CORPORA
from tests.factories import CORPUS_DOMAINS as DOMAINS


def _cli(env: dict, *args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def test_swarm_in_rounds_from_the_command_line(live_server, admin_token):
    env = {"MIXOPT_URL": live_server, "MIXOPT_TOKEN": admin_token, "COLUMNS": "300"}
    domains = [
        {"name": d, "source": {"path": str(CORPORA / d), "format": "jsonl"}, "token_count": n}
        for d, n in zip(DOMAINS, (1000, 2000, 3000, 4000), strict=False)
    ]
    pid = MixoptClient(live_server, admin_token).create_project("r", domains=domains).id
    base = ["swarm", pid, "--steps", 5, "--preset", "micro", "--strategy", "rounds"]
    r = _cli(env, *base, "--total-budget", 6)
    assert r.exit_code == ExitStatus.USAGE and "--round-size" in r.stderr, r.stderr
    r = _cli(env, *base, "--total-budget", 4, "--round-size", 6, "--no-wait")
    assert r.exit_code == ExitStatus.API_REFUSED and "round_size" in r.stderr, r.stderr
    r = _cli(env, *base, "--total-budget", 7, "--round-size", 2, "--no-wait", "--json")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    # round 1: K + 1 = 5 runs (twice the round size would be fewer), then 2
    assert out["job"]["kind"] == "swarm_rounds" and out["job"]["params"]["sizes"] == [5, 2]
    assert [e["round"] for e in out["rounds"]] == [1] and len(out["rounds"][0]["run_ids"]) == 5
    r = _cli(
        env, *base, "--total-budget", 6, "--round-size", 2, "--no-wait", "--acquisition", "lcb"
    )
    assert r.exit_code == 0, r.stderr
    assert "in rounds" in r.stdout and "round 1: 0/5 runs trained" in r.stdout, r.stdout


def test_client_creates_a_swarm_in_rounds(live_server, admin_token):
    c = MixoptClient(live_server, admin_token)
    domains = [
        {"name": d, "source": {"path": str(CORPORA / d), "format": "jsonl"}, "token_count": n}
        for d, n in zip(DOMAINS, (1000, 2000, 3000, 4000), strict=False)
    ]
    pid = c.create_project("rc", domains=domains).id
    acc = c.create_swarm(
        pid, strategy="rounds", total_budget=7, round_size=3, train_steps=5, preset="micro"
    )
    assert len(acc.run_ids) == 6 and acc.rounds_job is not None
    assert acc.rounds_job.kind == "swarm_rounds" and acc.rounds_job.params["sizes"] == [6, 1]
    job = c.get_job(acc.rounds_job.id)
    assert job.params["rounds"] == [{"round": 1, "run_ids": acc.run_ids}]
