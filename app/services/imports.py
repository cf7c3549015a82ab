"""CSV import/export in the two formats people already have.

* **regmix** (sail-sg/regmix ``data/``): a mixture CSV with ``index`` and ``train_<domain>``
  columns, and a loss CSV with ``index`` and one column per metric, joined on ``index``.
* **olmix** (allenai/olmix): ``ratios.csv`` with ``run`` and one column per domain, and
  ``metrics.csv`` with ``run`` and one column per metric, joined on ``run``. A ``name``
  column, when present, becomes the run's name; other non-numeric columns are ignored.
"""

from __future__ import annotations

import csv
import io
import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field

from app.services.errors import Invalid
from app.store.models import Project, Run

FORMATS = ("regmix", "olmix")
_IGNORED = {"name", "index", "run", "", "unnamed: 0"}


@dataclass
class ParsedRow:
    external_id: str
    name: str | None
    mixture: dict[str, float]
    metrics: dict[str, float]


@dataclass
class ParsedImport:
    format: str
    domains: list[str]
    metrics: list[str]
    rows: list[ParsedRow] = field(default_factory=list)


def _read(text: str, label: str) -> tuple[list[str], list[dict[str, str]]]:
    text = text.lstrip("\ufeff")
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise Invalid(f"{label} is empty or has no header row", field=label)
    header = [h.strip() for h in reader.fieldnames]
    if len(set(header)) != len(header):
        raise Invalid(f"{label} has duplicate column names", field=label)
    reader.fieldnames = header
    rows = list(reader)
    if not rows:
        raise Invalid(f"{label} has a header but no rows", field=label)
    return header, rows


def detect_format(mixture_header: Sequence[str]) -> str:
    if "index" in mixture_header and any(h.startswith("train_") for h in mixture_header):
        return "regmix"
    if "run" in mixture_header:
        return "olmix"
    raise Invalid("cannot tell the format: expected an 'index' column with 'train_<domain>' columns "
                  "(regmix) or a 'run' column (olmix)", field="mixtures")


def _number(value: str | None, label: str, line: int, column: str) -> float | None:
    if value is None or value.strip() == "":
        return None
    try:
        x = float(value)
    except ValueError:
        raise Invalid(f"{label} line {line}, column {column!r}: {value!r} is not a number", field=label) from None
    if not math.isfinite(x):
        raise Invalid(f"{label} line {line}, column {column!r}: {value!r} is not finite", field=label)
    return x


