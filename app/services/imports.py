"""CSV import/export in the two formats people already have.

* **regmix** (sail-sg/regmix ``data/``): a mixture CSV with ``index`` and ``train_<domain>``
  columns, and a loss CSV with ``index`` and one column per metric, joined on ``index``.
* **olmix** (allenai/olmix): ``ratios.csv`` with ``run`` (or ``run_id``, what
  ``olmix.fit.loaders.load_from_csv`` reads) and one column per domain, and ``metrics.csv``
  with the same key and one column per metric. A ``name`` column, when present, becomes the
  run's name; ``index``, ``Unnamed: N`` (a pandas index) and other non-numeric columns are
  ignored and reported.

Column types are decided over the whole file (a column is numeric when every non-empty cell
of it parses as a number). Runs present in only one of the two files are reported
(``unmatched``) and skipped, as olmix's loader keeps the runs present in both, or refused with
``on_unmatched=error``.
"""

from __future__ import annotations

import csv
import io
import math
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.services.errors import Invalid
from app.store.models import CurvePoint, Project, Run

FORMATS = ("regmix", "olmix")
_IGNORED = {"name", "index", "run", "run_id", ""}
_UNNAMED = re.compile(r"^unnamed: \d+$")


def _ignored(column: str) -> bool:
    return column.lower() in _IGNORED or bool(_UNNAMED.match(column.lower()))


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
    #: ids present in one file only:
    #: {"mixtures": [ids without metrics], "metrics": [ids without a mixture]}
    unmatched: dict[str, list[str]] = field(default_factory=lambda: {"mixtures": [], "metrics": []})
    #: non-numeric columns left out, per file
    ignored_columns: dict[str, list[str]] = field(
        default_factory=lambda: {"mixtures": [], "metrics": []}
    )


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
    if "run" in mixture_header or "run_id" in mixture_header:
        return "olmix"
    raise Invalid(
        "cannot tell the format: expected an 'index' column with 'train_<domain>' columns "
        "(regmix) or a 'run' or 'run_id' column (olmix)",
        field="mixtures",
    )


def _number(value: str | None, label: str, line: int, column: str) -> float | None:
    if value is None or value.strip() == "":
        return None
    try:
        x = float(value)
    except ValueError:
        raise Invalid(
            f"{label} line {line}, column {column!r}: {value!r} is not a number", field=label
        ) from None
    if not math.isfinite(x):
        raise Invalid(
            f"{label} line {line}, column {column!r}: {value!r} is not finite", field=label
        )
    return x


def _key(fmt: str, header: Sequence[str], label: str) -> str:
    if fmt == "regmix":
        keys = ["index"]
    else:
        keys = [k for k in ("run", "run_id") if k in header]
        if len(keys) > 1:
            raise Invalid(f"{label} has both 'run' and 'run_id' columns: keep one", field=label)
    if not keys or keys[0] not in header:
        want = "'index'" if fmt == "regmix" else "'run' or 'run_id'"
        raise Invalid(f"{label} has no {want} column to join on ({fmt} format)", field=label)
    return keys[0]


def _check_options(fmt: str, on_unmatched: str) -> None:
    if fmt not in FORMATS:
        raise Invalid(f"format must be one of {FORMATS} or auto, not {fmt!r}", field="format")
    if on_unmatched not in ("skip", "error"):
        raise Invalid(
            f"on_unmatched must be skip or error, not {on_unmatched!r}", field="on_unmatched"
        )


def _domain_columns(
    fmt: str, header: list[str], rows: list[dict[str, str]], parsed: ParsedImport
) -> tuple[list[str], list[str]]:
    """The mixture file's domain columns and the domain names they give (non-numeric columns of
    an olmix file go to ``parsed.ignored_columns``)."""
    if fmt == "regmix":
        domain_cols = [h for h in header if h.startswith("train_")]
        domains = [h.removeprefix("train_") for h in domain_cols]
    else:
        candidates = [h for h in header if not _ignored(h)]
        domain_cols = [h for h in candidates if _numeric_column(rows, h)]
        parsed.ignored_columns["mixtures"] = [h for h in candidates if h not in domain_cols]
        domains = list(domain_cols)
    if not domains:
        raise Invalid("mixtures has no domain columns", field="mixtures")
    return domain_cols, domains


