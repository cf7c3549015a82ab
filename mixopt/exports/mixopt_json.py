"""``json``: mixopt's own file: the mixture with where it came from (fit, estimator,
prediction), the target scale and the constraints; an online session's schedule, a staged
recommendation's phases and the group totals when there are any."""

from __future__ import annotations

import json
from typing import Any

from mixopt.exports.spec import MixtureExport, rounded_weights

FORMAT = "json"
LABEL = "JSON"
#: a staged recommendation: the writer reads ``spec.phases`` itself (one file)
STAGED: str | None = "self"


def write(spec: MixtureExport, weights: dict[str, float]) -> dict[str, str]:
    body: dict[str, Any] = {
        "format": "mixopt.mixture/1",
        "mixture": weights,
        "domains": [d["name"] for d in spec.domains],
        "origin": spec.origin,
        "scale": spec.scale,
        "constraints": spec.constraints,
    }
    if spec.schedule:
        body["schedule"] = [{"step": s, "mixture": rounded_weights(w)} for s, w in spec.schedule]
    if spec.phases:
        body["phases"] = [
            {
                "name": p["name"],
                "tokens": p["tokens"],
                "start_tokens": p["start_tokens"],
                "mixture": rounded_weights(p["mixture_by_domain"]),
            }
            for p in spec.phases
        ]
    from mixopt.mixing.hierarchy import group_totals  # lazy: mixopt.mixing loads every estimator

    totals = group_totals(weights, {d["name"]: d["group"] for d in spec.domains if d.get("group")})
    if totals:
        body["group_totals"] = {g: round(t, 6) for g, t in totals.items()}
    return {f"{spec.slug}.json": json.dumps(body, indent=2, ensure_ascii=False) + "\n"}
