"""The layers import one way (DESIGN.md): ``app -> mixopt``, ``workers -> app + mixopt``, and
``mixopt`` (the library: client, CLI front, science) imports neither, nor any server package.

An AST walk over every module, so a forbidden import anywhere (top level or inside a function)
fails here, with the file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SERVER_LIBS = {
    "fastapi",
    "starlette",
    "sqlalchemy",
    "alembic",
    "celery",
    "kombu",
    "redis",
    "jinja2",
    "uvicorn",
    "pydantic_settings",
    "psycopg",
}

#: package -> top-level names it must never import
FORBIDDEN = {
    "mixopt": {"app", "workers", "migrations"} | SERVER_LIBS,
    "app": {"workers"},
    "migrations": {"workers"},
}
#: the science may use torch only where it trains (DESIGN: torch is imported by training code)
TORCH_ALLOWED = (
    "mixopt/training/",
    "mixopt/online/callback.py",
    "mixopt/online/reweighting.py",
    "mixopt/integrations/",  # trainer callbacks: torch imported lazily, when used
    "workers/tasks/training.py",
)
#: the base install (client + CLI front) has no numpy and no torch: nothing it loads at import
#: time may import them at module level
BASE_MODULES = (
    "mixopt/__init__.py",
    "mixopt/client.py",
    "mixopt/extras.py",
    "mixopt/paths.py",
    "mixopt/api_types.py",
    "mixopt/render.py",
    "mixopt/demo.py",
    "mixopt/demo_training.py",
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "mixopt" / "cli").glob("*.py")),
)


def imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, top-level module, at module level) for every import in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top_level = {id(n) for n in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            found.append((node.lineno, name.split(".")[0], id(node) in top_level))
    return found


def modules(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layers_import_one_way(package):
    bad = [
        f"{p.relative_to(ROOT)}:{line} imports {mod}"
        for p in modules(package)
        for line, mod, _ in imports(p)
        if mod in FORBIDDEN[package]
    ]
    assert not bad, "imports against the layer direction:\n" + "\n".join(bad)


def test_torch_only_in_training_code():
    bad = [
        f"{p.relative_to(ROOT)}:{line}"
        for pkg in ("mixopt", "app", "workers")
        for p in modules(pkg)
        for line, mod, _ in imports(p)
        if mod == "torch" and not str(p.relative_to(ROOT)).startswith(TORCH_ALLOWED)
    ]
    assert not bad, "torch imported outside the training code:\n" + "\n".join(bad)


def test_base_modules_need_no_numpy_or_torch():
    bad = [
        f"{rel}:{line} imports {mod}"
        for rel in BASE_MODULES
        for line, mod, top in imports(ROOT / rel)
        if top and mod in {"numpy", "torch", "scipy", "sklearn", "pandas"}
    ]
    assert not bad, "\n".join(bad)


def test_the_walk_sees_a_violation(tmp_path):
    """The checker itself: a function-level import is found too."""
    f = tmp_path / "m.py"
    f.write_text("import os\n\ndef f():\n    from app.store import db\n    return db\n")
    assert (4, "app", False) in imports(f)
