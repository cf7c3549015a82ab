"""The runs export (``GET .../runs/export``) streamed from the database, page by page.

The files are the ones :func:`app.services.imports.export_csv`, ``export_zip`` and
``runs_document`` write (the same columns, rows and JSON), but no step holds every run: the
filters (state, scale) are conditions of the query, runs are read in pages of
:data:`PAGE_ROWS` by id (keyset pagination, up to the largest id matching when the export
started, so runs added meanwhile do not make it endless), and each page is written out before
the next is read. The CSV header names every domain and metric of the exported runs, so a first
pass reads only the runs' mixture and metric keys; the zip writes its second file (metrics) to a
spooled temporary file while the first is streamed (at most :data:`SPOOL_BYTES` in memory,
the rest on disk). Memory therefore stays bounded by one page whatever the number of runs
(measured in ``bench/hostile.py``).

The stream reads through its own session: the request's session is closed once the route
returns, before the body is sent.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from app.services.errors import Invalid
from app.services.imports import FORMATS, run_json
from app.store.db import get_sessionmaker
from app.store.models import CurvePoint, Project, Run

#: runs read (and written out) at a time
PAGE_ROWS = 1000
#: bytes of the zip's second file kept in memory before it spills to a temporary file
SPOOL_BYTES = 8 * 2**20


@dataclass(frozen=True)
class ExportQuery:
    """Which runs of a project an export writes (every filter is a SQL condition)."""

    project_id: int
    project_name: str
    domains: tuple[str, ...]
    status: str | None = "succeeded"
    model_params: int | None = None
    train_tokens: int | None = None
    train_steps: int | None = None

    @classmethod
    def of(cls, project: Project, **filters: Any) -> ExportQuery:
        return cls(project.id, project.name, tuple(d.name for d in project.domains), **filters)

    def where(self, stmt: Select) -> Select:
        stmt = stmt.where(Run.project_id == self.project_id)
        if self.status:
            stmt = stmt.where(Run.status == self.status)
        for col, value in (
            (Run.model_params, self.model_params),
            (Run.train_tokens, self.train_tokens),
            (Run.train_steps, self.train_steps),
        ):
            if value is not None:
                stmt = stmt.where(col == value)
        return stmt


def _pages(session: Session, q: ExportQuery, columns: tuple[Any, ...]) -> Iterator[list[Any]]:
    """The matching runs (``columns`` of each, ``Run.id`` first) in pages, by id."""
    last = session.scalar(q.where(select(func.max(Run.id))))
    after = 0
    while last is not None and after < last:
        stmt = q.where(select(*columns)).where(Run.id > after, Run.id <= last)
        page = list(session.execute(stmt.order_by(Run.id).limit(PAGE_ROWS)))
        if not page:
            return
        yield page
        after = page[-1][0]
        session.expunge_all()  # ORM rows of the page written: let them go


def _session() -> Session:
    return get_sessionmaker()()


def _header_keys(session: Session, q: ExportQuery) -> tuple[list[str], list[str]]:
    """(domains, metric names) of the CSV header: the project's domains, then retired domains
    found in the runs' mixtures, and every metric, in order of first appearance."""
    current = set(q.domains)
    extra: dict[str, None] = {}
    metrics: dict[str, None] = {}
    for page in _pages(session, q, (Run.id, Run.mixture, Run.metrics)):
        for _, mixture, run_metrics in page:
            extra.update((k, None) for k in mixture if k not in current)
            metrics.update((k, None) for k in run_metrics)
    return [*q.domains, *extra], list(metrics)


class _Lines:
    """A csv writer whose output is taken after each page."""

    def __init__(self) -> None:
        self.buf = io.StringIO()
        self.writer = csv.writer(self.buf, lineterminator="\n")

    def take(self) -> str:
        out = self.buf.getvalue()
        self.buf.seek(0)
        self.buf.truncate()
        return out


_CSV_COLUMNS = (Run.id, Run.external_id, Run.name, Run.mixture, Run.metrics)


