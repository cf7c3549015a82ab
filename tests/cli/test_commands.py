"""The CLI against a real server: create, import, list, export; token create and revoke."""

import pytest
from typer.testing import CliRunner

from mixopt.cli import app as cli
from mixopt.client import MixoptClient, MixoptError
from tests.conftest import REGMIX_DIR


def test_cli_commands(live_server, admin_token, tmp_path):
    runner = CliRunner()
    env = {"MIXOPT_URL": live_server, "MIXOPT_TOKEN": admin_token}
    r = runner.invoke(cli, ["project", "create", "pile"], env=env)
    assert r.exit_code == 0, r.output
    pid = int(r.output.split()[1])
    r = runner.invoke(
        cli,
        [
            "runs",
            "import",
            str(pid),
            str(REGMIX_DIR / "train_mixture_1m.csv"),
            str(REGMIX_DIR / "train_pile_loss_1m.csv"),
            "--tag",
            "regmix",
        ],
        env=env,
    )
    assert r.exit_code == 0 and "imported 512 runs" in r.output, r.output
    r = runner.invoke(cli, ["runs", "list", str(pid), "--limit", "5"], env=env)
    assert r.exit_code == 0 and "5 of 512 runs" in r.output, r.output
    r = runner.invoke(cli, ["runs", "export", str(pid), "--out", str(tmp_path)], env=env)
    assert r.exit_code == 0
    assert (tmp_path / "train_mixture.csv").read_text().count("\n") == 513
    r = runner.invoke(cli, ["project", "list"], env=env)
    assert "pile" in r.output
    r = runner.invoke(cli, ["project", "show", "999"], env=env)
    assert r.exit_code == 1 and "404" in r.output
    # token create / revoke work on this machine's database
    r = runner.invoke(cli, ["token", "create", "ci", "--role", "read", "--project", str(pid)])
    assert r.exit_code == 0 and "mxo_" in r.output, r.output
    token = r.output.split()[-1]
    ro = MixoptClient(live_server, token)
    assert [p["id"] for p in ro.list_projects()] == [pid]
    with pytest.raises(MixoptError) as exc:
        ro.add_run(pid, {"the_pile_arxiv": 1.0})
    assert exc.value.status == 403
    tid = int(r.output.split()[1])
    assert runner.invoke(cli, ["token", "revoke", str(tid)]).exit_code == 0
    with pytest.raises(MixoptError) as exc:
        ro.list_projects()
    assert exc.value.status == 401
