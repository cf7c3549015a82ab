"""``mixopt project create NAME -f olmix_fit.yaml`` against a real server: olmix's fit config
becomes a project (the mapping: ``tests/exports/test_olmix_config.py``), unknown keys exit 2."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from mixopt.cli import app as cli
from tests.exports.test_olmix_config import OLMIX_FIT


def test_cli_creates_a_project_from_olmix_fit_yaml(live_server, admin_token, tmp_path):
    env = {"MIXOPT_URL": live_server, "MIXOPT_TOKEN": admin_token}
    path = tmp_path / "olmix_fit.yaml"
    path.write_text(OLMIX_FIT)
    r = CliRunner().invoke(cli, ["project", "create", "olmix", "-f", str(path), "--json"], env=env)
    assert r.exit_code == 0, r.output
    p = json.loads(r.stdout)
    assert [(d["name"], d["token_count"]) for d in p["domains"]] == [
        ("web", 3_000_000_000),
        ("code", 1_000_000_000),
    ]
    assert p["constraints"]["max_epochs"] == 5.0
    assert p["constraints"]["target_tokens"] == 8_000_000_000
    assert p["objective"] == {"val/web": 1.0, "val/code": 1.0}
    assert "mixopt runs import" in r.stderr
    # an unknown key: exit 2, on stderr, naming it; nothing created
    path.write_text(OLMIX_FIT.replace("  enabled: true", "  enabled: true\n  budget: 3"))
    r = CliRunner().invoke(cli, ["project", "create", "olmix2", "-f", str(path)], env=env)
    assert r.exit_code == 2 and "constraints.budget" in r.stderr and not r.stdout
    # a mixopt project file with a key it does not have: the same
    bad = tmp_path / "p.yaml"
    bad.write_text("domains: [{name: a}]\nconstraint: {max_epochs: 2}\n")
    r = CliRunner().invoke(cli, ["project", "create", "p", "-f", str(bad)], env=env)
    assert r.exit_code == 2 and "['constraint']" in r.stderr
