"""``--json`` on every client command: each command of the Typer app that talks to the API has
the option, and each one that can run against the test server (a real server and worker) prints
JSON that parses, with the values the API holds."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from mixopt.cli import app as cli
from tests.conftest import REGMIX_DIR

MIX, LOSS = REGMIX_DIR / "train_mixture_1m.csv", REGMIX_DIR / "train_pile_loss_1m.csv"
PILE_CC = "metric/the_pile_pile_cc_val_loss"

#: client commands not run here, and why (their own tests run them)
NOT_RUN = {
    "ingest": "tokenises the domains' sources (tests/training)",
    "swarm": "trains proxy models (tests/training)",
    "validate": "trains models per mixture (tests/api/test_validations.py)",
    "runs import-mlflow": "needs an MLflow store (tests/integrations)",
    "runs import-wandb": "needs a W&B export (tests/integrations)",
    "experts train": "trains one model per domain (tests/api/test_experts.py)",
    "experts list": "needs uploaded probability files (tests/api/test_experts.py)",
    "experts upload": "needs a validation split's token count (tests/api/test_experts.py)",
}


def _commands() -> dict[str, Any]:
    """Every leaf command of the app, by its path (``runs list``)."""
    out: dict[str, Any] = {}

    def walk(cmd: Any, path: str) -> None:
        subs = getattr(cmd, "commands", {})
        for name, sub in subs.items():
            walk(sub, f"{path} {name}".strip())
        if not subs:
            out[path] = cmd

    walk(typer.main.get_command(cli), "")
    return out


def _client_commands() -> dict[str, Any]:
    """The commands that talk to the API: they take ``--url`` (the server's own commands, from
    workers.cli, are not client commands)."""
    return {
        path: cmd
        for path, cmd in _commands().items()
        if any(p.name == "url" for p in cmd.params)
        and not cmd.callback.__module__.startswith("workers.")
    }


def test_every_client_command_has_json():
    commands = _client_commands()
    assert len(commands) >= 25  # the enumeration finds the command tree
    missing = [
        path
        for path, cmd in commands.items()
        if not any("--json" in getattr(p, "opts", []) for p in cmd.params)
    ]
    assert missing == []


class _Cli:
    """Runs commands with ``--json``, parses their output, and records which ran."""

    def __init__(self, env: dict):
        self.env = env
        self.ran: set[str] = set()
        self.groups = {p.split()[0] for p in _commands() if " " in p}

    def __call__(self, *args: object) -> Any:
        argv = [str(a) for a in args]
        r = CliRunner().invoke(cli, [*argv, "--json"], env=self.env)
        assert r.exit_code == 0, (argv, r.exit_code, r.stdout, r.stderr)
        path = " ".join(argv[:2]) if argv[0] in self.groups else argv[0]
        self.ran.add(path)
        return json.loads(r.stdout)


@pytest.fixture
def run(live_server, admin_token) -> _Cli:
    return _Cli({"MIXOPT_URL": live_server, "MIXOPT_TOKEN": admin_token, "COLUMNS": "300"})


def test_json_output_of_every_command_parses(run, worker, tmp_path):
    # projects: create, get-or-create (the same project twice), list, show, domains
    p = run("project", "create", "pile")
    assert run("project", "create", "pile", "--get-or-create")["id"] == p["id"]
    assert [x["id"] for x in run("project", "list")] == [p["id"]]
    q = run("project", "create", "other", "-d", "web", "-d", "code")
    assert run("project", "show", q["id"])["name"] == "other"
    changed = run("project", "domains", q["id"], "--add", "math")
    current = [v for v in changed["data"] if v["version"] == changed["current_version"]]
    assert [d["name"] for d in current[0]["domains"]] == ["web", "code", "math"]
    pid = p["id"]

    # runs: import, list (sorted by a metric), export
    imported = run("runs", "import", pid, MIX, LOSS, "--tag", "regmix")
    assert imported["created"] == 512
    listed = run("runs", "list", pid, "--sort", f"-{PILE_CC}", "--limit", 5)
    values = [r["metrics"][PILE_CC] for r in listed["data"]]
    assert listed["count"] == 512 and len(values) == 5 and values == sorted(values, reverse=True)
    exported = run("runs", "export", pid, "--out", tmp_path / "csv")
    assert exported["runs"] == 512 and len(exported["files"]) == 2
    assert (
        run("runs", "export", pid, "--format", "json", "--out", tmp_path / "r.json")["runs"] == 512
    )

    # a fit and a recommendation, labelled; listed by tag; best
    fit = run("fit", pid, "-e", "regmix_linear", "--cv-folds", 3, "--name", "lin", "--label", "v1")
    assert fit["status"] == "succeeded" and fit["name"] == "lin" and fit["tags"] == ["v1"]
    found = run("fits", "list", pid, "--tag", "v1")
    assert found["count"] == 1 and found["data"][0]["id"] == fit["id"]
    assert run("fits", "list", pid, "--tag", "none")["count"] == 0
    assert run("fits", "label", pid, fit["id"], "--set-tag", "v2")["tags"] == ["v2"]
    out = run(
        "recommend",
        *(pid, "--fit", fit["id"], "--n-boot", 0, "--trust-region", 0.05),
        *("--label", "cand", "--name", "r"),
    )
    rec = out["recommendation"]
    assert rec["tags"] == ["cand"] and rec["name"] == "r" and out["fit"]["id"] == fit["id"]
    assert abs(sum(rec["mixture"].values()) - 1) < 1e-6
    assert run("best", pid)["recommendation"]["id"] == rec["id"]
    recs = run("recommendations", "list", pid, "--tag", "cand")
    assert [r["id"] for r in recs["data"]] == [rec["id"]]
    labelled = run("recommendations", "label", pid, rec["id"], "--clear-name")
    assert labelled["name"] is None and labelled["tags"] == ["cand"]

    # the export, on stdout and to a file
    shown = run("mixture", "export", rec["id"], "-p", pid)
    assert json.loads(shown["content"]) and shown["bytes"] == len(shown["content"].encode())
    written = run("mixture", "export", rec["id"], "-p", pid, "-o", tmp_path / "m.json")
    assert written["bytes"] == (tmp_path / "m.json").stat().st_size

    # jobs: list, watch (a finished job), cancel (a job just submitted)
    jobs = run("jobs", "list", "--project", pid)
    assert fit["job_id"] in [j["id"] for j in jobs]
    assert run("jobs", "watch", fit["job_id"])["state"] == "succeeded"
    slow = run("fit", pid, "-e", "auto", "--no-wait")
    cancelled = run("jobs", "cancel", slow["job_id"])
    assert cancelled["id"] == slow["job_id"]

    # deletes: the recommendation, then the fit
    assert run("recommendations", "delete", pid, rec["id"]) == {
        "deleted": "recommendation",
        "id": rec["id"],
        "project_id": pid,
    }
    assert run("fits", "delete", pid, fit["id"])["deleted"] == "fit"
    assert run("fits", "list", pid)["count"] == 1  # the cancelled one

    assert set(_client_commands()) - set(NOT_RUN) - run.ran == set()


def test_recommend_takes_phases_and_a_reference(run, live_server, admin_token, worker, tmp_path):
    from mixopt.client import MixoptClient

    names = ["web", "code", "math"]
    counts = {"web": 100_000, "code": 100_000, "math": 15_000}
    c = MixoptClient(live_server, admin_token)
    p = c.create_project(
        "staged",
        [{"name": n, "token_count": counts[n]} for n in names],
        objective={"web_loss": 1.0, "math_loss": 1.0},
        constraints={"target_tokens": 110_000, "max_epochs": 1.0},
    )
    rng = np.random.default_rng(0)
    c.add_runs(
        p.id,
        [
            {
                "mixture": dict(zip(names, map(float, x), strict=True)),
                "metrics": {
                    "web_loss": float(2 + np.exp(-2 * x[0] - 0.2 * x[1])),
                    "math_loss": float(2 + np.exp(-0.2 * x[0] - 2.5 * x[2])),
                },
            }
            for x in rng.dirichlet(np.ones(3), size=30)
        ],
    )
    common = ("-e", "regmix_linear", "--n-boot", 0, "--allow-untrusted", "--allow-extrapolation")
    out = run("recommend", p.id, *common, "--phases", "main=9e4,anneal=20000")
    staged = out["recommendation"]["details"]["staged"]["phases"]
    assert [(ph["name"], ph["tokens"]) for ph in staged] == [("main", 90_000), ("anneal", 20_000)]
    phases = tmp_path / "phases.json"
    phases.write_text(
        json.dumps(
            [
                {"name": "main", "tokens": 90_000, "objective": {"web_loss": 1.0}},
                {"name": "anneal", "tokens": 20_000, "objective": {"math_loss": 1.0}},
            ]
        )
    )
    out = run("recommend", p.id, *common, "--phases", f"@{phases}")
    main, anneal = out["recommendation"]["details"]["staged"]["phases"]
    assert main["mixture_by_domain"]["web"] > 0.5 and anneal["mixture_by_domain"]["math"] > 0.5
    out = run("recommend", p.id, *common, "--reference", "uniform", "--tolerance", 0.01)
    reference = out["recommendation"]["details"]["reference"]
    assert reference["label"] == "baseline uniform" and reference["tolerance"] == 0.01