def _metric_columns(
    header: list[str], rows: list[dict[str, str]], parsed: ParsedImport
) -> list[str]:
    """The metrics file's numeric columns (the others go to ``parsed.ignored_columns``)."""
    candidates = [h for h in header if not _ignored(h)]
    metric_cols = [h for h in candidates if _numeric_column(rows, h)]
    parsed.ignored_columns["metrics"] = [h for h in candidates if h not in metric_cols]
    if not metric_cols:
        raise Invalid("metrics has no numeric metric columns", field="metrics")
    return metric_cols


def _metrics_by_id(
    rows: list[dict[str, str]], key: str, metric_cols: list[str]
) -> dict[str, dict[str, float]]:
    metrics_by_id: dict[str, dict[str, float]] = {}
    for line, row in enumerate(rows, start=2):
        rid = (row.get(key) or "").strip()
        if not rid:
            raise Invalid(f"metrics line {line}: empty {key!r}", field="metrics")
        if rid in metrics_by_id:
            raise Invalid(f"metrics line {line}: {key} {rid!r} appears twice", field="metrics")
        values = {c: _number(row.get(c), "metrics", line, c) for c in metric_cols}
        metrics_by_id[rid] = {c: v for c, v in values.items() if v is not None}
    return metrics_by_id


def _mixture(
    row: dict[str, str], line: int, domain_cols: list[str], domains: list[str]
) -> dict[str, float]:
    mixture = {}
    for col, dom in zip(domain_cols, domains, strict=True):
        w = _number(row.get(col), "mixtures", line, col)
        mixture[dom] = 0.0 if w is None else w
    return mixture


def _join_rows(
    parsed: ParsedImport,
    rows: list[dict[str, str]],
    key: str,
    domain_cols: list[str],
    metrics_by_id: dict[str, dict[str, float]],
    on_unmatched: str,
) -> set[str]:
    """Add the mixture rows that have metrics to ``parsed.rows``; the ids seen in the file."""
    seen: set[str] = set()
    for line, row in enumerate(rows, start=2):
        rid = (row.get(key) or "").strip()
        if not rid:
            raise Invalid(f"mixtures line {line}: empty {key!r}", field="mixtures")
        if rid in seen:
            raise Invalid(f"mixtures line {line}: {key} {rid!r} appears twice", field="mixtures")
        seen.add(rid)
        mixture = _mixture(row, line, domain_cols, parsed.domains)
        if rid not in metrics_by_id:
            if on_unmatched == "error":
                raise Invalid(
                    f"mixtures line {line}: {key} {rid!r} has no row in metrics "
                    "(pass on_unmatched=skip to import only the runs in both files)",
                    field="metrics",
                )
            parsed.unmatched["mixtures"].append(rid)
            continue
        name = (row.get("name") or "").strip() or None
        parsed.rows.append(
            ParsedRow(external_id=rid, name=name, mixture=mixture, metrics=metrics_by_id[rid])
        )
    return seen


def parse_pair(
    mixtures_csv: str, metrics_csv: str, fmt: str = "auto", *, on_unmatched: str = "skip"
) -> ParsedImport:
    """Read a (mixtures, metrics) CSV pair; ``on_unmatched`` is ``skip`` (report the runs
    present in one file only and leave them out) or ``error`` (a 422 naming them)."""
    mix_header, mix_rows = _read(mixtures_csv, "mixtures")
    met_header, met_rows = _read(metrics_csv, "metrics")
    if fmt == "auto":
        fmt = detect_format(mix_header)
    _check_options(fmt, on_unmatched)
    mix_key, met_key = _key(fmt, mix_header, "mixtures"), _key(fmt, met_header, "metrics")
    parsed = ParsedImport(format=fmt, domains=[], metrics=[])
    domain_cols, domains = _domain_columns(fmt, mix_header, mix_rows, parsed)
    metric_cols = _metric_columns(met_header, met_rows, parsed)
    parsed.domains, parsed.metrics = domains, metric_cols

    metrics_by_id = _metrics_by_id(met_rows, met_key, metric_cols)
    seen = _join_rows(parsed, mix_rows, mix_key, domain_cols, metrics_by_id, on_unmatched)
    orphans = [rid for rid in metrics_by_id if rid not in seen]
    if orphans:
        if on_unmatched == "error":
            raise Invalid(
                f"metrics has rows with no mixture: {met_key} {orphans[:5]} "
                "(pass on_unmatched=skip to import only the runs in both files)",
                field="metrics",
            )
        parsed.unmatched["metrics"] = orphans
    return parsed


