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

The files are read as spreadsheets write them (``_read``): UTF-8 with or without a BOM, LF,
CRLF or CR line ends (a CR alone ends a line, as in a file opened with ``newline=''``), comma,
semicolon or tab delimiters sniffed on the header line, strict quoting, rows of the header's
width. Limits come from settings and are checked as the file is read, the number of columns
on the header before any row (``MIXOPT_MAX_CSV_COLUMNS``), the size of every field
(``MIXOPT_MAX_CSV_FIELD_BYTES``, within the csv module's own process-wide limit, which is never
changed here); every defect is an ``Invalid`` (422) naming the file, the line and the column
where it is known. Everything is linear in the size of the files.
"""

from __future__ import annotations

import csv
import io
import math
import re
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.services.errors import Invalid
from app.store.models import CurvePoint, Project, Run

FORMATS = ("regmix", "olmix")
_IGNORED = {"name", "index", "run", "run_id", ""}
_UNNAMED = re.compile(r"^unnamed: \d+$")
#: delimiters a file may use, in the order that wins a tie
_DELIMITERS = (",", "\t", ";")
_DELIMITER_NAMES = {",": "comma", "\t": "tab", ";": "semicolon"}
_QUOTED = re.compile(r'"[^"]*"')
_LINE_END = re.compile(r"\r\n?|\n")
_FIELD_SETTING = "MIXOPT_MAX_CSV_FIELD_BYTES"
_COLUMNS_SETTING = "MIXOPT_MAX_CSV_COLUMNS"


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


@dataclass
class _Table:
    """One CSV file: its header, its rows (each as long as the header) and the line each row
    starts on (lines counted as universal newlines count them)."""

    label: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.position = {h: i for i, h in enumerate(self.header)}


def decode_csv(data: bytes, label: str) -> str:
    """The text of an uploaded CSV file: UTF-8, a byte-order mark dropped; anything else is a 422
    naming the file, the line and the byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        before = data[: e.start]
        line = before.count(b"\n") + before.count(b"\r") - before.count(b"\r\n") + 1
        column = e.start - max(before.rfind(b"\n"), before.rfind(b"\r"))
        raise Invalid(
            f"{label} is not UTF-8 text: line {line}, byte {column} of the line "
            f"(0x{data[e.start]:02x}); save the file as UTF-8 CSV",
            field=label,
        ) from None


def _sniff(text: str) -> str:
    """The delimiter of the header line: the most frequent of comma, tab and semicolon outside
    quotes (comma on a tie or a single column). Linear in the line's length, unlike
    ``csv.Sniffer``, whose quote regex is quadratic on a hostile header."""
    text = text.lstrip("\r\n")
    end = _LINE_END.search(text)
    first = _QUOTED.sub("", text[: end.start()] if end else text)
    counts = [first.count(d) for d in _DELIMITERS]
    return _DELIMITERS[counts.index(max(counts))]


def _field_too_large(label: str, line: int, column: str, size: int, limit: int) -> Invalid:
    return Invalid(
        f"{label} line {line}, column {column}: a field of {size} bytes; at most {limit} "
        f"({_FIELD_SETTING})",
        field=label,
    )


def _column_name(header: list[str] | None, i: int) -> str:
    if header is not None and i < len(header) and header[i]:
        return f"{i + 1} ({header[i]!r})"
    return str(i + 1)


def _check_fields(
    row: list[str], label: str, line: int, header: list[str] | None, limit: int
) -> None:
    """Every field of the row within ``limit`` UTF-8 bytes (a character is at most 4 bytes, so
    only fields longer than ``limit // 4`` characters are encoded)."""
    if max(map(len, row), default=0) <= limit // 4:
        return
    for i, value in enumerate(row):
        if len(value) > limit // 4 and (size := len(value.encode())) > limit:
            raise _field_too_large(label, line, _column_name(header, i), size, limit)


def _locate_long_field(text: str, delimiter: str, line: int, limit: int) -> tuple[int, int]:
    """(column, UTF-8 bytes) of the first field longer than ``limit`` characters in the row
    that starts on ``line`` (quotes included): the csv module stops at its own limit without
    saying where."""
    pos = 0
    for _ in range(line - 1):
        m = _LINE_END.search(text, pos)
        if m is None:
            break
        pos = m.end()
    d = re.escape(delimiter)
    field_re = re.compile(rf'"[^"]*(?:""[^"]*)*"?[^{d}\r\n]*|[^{d}\r\n]*')
    column = 1
    while True:
        m = field_re.match(text, pos)
        assert m is not None  # the pattern matches the empty string
        if m.end() - m.start() > limit or m.end() >= len(text) or text[m.end()] != delimiter:
            return column, len(m.group().encode())
        pos, column = m.end() + 1, column + 1


def _csv_error(
    error: csv.Error, text: str, label: str, delimiter: str, line: int, header: list[str] | None
) -> Invalid:
    message = str(error)
    if message.startswith("field larger than field limit"):
        limit = get_settings().max_csv_field_bytes
        column, size = _locate_long_field(text, delimiter, line, limit)
        return _field_too_large(label, line, _column_name(header, column - 1), size, limit)
    if message == "unexpected end of data":
        message = "a quoted field is never closed (a '\"' without its closing '\"')"
    return Invalid(f"{label} line {line}: {message}", field=label)


