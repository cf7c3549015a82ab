"""Data sources confined to the configured data roots (``MIXOPT_DATA_ROOTS``).

A domain's ``source.path`` (a file, a directory or a glob) and ``source.tokenizer`` must lie
inside one of the roots, both as written (``..`` removed) and after resolving symlinks; roots
in ``MIXOPT_ADMIN_DATA_ROOTS`` accept sources only from an admin token. A refused path is a
422 that names the field and the roots the token may use, and says nothing about whether the
path exists or what it holds (the same message for every refused path). Ingestion checks
again, file by file, so a symlink placed inside a root after registration cannot lead out of
it (:func:`allowed_roots` feeds :func:`mixopt.training.data.resolve_files`).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from app.core.config import Settings, get_settings
from app.services.errors import Invalid

_GLOB_CHARS = ("*", "?", "[")


def allowed_roots(settings: Settings | None = None, *, admin: bool = True) -> list[Path]:
    """The resolved roots a source may live in (without the admin-only ones unless ``admin``)."""
    s = settings or get_settings()
    if admin:
        return s.data_root_list
    admin_only = set(s.admin_root_list)
    return [r for r in s.data_root_list if r not in admin_only]


def _inside(path: str, roots: list[Path]) -> bool:
    return any(path == str(r) or path.startswith(str(r).rstrip(os.sep) + os.sep) for r in roots)


def _static_prefix(path: str) -> str:
    """The part of a (glob) path before its first component with a wildcard."""
    if not glob.has_magic(path):
        return path
    parts = Path(path).parts
    for i, part in enumerate(parts):
        if any(c in part for c in _GLOB_CHARS):
            return str(Path(*parts[:i])) if i else os.sep
    return path


def check_path(value: str, *, field: str, admin: bool, settings: Settings | None = None) -> str:
    """Return ``value`` when it names a place inside an allowed root, else raise a 422.

    Rules: absolute path, no NUL byte, no ``..`` component, and the part before any glob
    wildcard must stay inside a root both lexically and with every symlink resolved.
    """
    roots = allowed_roots(settings, admin=admin)
    shown = [str(r) for r in roots]
    refused = Invalid(
        f"must be an absolute path inside one of the data roots {shown} "
        "(MIXOPT_DATA_ROOTS); other locations are not readable by the service",
        field=field,
    )
    if (
        "\x00" in value
        or not os.path.isabs(value)
        or ".." in Path(value).parts
        or value.startswith("~")
    ):
        raise refused
    prefix = _static_prefix(value)
    lexical = os.path.normpath(prefix)
    real = os.path.realpath(prefix)
    # every root both as configured (lexical) and resolved, so /tmp -> /private/tmp style roots work
    configured = [Path(os.path.normpath(p)) for p in _configured(settings, admin)]
    if not (_inside(lexical, configured) or _inside(lexical, roots)) or not _inside(real, roots):
        raise refused
    return value


def _configured(settings: Settings | None, admin: bool) -> list[str]:
    s = settings or get_settings()
    raw = [p for p in s.data_roots.split(os.pathsep) if p.strip()] or [
        str(s.home / "data"),
        str(s.home / "demo-corpora"),
    ]
    admin_raw = [p for p in s.admin_data_roots.split(os.pathsep) if p.strip()]
    if admin:
        raw += admin_raw
    else:
        admin_resolved = set(s.admin_root_list)
        raw = [p for p in raw if Path(p).expanduser().resolve() not in admin_resolved]
    return [str(Path(p.strip()).expanduser()) for p in raw]


def check_source(source: dict | None, *, field: str, admin: bool) -> None:
    """Check a domain source's ``path`` and ``tokenizer`` (a path, or ``byte``)."""
    if not source:
        return
    check_path(source["path"], field=f"{field}.path", admin=admin)
    tok = source.get("tokenizer")
    if tok not in (None, "", "byte"):
        if glob.has_magic(tok):
            raise Invalid(
                "must be 'byte' or the path of one tokenizers JSON file (no wildcards)",
                field=f"{field}.tokenizer",
            )
        check_path(tok, field=f"{field}.tokenizer", admin=admin)
