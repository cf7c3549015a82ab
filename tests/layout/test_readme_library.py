"""The README's "Use the library" snippet runs as written, on the bundled RegMix runs, without
a server (nothing from app/ or workers/ is imported)."""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.science


def _snippet() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Use the library"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_library_example_runs_on_regmix_runs(capsys):
    data = ROOT / "mixopt" / "data" / "regmix"
    with open(data / "train_mixture_1m.csv") as f:
        rows = list(csv.DictReader(f))[:64]
    with open(data / "train_pile_loss_1m.csv") as f:
        loss = {r["index"]: float(r["metric/the_pile_pile_cc_val_loss"]) for r in csv.DictReader(f)}
    domains = [k for k in rows[0] if k != "index"]
    X = np.array([[float(r[d]) for d in domains] for r in rows])
    X /= X.sum(1, keepdims=True)
    y = np.array([loss[r["index"]] for r in rows])
    before = set(sys.modules)
    exec(compile(_snippet(), "README.md", "exec"), {"X": X, "y": y})
    loaded = {m.split(".")[0] for m in set(sys.modules) - before}
    assert not loaded & {"app", "workers", "fastapi", "sqlalchemy", "celery"}
    printed = capsys.readouterr().out
    rho = float(printed.split()[-1])
    assert rho > 0.8  # the GP ranks 64 RegMix runs well (README's fidelity table: 0.95)
