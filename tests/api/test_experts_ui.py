"""Experts through the Python client, the CLI (``mixopt experts``) and the dashboard's project
page (the experts' table; the MDE fit's prediction against the actual loss of every run)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.api.test_experts import _expected, mde_project
from tests.conftest import wait_job
from tests.factories import CORPORA, CORPUS_DOMAINS


def test_project_page_shows_the_experts_and_the_mde_fit(client, admin, admin_token, worker):
    from tests.dashboard.pages import login

    pid, _ = mde_project(client, admin, n_runs=12)
    login(client, admin_token)
    page = client.get(f"/dashboard/projects/{pid}").text
    assert 'id="experts-table"' in page and 'id="mde-table"' not in page  # no MDE fit yet
    experts = page.split('id="experts-table"')[1].split("</table>")[0]
    assert experts.count("<tr>") == 1 + len(CORPUS_DOMAINS)
    r = client.post(f"/v1/projects/{pid}/fits", json={"estimator": "mde"}, headers=admin)
    job = wait_job(client, admin, r.json()["job"]["id"], timeout=300)
    assert job["state"] == "succeeded", job["error"]
    page = client.get(f"/dashboard/projects/{pid}").text
    table = page.split('id="mde-table"')[1].split("</table>")[0]
    assert table.count("<tr>") == 1 + 12  # the header and every run


def test_client_and_cli_upload_and_list_experts(live_server, admin_token, tmp_path):
    import json

    from typer.testing import CliRunner

    from mixopt.cli import app as cli
    from mixopt.client import MixoptClient, MixoptError

    c = MixoptClient(live_server, admin_token)
    domains = [
        {"name": d, "source": {"path": str(CORPORA / d), "format": "jsonl"}} for d in CORPUS_DOMAINS
    ]
    pid = c.create_project("cli-experts", domains).id
    from workers.tasks.training import ingest_project

    n_val = {d: int(v.n_val_tokens) for d, v in ingest_project(pid).items()}
    values = np.full(_expected(n_val["code"]), 0.25, dtype=np.float32)
    e = c.upload_expert_probs(pid, "code", "code", values)
    assert e["losses"]["code"] == pytest.approx(-np.log(0.25)) and e["status"] == "partial"
    with pytest.raises(MixoptError) as bad:
        c.upload_expert_probs(pid, "code", "docs", values)  # docs has another token count
    assert bad.value.status == 422 and "shape" in str(bad.value)
    # the CLI: upload a file, list as JSON
    env = {"MIXOPT_URL": live_server, "MIXOPT_TOKEN": admin_token, "COLUMNS": "300"}
    f = tmp_path / "docs.npy"
    np.save(f, np.full(_expected(n_val["docs"]), 0.5, dtype=np.float16))
    r = CliRunner().invoke(
        cli, ["experts", "upload", str(pid), "code", "docs", str(f), "--json"], env=env
    )
    assert r.exit_code == 0, r.stdout
    assert json.loads(r.stdout)["losses"]["docs"] == pytest.approx(-np.log(0.5), abs=1e-6)
    r = CliRunner().invoke(cli, ["experts", "list", str(pid), "--json"], env=env)
    assert r.exit_code == 0, r.stdout
    listed = json.loads(r.stdout)
    assert listed["count"] == 1 and set(listed["data"][0]["losses"]) == {"code", "docs"}
    r = CliRunner().invoke(cli, ["experts", "list", str(pid)], env=env)
    assert r.exit_code == 0 and "code" in r.stdout and "0.6931" in r.stdout, r.stdout
    # a refused file exits 1 with the API's reason
    np.save(f, np.zeros(_expected(n_val["docs"]), dtype=np.float32))
    r = CliRunner().invoke(cli, ["experts", "upload", str(pid), "code", "docs", str(f)], env=env)
    assert r.exit_code == 1 and "values" in r.stderr, (r.stdout, r.stderr)
