"""The Python client and the CLI against a real server."""

import pytest
from typer.testing import CliRunner

from mixopt.cli import app as cli
from mixopt.client import MixoptClient, MixoptError
from tests.conftest import REGMIX_DIR, count_rows


def test_client_round_trip(live_server, admin_token):
    c = MixoptClient(live_server, admin_token)
    assert c.health() == {"status": "ok"}
    p = c.create_project("c", domains=["a", "b"], constraints={"bounds": {"a": {"max": 0.9}}})
    ids = c.add_runs(p["id"], [{"mixture": {"a": i / 25, "b": 1 - i / 25}, "metrics": {"l": float(i)}}
                               for i in range(25)], chunk_size=10)
    assert len(ids) == 25 and count_rows("run") == 25
    assert [r["id"] for r in c.iter_runs(p["id"], page_size=7)] == ids
    with pytest.raises(MixoptError) as exc:
        c.add_run(p["id"], {"a": 0.3, "b": 0.3})
    assert exc.value.status == 422 and "sum" in exc.value.detail
    with pytest.raises(MixoptError) as exc:
        c.get_project(9999)
    assert exc.value.status == 404


def test_client_retried_batch_is_stored_once(live_server, admin_token):
    c = MixoptClient(live_server, admin_token)
    p = c.create_project("c", domains=["a", "b"])
    runs = [{"mixture": {"a": 0.5, "b": 0.5}}] * 5
    c.add_runs(p["id"], runs, idempotency_key="same")
    c.add_runs(p["id"], runs, idempotency_key="same")  # a retry after a lost response
    assert count_rows("run") == 5


def test_cli_commands(live_server, admin_token, tmp_path):
    runner = CliRunner()
    env = {"MIXOPT_URL": live_server, "MIXOPT_TOKEN": admin_token}
    r = runner.invoke(cli, ["project", "create", "pile"], env=env)
    assert r.exit_code == 0, r.output
    pid = int(r.output.split()[1])
    r = runner.invoke(cli, ["runs", "import", str(pid), str(REGMIX_DIR / "train_mixture_1m.csv"),
                            str(REGMIX_DIR / "train_pile_loss_1m.csv"), "--tag", "regmix"], env=env)
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