def parse_pair(mixtures_csv: str, metrics_csv: str, fmt: str = "auto") -> ParsedImport:
    mix_header, mix_rows = _read(mixtures_csv, "mixtures")
    met_header, met_rows = _read(metrics_csv, "metrics")
    if fmt == "auto":
        fmt = detect_format(mix_header)
    if fmt not in FORMATS:
        raise Invalid(f"format must be one of {FORMATS} or auto, not {fmt!r}", field="format")
    key = "index" if fmt == "regmix" else "run"
    for header, label in ((mix_header, "mixtures"), (met_header, "metrics")):
        if key not in header:
            raise Invalid(f"{label} has no {key!r} column to join on ({fmt} format)", field=label)
    if fmt == "regmix":
        domain_cols = [h for h in mix_header if h.startswith("train_")]
        domains = [h.removeprefix("train_") for h in domain_cols]
    else:
        domain_cols = [h for h in mix_header if h.lower() not in _IGNORED and _numeric_column(mix_rows, h)]
        domains = list(domain_cols)
    if not domains:
        raise Invalid("mixtures has no domain columns", field="mixtures")
    metric_cols = [h for h in met_header if h.lower() not in _IGNORED and _numeric_column(met_rows, h)]
    if not metric_cols:
        raise Invalid("metrics has no numeric metric columns", field="metrics")

    metrics_by_id: dict[str, dict[str, float]] = {}
    for line, row in enumerate(met_rows, start=2):
        rid = (row.get(key) or "").strip()
        if not rid:
            raise Invalid(f"metrics line {line}: empty {key!r}", field="metrics")
        if rid in metrics_by_id:
            raise Invalid(f"metrics line {line}: {key} {rid!r} appears twice", field="metrics")
        values = {c: _number(row.get(c), "metrics", line, c) for c in metric_cols}
        metrics_by_id[rid] = {c: v for c, v in values.items() if v is not None}

    parsed = ParsedImport(format=fmt, domains=domains, metrics=metric_cols)
    seen: set[str] = set()
    for line, row in enumerate(mix_rows, start=2):
        rid = (row.get(key) or "").strip()
        if not rid:
            raise Invalid(f"mixtures line {line}: empty {key!r}", field="mixtures")
        if rid in seen:
            raise Invalid(f"mixtures line {line}: {key} {rid!r} appears twice", field="mixtures")
        seen.add(rid)
        if rid not in metrics_by_id:
            raise Invalid(f"mixtures line {line}: {key} {rid!r} has no row in metrics", field="metrics")
        mixture = {}
        for col, dom in zip(domain_cols, domains, strict=True):
            w = _number(row.get(col), "mixtures", line, col)
            mixture[dom] = 0.0 if w is None else w
        name = (row.get("name") or "").strip() or None
        parsed.rows.append(ParsedRow(external_id=rid, name=name, mixture=mixture, metrics=metrics_by_id[rid]))
    orphans = set(metrics_by_id) - seen
    if orphans:
        raise Invalid(f"metrics has rows with no mixture: {key} {sorted(orphans)[:5]}", field="metrics")
    return parsed


def _numeric_column(rows: list[dict[str, str]], col: str) -> bool:
    for row in rows[:20]:
        v = (row.get(col) or "").strip()
        if v:
            try:
                float(v)
            except ValueError:
                return False
    return True


def export_csv(project: Project, runs: Sequence[Run], layout: str) -> tuple[str, str]:
    """The (mixtures, metrics) CSV pair for the runs in ``layout`` (regmix or olmix)."""
    if layout not in FORMATS:
        raise Invalid(f"layout must be one of {FORMATS}", field="layout")
    domains = [d.name for d in project.domains]
    metric_names: list[str] = []
    for r in runs:
        for m in r.metrics:
            if m not in metric_names:
                metric_names.append(m)
    key = "index" if layout == "regmix" else "run"
    mix_buf, met_buf = io.StringIO(), io.StringIO()
    mw, tw = csv.writer(mix_buf, lineterminator="\n"), csv.writer(met_buf, lineterminator="\n")
    if layout == "regmix":
        mw.writerow([key, *(f"train_{d}" for d in domains)])
        tw.writerow([key, *metric_names])
    else:
        mw.writerow([key, "name", *domains])
        tw.writerow([key, "name", *metric_names])
    for r in runs:
        rid = r.external_id or str(r.id)
        extra = [] if layout == "regmix" else [r.name or ""]
        mw.writerow([rid, *extra, *(repr(float(r.mixture.get(d, 0.0))) for d in domains)])
        tw.writerow([rid, *extra, *(repr(float(r.metrics[m])) if m in r.metrics else "" for m in metric_names)])
    return mix_buf.getvalue(), met_buf.getvalue()


def export_zip(project: Project, runs: Sequence[Run], layout: str) -> bytes:
    mixtures, metrics = export_csv(project, runs, layout)
    names = ("train_mixture.csv", "train_loss.csv") if layout == "regmix" else ("ratios.csv", "metrics.csv")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(names[0], mixtures)
        zf.writestr(names[1], metrics)
    return buf.getvalue()


def run_json(r: Run) -> dict:
    return {
        "id": r.id, "name": r.name, "external_id": r.external_id, "mixture": r.mixture, "metrics": r.metrics,
        "model_params": r.model_params, "train_tokens": r.train_tokens, "train_steps": r.train_steps,
        "seed": r.seed, "tags": r.tags, "status": r.status, "origin": r.origin,
    }