def _header(reader: Iterator[list[str]], label: str, line_num: Callable[[], int]) -> _Table:
    """The header row: at most ``MIXOPT_MAX_CSV_COLUMNS`` names, checked before any row is
    read, each field within ``MIXOPT_MAX_CSV_FIELD_BYTES``, no name twice (blank names, the
    empty columns a spreadsheet leaves at the right, may repeat: they are ignored)."""
    line = 1
    for row in reader:
        if any(v.strip() for v in row):
            break
        line = line_num() + 1
    else:
        raise Invalid(f"{label} is empty or has no header row", field=label)
    settings = get_settings()
    if len(row) > settings.max_csv_columns:
        raise Invalid(
            f"{label} line {line}: {len(row)} columns; at most {settings.max_csv_columns} "
            f"({_COLUMNS_SETTING})",
            field=label,
        )
    _check_fields(row, label, line, None, settings.max_csv_field_bytes)
    header = [h.strip() for h in row]
    seen: set[str] = set()
    for i, name in enumerate(header):
        if name and name in seen:
            raise Invalid(
                f"{label} line {line}, column {i + 1}: duplicate column name {name!r}",
                field=label,
            )
        seen.add(name)
    return _Table(label, header)


def _lines(text: str) -> Iterator[str]:
    """The lines of ``text``, each with its line end (LF, CRLF or CR), as a file opened with
    ``newline=''`` gives them (``io.StringIO`` would hold four bytes a character)."""
    pos = 0
    for m in _LINE_END.finditer(text):
        yield text[pos : m.end()]
        pos = m.end()
    if pos < len(text):
        yield text[pos:]


def _read(text: str, label: str) -> _Table:
    """Parse one file as the csv module reads a file opened with ``newline=''``: lines end with
    LF, CRLF or CR (a CR alone ends a line, whatever the file's other line ends); quoted fields
    may hold delimiters, doubled quotes and line breaks; the delimiter (comma, tab or
    semicolon) is the header line's. Every error is a 422 naming the file and the line."""
    text = text.removeprefix("\ufeff")
    delimiter = _sniff(text)
    reader = csv.reader(_lines(text), delimiter=delimiter, strict=True)
    limit = get_settings().max_csv_field_bytes
    start, header = 1, None
    try:
        table = _header(reader, label, lambda: reader.line_num)
        start, header = reader.line_num + 1, table.header
        for row in reader:
            _add_row(table, row, start, limit, delimiter)
            start = reader.line_num + 1
    except csv.Error as e:
        raise _csv_error(e, text, label, delimiter, start, header) from None
    if not table.rows:
        raise Invalid(f"{label} has a header but no rows", field=label)
    return table


def _add_row(table: _Table, row: list[str], line: int, limit: int, delimiter: str) -> None:
    """Append one row; a blank row (no field with text) is skipped, a row of another width than
    the header is a 422 (a line break in an unquoted field, a stray carriage return included,
    ends the row there)."""
    if not any(v.strip() for v in row):
        return
    _check_fields(row, table.label, line, table.header, limit)
    n, width = len(row), len(table.header)
    if n != width:
        where = (
            f"the row ends in column {_column_name(table.header, n - 1)}"
            if n < width
            else f"column {width + 1} is beyond the header"
        )
        raise Invalid(
            f"{table.label} line {line}: {n} fields, the header has {width}; {where} "
            f"({_DELIMITER_NAMES[delimiter]}-separated; a line break, a carriage return alone "
            "included, ends a row unless its field is quoted)",
            field=table.label,
        )
    table.rows.append(row)
    table.lines.append(line)


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


