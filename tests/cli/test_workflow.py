"""The CLI through the whole workflow, against a real server and a real worker: project
create (options or a file), import, list, fit, recommend, best, export, jobs; every command and
option has help."""

from __future__ import annotations

import json

import click
import typer
from typer.testing import CliRunner

from mixopt.cli import app as cli
from mixopt.client import MixoptClient
from tests.factories import synthetic_runs


def _cli(env, *args):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def test_cli_workflow(live_server, worker, admin_token, tmp_path):
    env = {"MIXOPT_URL": live_server, "MIXOPT_TOKEN": admin_token}
    r = _cli(
        env,
        "project",
        "create",
        "pile",
        "-d",
        "web=3e9",
        "-d",
        "code=1e9",
        "--objective",
        "val/web=1",
        "--constraints",
        '{"target_tokens": 4e9, "max_epochs": 4}',
        "--json",
    )
    assert r.exit_code == 0, r.output
    p = json.loads(r.stdout)
    assert [d["token_count"] for d in p["domains"]] == [3_000_000_000, 1_000_000_000]
    assert p["objective"] == {"val/web": 1.0} and p["constraints"]["max_epochs"] == 4
    r = _cli(env, "project", "create", "pile", "--exist-ok", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["id"] == p["id"]
    pid = p["id"]

    runs = synthetic_runs(40)
    mix = tmp_path / "mix.csv"
    loss = tmp_path / "loss.csv"
    mix.write_text(
        "index,train_web,train_code\n"
        + "".join(
            f"{i},{r['mixture']['web'] / (r['mixture']['web'] + r['mixture']['code']):.6f},"
            f"{r['mixture']['code'] / (r['mixture']['web'] + r['mixture']['code']):.6f}\n"
            for i, r in enumerate(runs)
        )
    )
    loss.write_text(
        "index,val/web,val/code\n"
        + "".join(
            f"{i},{r['metrics']['val/web']},{r['metrics']['val/code']}\n"
            for i, r in enumerate(runs)
        )
    )
    r = _cli(env, "runs", "import", pid, mix, loss)
    assert r.exit_code == 0 and "imported 40 runs" in r.output, r.output

    r = _cli(env, "runs", "list", pid, "--limit", "5", "--metric", "val/code")
    assert (
        r.exit_code == 0
        and "5 of 40 runs" in r.output
        and "objective" in r.output
        and "val/code" in r.output
    )
    r = _cli(env, "runs", "list", pid, "--limit", "0", "--json")
    listed = json.loads(r.stdout)
    assert listed["count"] == 40 and len(listed["data"]) == 40
    assert all(
        abs(x["objective"] - x["metrics"]["val/web"]) < 1e-12 for x in listed["data"]
    )  # objective = val/web

    r = _cli(env, "fit", pid, "-e", "regmix_linear", "--cv-folds", "3", "--json")
    assert r.exit_code == 0, r.output
    fit = json.loads(r.stdout)
    assert fit["status"] == "succeeded" and fit["target"] == {"val/web": 1.0}
    r = _cli(env, "recommend", pid, "--fit", fit["id"], "--n-boot", "0", "--json")
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)["recommendation"]
    assert set(rec["mixture"]) == {"web", "code"}
    r = _cli(env, "best", pid)
    assert (
        r.exit_code == 0 and f"recommendation {rec['id']}" in r.output and "Spearman" in r.output
    ), r.output
    r = _cli(env, "mixture", "export", rec["id"], "-p", pid, "--format", "json")
    assert r.exit_code == 0 and "web" in r.output

    r = _cli(env, "jobs", "list", "--project", pid, "--json")
    jobs = json.loads(r.stdout)
    assert {j["kind"] for j in jobs} >= {"fit", "recommend"} and all(
        j["state"] == "succeeded" for j in jobs
    )
    r = _cli(env, "jobs", "watch", jobs[0]["id"])
    assert r.exit_code == 0 and "succeeded" in r.output
    r = _cli(env, "jobs", "cancel", jobs[0]["id"])
    assert r.exit_code == 1 and "409" in r.output  # already ended: one line, exit 1

    out = tmp_path / "export"
    r = _cli(env, "runs", "export", pid, "--out", out)
    assert r.exit_code == 0 and (out / "train_mixture.csv").read_text().count("\n") == 41

    # a failed job: exit 5 with the reason on one line
    q = json.loads(
        _cli(env, "project", "create", "few", "-d", "web", "-d", "code", "--json").stdout
    )
    # (four runs of mixtures distinct only below the law's 1e-12 rounding: one distinct mixture
    # for mixing_law, which only the fit can tell; fewer runs, or fewer exactly distinct
    # mixtures, than an estimator needs are refused at the request)
    MixoptClient(live_server, admin_token).add_runs(
        q["id"],
        [
            {"mixture": {"web": 1 - i * 1e-14, "code": i * 1e-14}, "metrics": {"l": 1.0}}
            for i in range(4)
        ],
    )
    r = _cli(env, "fit", q["id"], "-e", "mixing_law")
    assert (
        r.exit_code == 5
        and "failed" in r.output
        and "runs" in r.output
        and "Traceback" not in r.output
    )