def _csv_parts(
    session: Session, q: ExportQuery, layout: str
) -> tuple[list[str], list[str], Iterator[tuple[list[Any], list[Any]]]]:
    """The two CSV headers and an iterator of (mixtures rows, metrics rows) per page."""
    if layout not in FORMATS:
        raise Invalid(f"layout must be one of {FORMATS}", field="layout")
    domains, metric_names = _header_keys(session, q)
    key = "index" if layout == "regmix" else "run"
    if layout == "regmix":
        heads = [key, *(f"train_{d}" for d in domains)], [key, *metric_names]
    else:
        heads = [key, "name", *domains], [key, "name", *metric_names]

    def rows() -> Iterator[tuple[list[Any], list[Any]]]:
        for page in _pages(session, q, _CSV_COLUMNS):
            mix, met = [], []
            for rid, external_id, name, mixture, metrics in page:
                label = external_id or str(rid)
                extra = [] if layout == "regmix" else [name or ""]
                mix.append([label, *extra, *(repr(float(mixture.get(d, 0.0))) for d in domains)])
                met.append(
                    [
                        label,
                        *extra,
                        *(repr(float(metrics[m])) if m in metrics else "" for m in metric_names),
                    ]
                )
            yield mix, met

    return heads[0], heads[1], rows()


def stream_csv(q: ExportQuery, layout: str, part: str) -> Iterator[str]:
    """One CSV of the pair (``part``: mixtures or metrics), in pages."""
    session = _session()
    try:
        mix_head, met_head, pages = _csv_parts(session, q, layout)
        out = _Lines()
        out.writer.writerow(mix_head if part == "mixtures" else met_head)
        yield out.take()
        for mix, met in pages:
            out.writer.writerows(mix if part == "mixtures" else met)
            yield out.take()
    finally:
        session.close()


def zip_names(layout: str) -> tuple[str, str]:
    return (
        ("train_mixture.csv", "train_loss.csv")
        if layout == "regmix"
        else ("ratios.csv", "metrics.csv")
    )


class _Sink(io.RawIOBase):
    """An unseekable file the zip is written to; its bytes are taken after each page (zipfile
    writes data descriptors to a stream it cannot seek)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.chunks.append(bytes(b))
        return len(b)

    def take(self) -> bytes:
        out = b"".join(self.chunks)
        self.chunks.clear()
        return out


def stream_zip(q: ExportQuery, layout: str) -> Iterator[bytes]:
    """The zip of both CSVs, in pages: the mixtures file streamed, the metrics file spooled
    (memory up to :data:`SPOOL_BYTES`, then a temporary file) and copied in after it."""
    session = _session()
    sink = _Sink()
    try:
        mix_head, met_head, pages = _csv_parts(session, q, layout)
        names = zip_names(layout)
        with (
            tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, mode="w+t", newline="") as spool,
            zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as zf,
        ):
            out, spooled = _Lines(), csv.writer(spool, lineterminator="\n")
            spooled.writerow(met_head)
            with zf.open(names[0], "w", force_zip64=True) as f:
                out.writer.writerow(mix_head)
                f.write(out.take().encode())
                for mix, met in pages:
                    out.writer.writerows(mix)
                    spooled.writerows(met)
                    f.write(out.take().encode())
                    yield sink.take()
            spool.seek(0)
            with zf.open(names[1], "w", force_zip64=True) as f:
                for chunk in iter(lambda: spool.read(2**20), ""):
                    f.write(chunk.encode())
                    yield sink.take()
        yield sink.take()  # the central directory, written when the zip closed
    finally:
        session.close()


def _curves(session: Session, ids: Iterable[int]) -> dict[int, list[CurvePoint]]:
    curves: dict[int, list[CurvePoint]] = {}
    stmt = select(CurvePoint).where(CurvePoint.run_id.in_(list(ids)))
    for p in session.scalars(stmt.order_by(CurvePoint.run_id, CurvePoint.step)):
        curves.setdefault(p.run_id, []).append(p)
    return curves


def _dumps(value: Any) -> str:
    # what JSONResponse writes (Starlette's render): compact, UTF-8, no NaN
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def stream_json(q: ExportQuery) -> Iterator[str]:
    """The JSON export (``runs_document``'s document), a page of runs (with their curves) at a
    time."""
    session = _session()
    try:
        head = {
            "format": "mixopt-runs",
            "version": 1,
            "project": q.project_name,
            "domains": list(q.domains),
        }
        yield _dumps(head)[:-1] + ',"runs":['
        first = True
        for page in _pages(session, q, (Run.id, Run)):
            runs = [row[1] for row in page]
            curves = _curves(session, (r.id for r in runs))
            body = ",".join(_dumps(run_json(r, curves.get(r.id))) for r in runs)
            yield body if first else "," + body
            first = False
        yield "]}"
    finally:
        session.close()
