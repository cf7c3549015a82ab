"""The OpenAPI document is a contract: moving code between modules must not change it.

``tests/fixtures/openapi.json`` is the document as it was before the layout redesign (issue
22). A deliberate API change updates it with ``MIXOPT_UPDATE_OPENAPI=1 pytest
tests/api/test_openapi_document.py`` and says why in the commit; any other difference fails
here with the paths that differ.
"""

from __future__ import annotations

import json
import os

from tests.conftest import REPO

FIXTURE = REPO / "tests" / "fixtures" / "openapi.json"


def _differences(old, new, path="") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            where = f"{path}/{key}"
            if key not in new:
                out.append(f"removed {where}")
            elif key not in old:
                out.append(f"added {where}")
            else:
                out.extend(_differences(old[key], new[key], where))
        return out
    return (
        []
        if old == new
        else [f"changed {path}: {json.dumps(old)[:120]} -> {json.dumps(new)[:120]}"]
    )


def test_openapi_document_unchanged(client):
    doc = client.get("/openapi.json").json()
    if os.environ.get("MIXOPT_UPDATE_OPENAPI") == "1":
        FIXTURE.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    frozen = json.loads(FIXTURE.read_text())
    diff = _differences(frozen, doc)
    assert not diff, f"{len(diff)} differences from the frozen document:\n" + "\n".join(diff[:40])


def test_difference_finder_reports_a_changed_schema():
    old = {"paths": {"/v1/runs": {"get": {"summary": "List runs"}}}}
    new = {"paths": {"/v1/runs": {"get": {"summary": "List all runs"}}, "/v1/x": {}}}
    assert _differences(old, new) == [
        'changed /paths//v1/runs/get/summary: "List runs" -> "List all runs"',
        "added /paths//v1/x",
    ]