def test_cli_errors_are_one_line_with_exit_codes(live_server, admin_token):
    env = {"MIXOPT_URL": live_server, "MIXOPT_TOKEN": admin_token}
    r = _cli(env, "project", "show", "999")
    assert r.exit_code == 1 and "404" in r.output and len(r.output.strip().splitlines()) == 1
    r = _cli(env, "project", "create", "x", "-d", "a", "-d", "a")
    assert r.exit_code == 1 and "listed twice" in r.output
    r = _cli(env, "project", "create", "x", "--objective", "nonsense")
    assert r.exit_code == 2 and "NAME=VALUE" in r.output
    r = _cli({"MIXOPT_URL": "http://127.0.0.1:9", "MIXOPT_TOKEN": "x"}, "project", "list")
    assert (
        r.exit_code == 4 and "cannot reach" in r.output and len(r.output.strip().splitlines()) <= 2
    )
    r = _cli(env, "--version")
    assert r.exit_code == 0 and r.output.startswith("mixopt ")


def test_every_command_and_option_has_help():
    command = typer.main.get_command(cli)
    missing = []

    def walk(cmd: click.Command, path: str) -> None:
        if not (cmd.help or cmd.short_help):
            missing.append(path)
        for param in cmd.params:
            if param.name in ("help",):
                continue
            if not getattr(param, "help", None):  # options and arguments alike
                missing.append(f"{path} {param.opts[0]}")
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, f"{path} {name}")

    walk(command, "mixopt")
    assert not missing, missing


def test_cli_project_from_a_file(live_server, admin_token, tmp_path):
    """olmix-style project file: domains with token counts, objective, constraints."""
    spec = tmp_path / "project.yaml"
    spec.write_text(
        "domains:\n  - {name: web, token_count: 3000000000}\n"
        "  - {name: code, token_count: 1000000000}\n"
        "objective: {val/web: 2, val/code: 1}\n"
        "constraints:\n  target_tokens: 8000000000\n  max_epochs: 2\n  bounds: {code: {max: 0.4}}\n"
    )
    env = {"MIXOPT_URL": live_server, "MIXOPT_TOKEN": admin_token}
    r = _cli(env, "project", "create", "from-file", "-f", spec, "--json")
    assert r.exit_code == 0, r.output
    p = json.loads(r.stdout)
    assert [(d["name"], d["token_count"]) for d in p["domains"]] == [
        ("web", 3_000_000_000),
        ("code", 1_000_000_000),
    ]
    assert p["objective"] == {"val/web": 2.0, "val/code": 1.0}
    assert (
        p["constraints"]["bounds"] == {"code": {"min": 0.0, "max": 0.4}}
        and p["constraints"]["max_epochs"] == 2
    )
    r = _cli(env, "project", "show", p["id"])
    assert r.exit_code == 0 and "3000000000" in r.output and "target_tokens" in r.output
    r = _cli(env, "project", "create", "from-file", "-q", "--exist-ok")
    assert r.exit_code == 0 and r.stdout.strip() == str(p["id"])