def _numeric_column(rows: list[dict[str, str]], col: str) -> bool:
    """Every non-empty cell of the column (the whole file, not a sample) is a number."""
    for row in rows:
        v = (row.get(col) or "").strip()
        if v:
            try:
                float(v)
            except ValueError:
                return False
    return True


def existing_keys(
    session: Session,
    project: Project,
    ids: Sequence[str],
    *,
    model_params: int | None,
    train_tokens: int | None,
    train_steps: int | None,
) -> set[str]:
    """External ids already imported at this scale: the duplicate key is (id, model_params,
    train_tokens, train_steps), so RegMix's 1M, 60M and 1B files, which reuse the same indices,
    live in one project."""
    found: set[str] = set()
    ids = list(ids)
    scale = {
        Run.model_params: model_params,
        Run.train_tokens: train_tokens,
        Run.train_steps: train_steps,
    }
    conditions = [col.is_(None) if value is None else col == value for col, value in scale.items()]
    for start in range(0, len(ids), 1000):
        found.update(
            session.scalars(
                select(Run.external_id).where(
                    Run.project_id == project.id,
                    Run.external_id.in_(ids[start : start + 1000]),
                    *conditions,
                )
            )
        )
    return found


def export_csv(project: Project, runs: Sequence[Run], layout: str) -> tuple[str, str]:
    """The (mixtures, metrics) CSV pair for the runs in ``layout`` (regmix or olmix)."""
    if layout not in FORMATS:
        raise Invalid(f"layout must be one of {FORMATS}", field="layout")
    domains = [d.name for d in project.domains]
    # runs of older domain-set versions keep their mixture: retired domains get columns after the
    # current ones
    domains += list(dict.fromkeys(k for r in runs for k in r.mixture if k not in set(domains)))
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
        tw.writerow(
            [
                rid,
                *extra,
                *(repr(float(r.metrics[m])) if m in r.metrics else "" for m in metric_names),
            ]
        )
    return mix_buf.getvalue(), met_buf.getvalue()


def export_zip(project: Project, runs: Sequence[Run], layout: str) -> bytes:
    mixtures, metrics = export_csv(project, runs, layout)
    names = (
        ("train_mixture.csv", "train_loss.csv")
        if layout == "regmix"
        else ("ratios.csv", "metrics.csv")
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(names[0], mixtures)
        zf.writestr(names[1], metrics)
    return buf.getvalue()


def run_json(r: Run, curve: list[CurvePoint] | None = None) -> dict:
    """Everything a run holds, as the JSON export writes it and the JSON import reads it back."""
    return {
        "id": r.id,
        "name": r.name,
        "external_id": r.external_id,
        "mixture": r.mixture,
        "metrics": r.metrics,
        "model_params": r.model_params,
        "train_tokens": r.train_tokens,
        "train_steps": r.train_steps,
        "seed": r.seed,
        "tags": r.tags,
        "status": r.status,
        "origin": r.origin,
        "details": r.details or {},
        "error": r.error,
        "job_id": r.job_id,
        "created_at": r.created_at.isoformat() if r.created_at else None,
        "updated_at": r.updated_at.isoformat() if r.updated_at else None,
        "curve": [
            {"step": p.step, "tokens": p.tokens, "metrics": p.metrics} for p in (curve or [])
        ],
    }


def runs_document(session: Session, project: Project, runs: Sequence[Run]) -> dict:
    """The JSON export of runs (``format=json``): project name, domains in order, and every run
    with its details, error and loss curve; ``POST .../runs/import/json`` reads it back."""
    curves: dict[int, list[CurvePoint]] = {}
    ids = [r.id for r in runs]
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        for p in session.scalars(
            select(CurvePoint)
            .where(CurvePoint.run_id.in_(chunk))
            .order_by(CurvePoint.run_id, CurvePoint.step)
        ):
            curves.setdefault(p.run_id, []).append(p)
    return {
        "format": "mixopt-runs",
        "version": 1,
        "project": project.name,
        "domains": [d.name for d in project.domains],
        "runs": [run_json(r, curves.get(r.id)) for r in runs],
    }
