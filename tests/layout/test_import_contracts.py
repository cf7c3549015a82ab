"""The import contracts of ``pyproject.toml`` (``[tool.importlinter]``) hold on the tree, and
each one fails when a back-edge is added to a copy of it.

``lint-imports`` reads every import, those written inside functions included (grimp parses
the whole module), so a cycle cannot hide behind a local import.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PACKAGES = ("mixopt", "app", "workers", "migrations")


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory) -> Path:
    tree = tmp_path_factory.mktemp("tree")
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package,
            tree / package,
            ignore=shutil.ignore_patterns("__pycache__", "data", "static"),
        )
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def test_contracts_hold_on_the_tree(tree_copy):
    r = lint_imports(tree_copy)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Contracts: 3 kept, 0 broken." in r.stdout


#: (file in the copy, the line added, the contract that must then break)
BACK_EDGES = [
    ("mixopt/progress.py", "import app.core.config", "Layers: workers -> app -> mixopt"),
    ("app/store/models.py", "import app.services.errors", "Inside app: main -> dashboard"),
    ("app/services/errors.py", "import app.api.errors", "Inside app: main -> dashboard"),
    ("mixopt/mixing/base.py", "import mixopt.mixing.gp", "No import cycles inside mixopt"),
]


@pytest.mark.parametrize(
    ("path", "line", "contract"), BACK_EDGES, ids=[edge[0] for edge in BACK_EDGES]
)
def test_a_back_edge_breaks_its_contract(tree_copy, path, line, contract):
    target = tree_copy / path
    original = target.read_text()
    # inside a function, where the hidden cycles of the old layout were written
    target.write_text(original + f"\n\ndef _back_edge():\n    {line}  # noqa\n")
    try:
        r = lint_imports(tree_copy)
    finally:
        target.write_text(original)
    assert r.returncode != 0, r.stdout
    assert "BROKEN" in r.stdout
    broken = [ln for ln in r.stdout.splitlines() if "BROKEN" in ln]
    assert any(contract in ln for ln in broken), r.stdout
