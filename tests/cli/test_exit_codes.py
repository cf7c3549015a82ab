"""Every error of every command is one line on stderr, nothing on stdout, and the exit status
the README documents (``mixopt.cli.ExitStatus``), against a real server (and a real worker for
a failed job)."""

from __future__ import annotations

import click
import pytest
import typer
from typer.testing import CliRunner, Result

import mixopt.extras
from mixopt.api_types import Job
from mixopt.cli import ExitStatus
from mixopt.cli import app as cli
from mixopt.cli.errors import classify
from mixopt.client import ConnectionFailed, JobFailed, JobTimeout, MixoptClient, MixoptError
from tests.conftest import REGMIX_DIR

MIX, LOSS = REGMIX_DIR / "train_mixture_1m.csv", REGMIX_DIR / "train_pile_loss_1m.csv"


def _cli(env: dict, *args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def _failed(r: Result, status: ExitStatus, *words: str) -> None:
    """Exit ``status``, stdout empty, the reason on stderr as one line, no traceback."""
    assert r.exit_code == status, (r.exit_code, r.stdout, r.stderr)
    assert r.stdout == "", r.stdout
    assert r.stderr.lstrip().startswith("error: ") and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2, r.stderr  # one line (wrapped at most once)
    for word in words:
        assert word in " ".join(r.stderr.split()), r.stderr


@pytest.fixture
def env(live_server, admin_token) -> dict:
    return {"MIXOPT_URL": live_server, "MIXOPT_TOKEN": admin_token, "COLUMNS": "300"}


def test_unreachable_server_is_4_for_every_command(tmp_path):
    env = {"MIXOPT_URL": "http://127.0.0.1:9", "MIXOPT_TOKEN": "x", "COLUMNS": "300"}
    for args in (
        ["project", "list"],
        ["project", "show", 1],
        ["runs", "import", 1, MIX, LOSS],
        ["runs", "export", 1, "--out", tmp_path],
        ["runs", "list", 1],
        ["mixture", "export", 1, "-p", 1],
        ["fit", 1],
        ["best", 1],
        ["jobs", "list"],
        ["fits", "list", 1],
        ["fits", "delete", 1, 1],
        ["recommendations", "list", 1, "--json"],
        ["recommendations", "label", 1, 1, "--set-tag", "x"],
        ["validate", 1, "-b", "uniform", "--json"],
        ["mixture", "export", 1, "-p", 1, "--json"],
    ):
        _failed(_cli(env, *args), ExitStatus.SERVER, "cannot reach the mixopt API")
    assert not list(tmp_path.iterdir())  # runs export wrote nothing


def test_api_refusals_are_1(env, live_server, admin_token, tmp_path):
    c = MixoptClient(live_server, admin_token)
    pid = c.create_project("p", domains=["web", "code"]).id
    # 401: an unknown token
    _failed(
        _cli({**env, "MIXOPT_TOKEN": "mxo_nope"}, "project", "list"), ExitStatus.API_REFUSED, "401"
    )
    # 403: a read-only token writing
    read = c.create_token("ro", role="read", project_ids=[pid]).token
    _failed(
        _cli({**env, "MIXOPT_TOKEN": read}, "runs", "import", pid, MIX, LOSS),
        ExitStatus.API_REFUSED,
        "403",
    )
    # 404: unknown ids, for the commands that used to print on stdout too
    _failed(_cli(env, "project", "show", 999), ExitStatus.API_REFUSED, "404")
    _failed(_cli(env, "mixture", "export", 9999, "-p", pid), ExitStatus.API_REFUSED, "404")
    _failed(
        _cli(env, "runs", "export", 999, "--out", tmp_path / "out"), ExitStatus.API_REFUSED, "404"
    )
    _failed(_cli(env, "runs", "import", 999, MIX, LOSS), ExitStatus.API_REFUSED, "404")
    _failed(_cli(env, "best", pid), ExitStatus.API_REFUSED, "no recommendation yet")
    assert not (tmp_path / "out").exists()
    # 409: the domain set moved on since the version the change was based on
    _failed(
        _cli(env, "project", "domains", pid, "--add", "math", "--base-version", 7),
        ExitStatus.API_REFUSED,
        "409",
        "base_version",
    )
    # 422: the message names the field
    _failed(
        _cli(env, "project", "create", "x", "-d", "a", "-d", "a"),
        ExitStatus.API_REFUSED,
        "422",
        "listed twice",
    )
    _failed(
        _cli(env, "project", "domains", pid, "--remove", "nope"),
        ExitStatus.API_REFUSED,
        "remove[0]",
    )


def test_a_failed_job_is_5_with_its_reason(env, live_server, admin_token, worker):
    c = MixoptClient(live_server, admin_token)
    p = c.create_project("few", domains=["web", "code"])
    # four runs of mixtures distinct only below the law's rounding (1e-12): enough for the
    # request's checks, one distinct mixture for mixing_law (K + 2), which only the fit can
    # tell: the job fails
    runs = [
        {"mixture": {"web": 1 - i * 1e-14, "code": i * 1e-14}, "metrics": {"l": 1.0}}
        for i in range(4)
    ]
    c.add_runs(p.id, runs)
    _failed(_cli(env, "fit", p.id, "-e", "mixing_law"), ExitStatus.JOB_FAILED, "failed", "runs")
    _failed(_cli(env, "fit", p.id, "-e", "mixing_law", "--json"), ExitStatus.JOB_FAILED, "failed")


def test_bad_local_input_is_2(env, live_server, admin_token, tmp_path):
    pid = MixoptClient(live_server, admin_token).create_project("p", domains=["web", "code"]).id
    _failed(
        _cli(env, "runs", "import", pid, tmp_path / "missing.csv", LOSS),
        ExitStatus.USAGE,
        "missing.csv",
    )
    _failed(
        _cli(env, "project", "create", "x", "--constraints", "{bad"),
        ExitStatus.USAGE,
        "--constraints: not JSON",
    )
    bad = tmp_path / "p.yaml"
    bad.write_text("domains: [web\n")
    _failed(_cli(env, "project", "create", "x", "-f", bad), ExitStatus.USAGE, "not YAML")
    _failed(
        _cli(env, "project", "create", "x", "--objective", "nonsense"),
        ExitStatus.USAGE,
        "NAME=VALUE",
    )
    _failed(_cli(env, "validate", pid, "-m", "mine={oops"), ExitStatus.USAGE, "not JSON")
    _failed(_cli(env, "swarm", pid), ExitStatus.USAGE, "exactly one of --steps or --tokens")
    domains = [
        {"name": d, "token_count": 1000, "trainer_paths": {"olmo-core": [f"/t/{d}.npy"]}}
        for d in ("web", "code")
    ]
    constraints = {
        "target_tokens": 4000,
        "sequence_length": 8,
        "global_batch_tokens": 64,
        "seed": 1,
    }
    qid = (
        MixoptClient(live_server, admin_token)
        .create_project("q", domains=domains, constraints=constraints)
        .id
    )
    _failed(
        _cli(env, "mixture", "export", "-p", qid, "--baseline", "uniform", "--format", "olmo-core"),
        ExitStatus.USAGE,
        "several files",
    )
    r = _cli(env, "project", "list", "--no-such-option")
    assert r.exit_code == ExitStatus.USAGE and r.stdout == "" and "No such option" in r.stderr


def test_a_missing_extra_is_3(monkeypatch):
    monkeypatch.setattr(mixopt.extras, "missing_modules", lambda extra: ["torch"])
    _failed(_cli({}, "demo-data"), ExitStatus.MISSING_EXTRA, "pip install 'mixopt[train]'")
    _failed(_cli({}, "demo", "--no-train"), ExitStatus.MISSING_EXTRA, "mixopt[server]")


def test_the_error_classes_and_their_codes():
    job = {
        "id": "j",
        "kind": "fit",
        "state": "failed",
        "error": "why",
        "created_at": "2026-01-01T00:00:00Z",
    }
    cases = [
        (ConnectionFailed("http://x", "down"), ExitStatus.SERVER),
        (MixoptError(503, "db down"), ExitStatus.SERVER),
        (MixoptError(401, "token"), ExitStatus.API_REFUSED),
        (MixoptError(403, "read-only"), ExitStatus.API_REFUSED),
        (MixoptError(404, "nope"), ExitStatus.API_REFUSED),
        (MixoptError(409, "conflict"), ExitStatus.API_REFUSED),
        (MixoptError(422, "field"), ExitStatus.API_REFUSED),
        (JobFailed(Job.model_validate(job)), ExitStatus.JOB_FAILED),
        (JobTimeout(Job.model_validate(job | {"state": "running"}), 5), ExitStatus.JOB_TIMEOUT),
        (mixopt.extras.MissingExtra("pip install"), ExitStatus.MISSING_EXTRA),
        (FileNotFoundError("x.csv"), ExitStatus.USAGE),
        (ValueError("bad"), ExitStatus.USAGE),
    ]
    assert [classify(exc)[0] for exc, _ in cases] == [status for _, status in cases]
    assert "mixopt jobs watch j" in classify(cases[8][0])[1]


def test_every_command_goes_through_the_one_error_path():
    def walk(cmd: click.Command, path: str) -> list[str]:
        subs = getattr(cmd, "commands", {})
        if subs:
            return [p for name, sub in subs.items() for p in walk(sub, f"{path} {name}")]
        if cmd.callback.__module__.startswith("workers."):  # the server's plugin commands
            return []
        return [] if getattr(cmd.callback, "handles_errors", False) else [path]

    assert walk(typer.main.get_command(cli), "mixopt") == []


def test_server_commands_write_errors_to_stderr(db):
    """The server-side commands (workers/cli.py, added through the entry point) share the
    client commands' rule: the error on stderr, stdout empty, its ExitStatus."""
    _failed(_cli({}, "health", "bogus"), ExitStatus.USAGE, "api, worker or beat")
    _failed(_cli({}, "token", "revoke", "999999"), ExitStatus.API_REFUSED, "999999")


def test_errors_of_the_label_list_and_recommend_options(env, live_server, admin_token, tmp_path):
    """The fits/recommendations commands and recommend's --phases/--reference: local mistakes
    are 2 before any request, the API's refusals 1 naming the field; stdout stays empty (with
    --json too)."""
    c = MixoptClient(live_server, admin_token)
    pid = c.create_project("p", domains=["web", "code"]).id
    for args, words in (
        (["fits", "label", pid, 1], ["nothing to change"]),
        (["fits", "label", pid, 1, "--name", "a", "--clear-name"], ["--name or --clear-name"]),
        (["recommendations", "label", pid, 1, "--set-tag", "a", "--clear-tags"], ["--clear-tags"]),
        (["recommend", pid, "--phases", "main=abc"], ["--phases", "NAME=TOKENS"]),
        (["recommend", pid, "--phases", "main=0", "--json"], ["--phases"]),
        (["recommend", pid, "--phases", "[1, 2]"], ["--phases", "JSON list"]),
        (["recommend", pid, "--phases", "@" + str(tmp_path / "none.json")], ["none.json"]),
        (["recommend", pid, "--tolerance", "0.1"], ["--tolerance needs --reference"]),
        (["recommend", pid, "--reference", "rec:x"], ["rec:ID needs a number"]),
        (["recommend", pid, "--reference", "{bad"], ["--reference: not JSON"]),
        (["runs", "list", pid, "--metric-min", "a=1", "--metric-max", "b=2"], ["one metric"]),
        (["runs", "list", pid, "--metric-min", "a"], ["NAME=VALUE"]),
        (["--profile", "nowhere", "fits", "list", pid, "--json"], ["no profile 'nowhere'"]),
    ):
        _failed(_cli({**env, "XDG_CONFIG_HOME": str(tmp_path)}, *args), ExitStatus.USAGE, *words)
    for args, words in (
        (["fits", "list", 999, "--json"], ["404"]),
        (["fits", "delete", pid, 999, "--json"], ["404", "fit 999"]),
        (["fits", "label", pid, 999, "--set-tag", "x"], ["404"]),
        (["recommendations", "delete", pid, 999], ["404", "recommendation 999"]),
        (["fits", "label", pid, 1, "--set-tag", "x" * 101], ["422"]),
        (["fits", "list", pid, "--tag", "x" * 101], ["422", "tag"]),
        (["runs", "list", pid, "--sort", 'a"b', "--json"], ["422", "order_by"]),
        (["recommend", pid, "-e", "gp", "--reference", "nope"], ["reference.baseline"]),
        (["recommend", pid, "-e", "gp", "--reference", "rec:999999"], ["404"]),
        (
            ["recommend", pid, "-e", "gp", "--phases", '[{"name": "a", "tokens": 10}] '],
            ["422"],
        ),
    ):
        _failed(_cli(env, *args), ExitStatus.API_REFUSED, *words)
