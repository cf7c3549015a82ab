"""Where the client commands find the API's URL and token: ``--url``/``--token`` first, then
``MIXOPT_URL``/``MIXOPT_TOKEN``, then the profile file, then the defaults (the local server and
the embedded admin token).

The file is ``$MIXOPT_CONFIG`` if set, else ``$XDG_CONFIG_HOME/mixopt/config.toml`` (default
``~/.config/mixopt/config.toml``)::

    [default]
    url = "http://127.0.0.1:8000"

    [profiles.staging]
    url = "https://mixopt.staging.example"
    token = "mxo_..."

``mixopt --profile staging ...`` (or ``MIXOPT_PROFILE=staging``) reads ``[profiles.staging]``;
a key it does not set comes from ``[default]``. Without a profile, ``[default]`` is used. A file
that cannot be read, is not TOML, or has an unknown section or key is a usage error (exit 2)
naming the file and the key.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixopt.cli.errors import CliError, ExitStatus

#: the keys a profile may set
KEYS = ("url", "token")
#: the largest profile file read (a config file is a few lines)
MAX_BYTES = 1 << 20


@dataclass(frozen=True)
class Profile:
    """A profile's ``url`` and ``token`` (None where neither it nor ``[default]`` sets one)."""

    url: str | None = None
    token: str | None = None


def config_path() -> Path:
    """The profile file: ``$MIXOPT_CONFIG``, else ``$XDG_CONFIG_HOME/mixopt/config.toml``,
    else ``~/.config/mixopt/config.toml``."""
    explicit = os.environ.get("MIXOPT_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "mixopt" / "config.toml"


def _bad(path: Path, what: str) -> CliError:
    return CliError(f"profile file {path}: {what}", ExitStatus.USAGE)


def _section(path: Path, where: str, value: Any) -> dict[str, str]:
    """A ``[default]`` or ``[profiles.NAME]`` table: only ``url`` and ``token``, strings."""
    if not isinstance(value, dict):
        raise _bad(path, f"{where} must be a table ([{where}]) with url and token")
    for key, item in value.items():
        if key not in KEYS:
            raise _bad(path, f"unknown key {where}.{key} (a profile sets {', '.join(KEYS)})")
        if not isinstance(item, str) or not item.strip():
            raise _bad(path, f"{where}.{key} must be a non-empty string")
    return {k: v.strip() for k, v in value.items()}


def read_config(path: Path) -> dict[str, Any]:
    """The checked file: ``{"default": {...}, "profiles": {name: {...}}}``; ``{}`` when the file
    does not exist."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise _bad(path, f"cannot be read ({exc.strerror or exc})") from None
    if len(raw) > MAX_BYTES:
        raise _bad(path, f"larger than {MAX_BYTES} bytes")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise _bad(path, f"not TOML ({exc})") from None
    for key in data:
        if key not in ("default", "profiles"):
            raise _bad(path, f"unknown key {key} (the file has [default] and [profiles.NAME])")
    out: dict[str, Any] = {"default": _section(path, "default", data.get("default", {}))}
    profiles = data.get("profiles", {})
    if not isinstance(profiles, dict):
        raise _bad(path, "profiles must be tables: [profiles.NAME]")
    out["profiles"] = {
        name: _section(path, f"profiles.{name}", value) for name, value in profiles.items()
    }
    return out


def load_profile(name: str | None) -> Profile:
    """The profile ``name`` (None: ``MIXOPT_PROFILE``, else just ``[default]``), its keys
    completed from ``[default]``. Naming a profile the file does not have is a usage error."""
    name = name or os.environ.get("MIXOPT_PROFILE") or None
    path = config_path()
    if os.environ.get("MIXOPT_CONFIG") and not path.exists():
        raise _bad(path, "does not exist (MIXOPT_CONFIG names it)")
    config = read_config(path)
    values = dict(config.get("default") or {})
    if name is not None:
        profiles = config.get("profiles") or {}
        if name not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            where = "does not exist" if not path.exists() else f"has no [profiles.{name}]"
            raise _bad(path, f"{where}: no profile {name!r} (profiles: {known})")
        values.update(profiles[name])
    return Profile(url=values.get("url"), token=values.get("token"))
