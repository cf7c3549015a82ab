"""Data sources confined to the configured data roots (``MIXOPT_DATA_ROOTS``).

A domain's ``source.path`` (a file, a directory or a glob) and ``source.tokenizer`` must lie
inside one of the roots, both as written (``..`` removed) and after resolving symlinks; roots
in ``MIXOPT_ADMIN_DATA_ROOTS`` accept sources only from an admin token (an admin-only root
nested in a data root stays admin-only: the innermost root holding a path decides). A refused
path is a 422 that names the field and the roots the token may use, and says nothing about
whether the path exists or what it holds (the same message for every refused path).

The domain row records whether an admin token registered its source (``Domain.source_admin``),
and ingestion checks again with the roots *that* token had (:func:`check_source_files`): the
path, a glob's directory and every file it reads are resolved on disk (symlinks followed) and
must stay inside them, so a file or directory swapped for a symlink into an admin-only root
after a write token registered it is refused with the registration message; a symlink that
leads out of every root is refused file by file by :func:`mixopt.training.data.resolve_files`,
which :func:`allowed_roots` feeds.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

from app.core.config import Settings, get_settings
from app.services.errors import Invalid
from mixopt.training.documents import resolve_files

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


def _permitted(real: str, settings: Settings, admin: bool) -> bool:
    """Whether the resolved path ``real`` lies in a root the token may use: any root for an
    admin; for another token, the innermost root that holds it must not be admin-only."""
    holding = [r for r in settings.data_root_list if _inside(real, [r])]
    if not holding:
        return False
    innermost = max(holding, key=lambda r: len(r.parts))
    return admin or innermost not in set(settings.admin_root_list)


def _refused(field: str, roots: list[Path]) -> Invalid:
    """The one answer for every refused path: the field and the roots the token may use."""
    shown = [str(r) for r in roots]
    return Invalid(
        f"must be an absolute path inside one of the data roots {shown} "
        "(MIXOPT_DATA_ROOTS); other locations are not readable by the service",
        field=field,
    )


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
    s = settings or get_settings()
    refused = _refused(field, allowed_roots(s, admin=admin))
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
    configured = [Path(os.path.normpath(p)) for p in _configured(s, admin)]
    roots = allowed_roots(s, admin=admin)
    if not (_inside(lexical, configured) or _inside(lexical, roots)) or not _permitted(
        real, s, admin
    ):
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


def check_source(
    source: dict | None, *, field: str, admin: bool, settings: Settings | None = None
) -> None:
    """Check a domain source's ``path`` and ``tokenizer`` (a path, or ``byte``)."""
    if not source:
        return
    check_path(source["path"], field=f"{field}.path", admin=admin, settings=settings)
    tok = source.get("tokenizer")
    if tok not in (None, "", "byte"):
        if glob.has_magic(tok):
            raise Invalid(
                "must be 'byte' or the path of one tokenizers JSON file (no wildcards)",
                field=f"{field}.tokenizer",
            )
        check_path(tok, field=f"{field}.tokenizer", admin=admin, settings=settings)


def _resolved(path: str | Path) -> str | None:
    """``path`` with every symlink followed (``Path.resolve(strict=True)``); None when it cannot
    be resolved (missing, a dangling link, a loop)."""
    try:
        return str(Path(path).resolve(strict=True))
    except (OSError, RuntimeError):
        return None


def _check_on_disk(path: str, field: str, settings: Settings, admin: bool) -> None:
    """``path`` (nothing there: left to the reader's own error) resolves inside the token's
    roots."""
    if os.path.lexists(path):
        real = _resolved(path)
        if real is None or not _permitted(real, settings, admin):
            raise _refused(field, allowed_roots(settings, admin=admin))


def check_source_files(
    source: dict[str, Any], *, field: str, admin: bool, settings: Settings | None = None
) -> None:
    """Check a stored source before its files are read, with the roots of the token that
    registered it (``admin``: ``Domain.source_admin``).

    The registration rules (:func:`check_source`) first; then, on disk, the path (for a glob,
    its directory), the tokenizer file and every file ingestion would read are resolved with
    symlinks followed and must lie inside those roots. A file that leads into a root the token
    may not use is the registration's 422 message; one that leads out of every root is left to
    :func:`~mixopt.training.documents.resolve_files` (given the same roots), which refuses it.
    """
    s = settings or get_settings()
    check_source(source, field=field, admin=admin, settings=s)
    path = source["path"]
    _check_on_disk(_static_prefix(path), f"{field}.path", s, admin)
    tok = source.get("tokenizer")
    if tok not in (None, "", "byte"):
        _check_on_disk(tok, f"{field}.tokenizer", s, admin)
    if admin:
        return  # every root is open to an admin; resolve_files keeps the files inside them
    for f in resolve_files(path):
        real = _resolved(f)
        if real is None or (not _permitted(real, s, False) and _permitted(real, s, True)):
            raise _refused(f"{field}.path", allowed_roots(s, admin=False))
