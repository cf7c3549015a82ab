"""Runs of a Weights & Biases export as mixopt runs (``mixopt runs import-wandb``); no
``wandb`` package and no network: the export is a file.

Two forms are read:

* **CSV**, as the W&B runs table exports it ("Export as CSV"): one row per run, the columns
  ``Name`` (the display name), ``ID`` when shown (else the name is the id), ``State``, and one
  column per config key and per summary metric under their own names (``mix.web``,
  ``eval/web/loss``; the UI's other columns -- ``Created``, ``Runtime``, ``User``, ``Notes``,
  ``Tags``, ``Sweep`` -- are not read). Both config and summary columns are offered to the
  mapping, as the file does not say which is which.
* **JSON**: a list (or ``{"runs": [...]}``) of ``{"id", "name", "state", "config",
  "summary"}`` objects, what ``[{"id": r.id, "name": r.name, "state": r.state, "config":
  r.config, "summary": r.summary._json_dict} for r in wandb.Api().runs(path)]`` dumps. Nested
  config objects are flattened with ``.`` (``{"mix": {"web": 0.6}}`` is ``mix.web``) and
  nested summaries with ``/``; ``{"value": x}`` config entries (the ``config.yaml`` form) are
  unwrapped.

Only ``finished`` runs are read unless ``states`` says otherwise (a row without a state is
read). The mapping is :class:`~mixopt.integrations.run_import.RunMapping`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from mixopt.integrations.run_import import ImportPlan, RunMapping, plan

#: the largest export read (bytes)
MAX_BYTES = 256 * 2**20

Record = tuple[str, str | None, dict[str, Any], dict[str, Any]]


def _flatten(value: Mapping[str, Any], sep: str, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, v in value.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(v, Mapping) and set(v) == {"value"} | ({"desc"} & set(v)):
            v = v["value"]  # config.yaml's {"desc": ..., "value": ...}
        if isinstance(v, Mapping):
            out.update(_flatten(v, sep, name))
        else:
            out[name] = v
    return out


def _state_ok(state: Any, states: Sequence[str]) -> bool:
    return not states or state in (None, "") or str(state).lower() in states


def csv_records(text: str, states: Sequence[str] = ("finished",)) -> Iterator[Record]:
    """The runs of a W&B runs-table CSV (see the module for the columns read)."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = reader.fieldnames or []
    key = next((k for k in ("ID", "id", "run_id", "Run ID") if k in header), None)
    name_col = next((k for k in ("Name", "name", "display_name") if k in header), None)
    if key is None and name_col is None:
        raise ValueError("the CSV has neither an ID nor a Name column (W&B's runs table export)")
    ignored = {key, name_col, "State", "state"}
    for line, row in enumerate(reader, start=2):
        run_id = (row.get(key) if key else None) or (row.get(name_col) if name_col else None)
        if not run_id:
            raise ValueError(f"line {line}: a run without an {key or name_col}")
        if not _state_ok(row.get("State", row.get("state")), states):
            continue
        values = {k: v for k, v in row.items() if k not in ignored and k and v not in (None, "")}
        yield run_id, (row.get(name_col) if name_col else None), values, values


def json_records(document: Any, states: Sequence[str] = ("finished",)) -> Iterator[Record]:
    """The runs of a JSON export (see the module for its shape)."""
    runs = document.get("runs") if isinstance(document, Mapping) else document
    if not isinstance(runs, list):
        raise ValueError('expected a list of runs or {"runs": [...]}')
    for i, run in enumerate(runs):
        if not isinstance(run, Mapping) or not (run.get("id") or run.get("name")):
            raise ValueError(f"runs[{i}]: expected an object with an id (or a name)")
        if not _state_ok(run.get("state"), states):
            continue
        config, summary = run.get("config") or {}, run.get("summary") or {}
        if not isinstance(config, Mapping) or not isinstance(summary, Mapping):
            raise ValueError(f"runs[{i}]: config and summary must be objects")
        params = _flatten(config, ".")
        yield str(run.get("id") or run["name"]), run.get("name"), params, _flatten(summary, "/")


def read_records(path: Path, states: Sequence[str] = ("finished",)) -> Iterator[Record]:
    """The runs of an export file: JSON by its suffix or its first character, else CSV."""
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise ValueError(f"{path}: {size} bytes; at most {MAX_BYTES}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
    if path.suffix.lower() == ".json" or text.lstrip()[:1] in ("[", "{"):
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not JSON ({exc})") from None
        return json_records(document, states)
    try:
        return iter(list(csv_records(text, states)))
    except csv.Error as exc:
        raise ValueError(f"{path}: not a CSV file ({exc})") from None


def import_plan(
    path: Path, mapping: RunMapping, states: Sequence[str] = ("finished",)
) -> ImportPlan:
    return plan(read_records(path, states), mapping)