def _number(value: str, label: str, line: int, column: str) -> float | None:
    value = value.strip()
    if value == "":
        return None
    try:
        x = float(value)
    except ValueError:
        hint = " (the decimal separator is '.')" if "," in value else ""
        raise Invalid(
            f"{label} line {line}, column {column!r}: {value[:40]!r} is not a number{hint}",
            field=label,
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


def _numeric_columns(table: _Table, parsed: ParsedImport) -> list[str]:
    """The columns that are not ignored and numeric; the other candidates go to
    ``parsed.ignored_columns``."""
    candidates = [h for h in table.header if not _ignored(h)]
    numeric = [h for h in candidates if _numeric_column(table, table.position[h])]
    kept = set(numeric)
    parsed.ignored_columns[table.label] = [h for h in candidates if h not in kept]
    return numeric


def _not_numeric(parsed: ParsedImport, label: str = "mixtures") -> str:
    ignored = parsed.ignored_columns[label]
    if not ignored:
        return ""
    return (
        f" (not a number in every row: {', '.join(map(repr, ignored[:5]))}"
        f"{', ...' if len(ignored) > 5 else ''}; the decimal separator is '.')"
    )


def _domain_columns(fmt: str, table: _Table, parsed: ParsedImport) -> tuple[list[str], list[str]]:
    """The mixture file's domain columns and the domain names they give (non-numeric columns of
    an olmix file go to ``parsed.ignored_columns``)."""
    if fmt == "regmix":
        domain_cols = [h for h in table.header if h.startswith("train_")]
        domains = [h.removeprefix("train_") for h in domain_cols]
    else:
        domain_cols = _numeric_columns(table, parsed)
        domains = list(domain_cols)
    if not domains:
        raise Invalid(f"mixtures has no domain columns{_not_numeric(parsed)}", field="mixtures")
    return domain_cols, domains


def _metric_columns(table: _Table, parsed: ParsedImport) -> list[str]:
    """The metrics file's numeric columns (the others go to ``parsed.ignored_columns``)."""
    metric_cols = _numeric_columns(table, parsed)
    if not metric_cols:
        raise Invalid(
            f"metrics has no numeric metric columns{_not_numeric(parsed, 'metrics')}",
            field="metrics",
        )
    return metric_cols


def _metrics_by_id(table: _Table, key: str, metric_cols: list[str]) -> dict[str, dict[str, float]]:
    metrics_by_id: dict[str, dict[str, float]] = {}
    k = table.position[key]
    cols = [(c, table.position[c]) for c in metric_cols]
    for line, row in zip(table.lines, table.rows, strict=True):
        rid = row[k].strip()
        if not rid:
            raise Invalid(f"metrics line {line}: empty {key!r}", field="metrics")
        if rid in metrics_by_id:
            raise Invalid(f"metrics line {line}: {key} {rid!r} appears twice", field="metrics")
        values = {c: _number(row[i], "metrics", line, c) for c, i in cols}
        metrics_by_id[rid] = {c: v for c, v in values.items() if v is not None}
    return metrics_by_id


def _mixture(
    row: list[str], line: int, cols: list[tuple[str, int]], domains: list[str]
) -> dict[str, float]:
    mixture = {}
    for (col, i), dom in zip(cols, domains, strict=True):
        w = _number(row[i], "mixtures", line, col)
        mixture[dom] = 0.0 if w is None else w
    return mixture


def _join_rows(
    parsed: ParsedImport,
    table: _Table,
    key: str,
    domain_cols: list[str],
    metrics_by_id: dict[str, dict[str, float]],
    on_unmatched: str,
) -> set[str]:
    """Add the mixture rows that have metrics to ``parsed.rows``; the ids seen in the file."""
    seen: set[str] = set()
    k, name_at = table.position[key], table.position.get("name")
    cols = [(c, table.position[c]) for c in domain_cols]
    for line, row in zip(table.lines, table.rows, strict=True):
        rid = row[k].strip()
        if not rid:
            raise Invalid(f"mixtures line {line}: empty {key!r}", field="mixtures")
        if rid in seen:
            raise Invalid(f"mixtures line {line}: {key} {rid!r} appears twice", field="mixtures")
        seen.add(rid)
        mixture = _mixture(row, line, cols, parsed.domains)
        if rid not in metrics_by_id:
            if on_unmatched == "error":
                raise Invalid(
                    f"mixtures line {line}: {key} {rid!r} has no row in metrics "
                    "(pass on_unmatched=skip to import only the runs in both files)",
                    field="metrics",
                )
            parsed.unmatched["mixtures"].append(rid)
            continue
        name = (row[name_at].strip() if name_at is not None else "") or None
        parsed.rows.append(
            ParsedRow(external_id=rid, name=name, mixture=mixture, metrics=metrics_by_id[rid])
        )
    return seen


def parse_pair(
    mixtures_csv: str, metrics_csv: str, fmt: str = "auto", *, on_unmatched: str = "skip"
) -> ParsedImport:
    """Read a (mixtures, metrics) CSV pair; ``on_unmatched`` is ``skip`` (report the runs
    present in one file only and leave them out) or ``error`` (a 422 naming them). Linear in
    the size of the files."""
    mix = _read(mixtures_csv, "mixtures")
    met = _read(metrics_csv, "metrics")
    if fmt == "auto":
        fmt = detect_format(mix.header)
    _check_options(fmt, on_unmatched)
    mix_key, met_key = _key(fmt, mix.header, "mixtures"), _key(fmt, met.header, "metrics")
    parsed = ParsedImport(format=fmt, domains=[], metrics=[])
    domain_cols, domains = _domain_columns(fmt, mix, parsed)
    metric_cols = _metric_columns(met, parsed)
    parsed.domains, parsed.metrics = domains, metric_cols

    metrics_by_id = _metrics_by_id(met, met_key, metric_cols)
    seen = _join_rows(parsed, mix, mix_key, domain_cols, metrics_by_id, on_unmatched)
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


def _numeric_column(table: _Table, i: int) -> bool:
    """Every non-empty cell of the column (the whole file, not a sample) is a number."""
    for row in table.rows:
        v = row[i].strip()
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
    current = set(domains)
    domains += list(dict.fromkeys(k for r in runs for k in r.mixture if k not in current))
    metric_names = list(dict.fromkeys(m for r in runs for m in r.metrics))
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
