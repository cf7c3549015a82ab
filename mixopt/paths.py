"""Where mixopt keeps its files on this machine, shared by the client, the CLI and the server."""

from __future__ import annotations

import os
from pathlib import Path


def mixopt_home() -> Path:
    """``$MIXOPT_HOME`` or ``~/.mixopt``: SQLite file, admin token, shards, checkpoints, demo
    corpora."""
    return Path(os.environ.get("MIXOPT_HOME") or Path.home() / ".mixopt").expanduser()
