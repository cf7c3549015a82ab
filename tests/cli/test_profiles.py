"""Profiles: the URL and token of ``[default]`` / ``[profiles.NAME]`` in the config file
(``$MIXOPT_CONFIG``, else ``$XDG_CONFIG_HOME/mixopt/config.toml``, else
``~/.config/mixopt/config.toml``); precedence flag > environment > profile > default; a bad
file is exit 2 naming the file and the key. Against a real server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from mixopt.cli import ExitStatus
from mixopt.cli import app as cli
from mixopt.cli.profiles import config_path

UNREACHABLE = "http://127.0.0.1:9"


def _cli(env: dict, *args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


@pytest.fixture
def xdg(tmp_path) -> Path:
    return tmp_path / "xdg"


@pytest.fixture
def base_env(xdg, tmp_path) -> dict:
    """No URL, token, profile or config from the environment; the config under ``xdg``."""
    return {
        "MIXOPT_URL": None,
        "MIXOPT_TOKEN": None,
        "MIXOPT_PROFILE": None,
        "MIXOPT_CONFIG": None,
        "XDG_CONFIG_HOME": str(xdg),
        "HOME": str(tmp_path / "home"),
        "COLUMNS": "300",
    }


def _write(xdg: Path, text: str) -> Path:
    path = xdg / "mixopt" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _projects(r: Result) -> list[str]:
    assert r.exit_code == 0, (r.exit_code, r.stdout, r.stderr)
    return [p["name"] for p in json.loads(r.stdout)]


def _refused(r: Result, status: ExitStatus, *words: str) -> None:
    assert r.exit_code == status, (r.exit_code, r.stdout, r.stderr)
    assert r.stdout == "" and r.stderr.startswith("error: "), (r.stdout, r.stderr)
    for word in words:
        assert word in " ".join(r.stderr.split()), r.stderr


def test_the_config_file_is_found_where_documented(monkeypatch, tmp_path):
    for name in ("MIXOPT_CONFIG", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config_path() == tmp_path / ".config" / "mixopt" / "config.toml"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "x"))
    assert config_path() == tmp_path / "x" / "mixopt" / "config.toml"
    monkeypatch.setenv("MIXOPT_CONFIG", str(tmp_path / "elsewhere.toml"))
    assert config_path() == tmp_path / "elsewhere.toml"


def test_profiles_give_url_and_token_with_flag_env_profile_precedence(
    live_server, admin_token, base_env, xdg, tmp_path
):
    from mixopt.client import MixoptClient

    MixoptClient(live_server, admin_token).create_project("seen", domains=["web", "code"])
    _write(
        xdg,
        f'[default]\nurl = "{UNREACHABLE}"\n\n'
        f'[profiles.dev]\nurl = "{live_server}"\ntoken = "{admin_token}"\n\n'
        f'[profiles.badtoken]\nurl = "{live_server}"\ntoken = "mxo_wrong"\n',
    )
    env = base_env
    # [default] alone: its URL, unreachable
    _refused(_cli(env, "project", "list", "--json"), ExitStatus.SERVER, "127.0.0.1:9")
    # the profile, by flag or by environment
    assert _projects(_cli(env, "--profile", "dev", "project", "list", "--json")) == ["seen"]
    assert _projects(_cli({**env, "MIXOPT_PROFILE": "dev"}, "project", "list", "--json")) == [
        "seen"
    ]
    # flag > env > profile, for the URL ...
    _refused(
        _cli({**env, "MIXOPT_URL": UNREACHABLE}, "--profile", "dev", "project", "list", "--json"),
        ExitStatus.SERVER,
        "cannot reach",
    )
    r = _cli(
        {**env, "MIXOPT_URL": UNREACHABLE},
        "--profile",
        "dev",
        "project",
        "list",
        "--json",
        "--url",
        live_server,
    )
    assert _projects(r) == ["seen"]
    # ... and for the token: the profile's wrong token is refused, the environment's wins
    _refused(
        _cli(env, "--profile", "badtoken", "project", "list", "--json"),
        ExitStatus.API_REFUSED,
        "401",
    )
    r = _cli({**env, "MIXOPT_TOKEN": admin_token}, "--profile", "badtoken", "project", "list")
    assert r.exit_code == 0 and "seen" in r.stdout, r.stderr
    # MIXOPT_CONFIG points at another file
    other = tmp_path / "other.toml"
    other.write_text(f'[default]\nurl = "{live_server}"\ntoken = "{admin_token}"\n')
    r = _cli({**env, "MIXOPT_CONFIG": str(other)}, "project", "list", "--json")
    assert _projects(r) == ["seen"]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('[profiles.dev]\nurl = "http://x"\nuser = "me"\n', ["unknown key profiles.dev.user"]),
        ("[default]\nurl = 5\n", ["default.url must be a non-empty string"]),
        ('[default\nurl = "x"\n', ["not TOML"]),
        ('url = "http://x"\n', ["unknown key url"]),
        ('profiles = "dev"\n', ["profiles must be tables"]),
        ('[profiles.other]\nurl = "http://x"\n', ["no profile 'dev'", "other"]),
    ],
)
def test_a_bad_profile_file_is_2_naming_the_file_and_key(base_env, xdg, text, words):
    path = _write(xdg, text)
    r = _cli(base_env, "--profile", "dev", "project", "list")
    _refused(r, ExitStatus.USAGE, str(path), *words)


def test_a_missing_file_is_2_only_when_it_is_asked_for(base_env, tmp_path):
    missing = tmp_path / "nope.toml"
    r = _cli({**base_env, "MIXOPT_CONFIG": str(missing)}, "project", "list")
    _refused(r, ExitStatus.USAGE, str(missing), "does not exist")
    _refused(_cli(base_env, "--profile", "dev", "project", "list"), ExitStatus.USAGE, "'dev'")
    # no file, no profile: the defaults (nothing listens on the default URL here)
    r = _cli({**base_env, "MIXOPT_URL": UNREACHABLE}, "project", "list")
    _refused(r, ExitStatus.SERVER, "cannot reach")
