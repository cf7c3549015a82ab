"""The README's "Use the library" snippet runs as written (it loads the bundled RegMix runs
itself), without a server (nothing from app/ or workers/ is imported)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.science


def _snippet() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Use the library") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_library_example_runs_on_regmix_runs(capsys):
    before = set(sys.modules)
    exec(compile(_snippet(), "README.md", "exec"), {})
    loaded = {m.split(".")[0] for m in set(sys.modules) - before}
    assert not loaded & {"app", "workers", "fastapi", "sqlalchemy", "celery"}
    printed = capsys.readouterr().out
    assert "predicts objective" in printed  # the recommendation's explanation
    rho = float(printed.split()[-1])
    assert rho > 0.8  # the GP ranks 64 RegMix runs well (README's fidelity table: 0.95)
