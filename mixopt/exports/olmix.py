"""``olmix``: olmix's proposal file (``olmix/fit``'s ``*_optimal.json``:
``[{"domain", "weight"}]``)."""

from __future__ import annotations

import json

from mixopt.exports.spec import MixtureExport

FORMAT = "olmix"
LABEL = "olmix"
#: a staged recommendation: one proposal file per phase (``phaseK-name/``)
STAGED: str | None = "per-phase"


def write(spec: MixtureExport, weights: dict[str, float]) -> dict[str, str]:
    out = [{"domain": n, "weight": w} for n, w in weights.items()]
    return {f"{spec.slug}_optimal.json": json.dumps(out, ensure_ascii=False) + "\n"}
