"""Reading the documents of a data source: which files a source names, and their texts.

The lowest layer of data ingestion, shared by :mod:`mixopt.training.data` (tokenised domains)
and :mod:`mixopt.training.tokenizer` (training a BPE tokenizer on the same files).
"""

from __future__ import annotations

import glob
import gzip
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

SUFFIXES = (".txt", ".md", ".jsonl", ".jsonl.gz", ".parquet")


# -- reading -----------------------------------------------------------------------------------
def _supported(p: Path) -> bool:
    return any(p.name.endswith(s) for s in SUFFIXES)


def _within(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def resolve_files(source: str | Path, roots: Sequence[str | Path] | None = None) -> list[Path]:
    """The sorted data files of a source (a file, a directory searched recursively, or a glob).

    With ``roots``, every file is returned resolved (symlinks followed) and must lie inside one
    of them: a symlink that leads out of the roots is an error, never read.
    """
    src = Path(source).expanduser()
    if src.is_file():
        files = [src]
    elif src.is_dir():
        files = [p for p in src.rglob("*") if p.is_file() and _supported(p)]
    else:
        files = [Path(p) for p in glob.glob(str(src), recursive=True)]
        files = [p for p in files if p.is_file() and _supported(p)]
    files = sorted(files)
    if roots is not None:
        resolved_roots = [Path(r).resolve() for r in roots]
        checked = []
        for f in files:
            real = f.resolve()
            if not _within(real, resolved_roots):
                raise PermissionError(
                    f"source: {f} leads outside the data roots (a symlink?); refused"
                )
            checked.append(real)
        files = checked
    if not files:
        raise FileNotFoundError(f"source: no {'/'.join(SUFFIXES)} files found at {source!r}")
    return files


def iter_documents(path: Path, text_field: str = "text") -> Iterator[str]:
    """The documents of one file, in file order (empty documents are skipped)."""
    name = path.name
    if name.endswith((".txt", ".md")):
        text = path.read_text(encoding="utf-8", errors="replace")
        if text:
            yield text
    elif name.endswith((".jsonl", ".jsonl.gz")):
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{lineno}: not JSON ({exc.msg})") from exc
                if not isinstance(rec, dict) or text_field not in rec:
                    raise ValueError(f"{path}:{lineno}: no text field {text_field!r}")
                text = rec[text_field]
                if text:
                    yield str(text)
    elif name.endswith(".parquet"):
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        if text_field not in pf.schema_arrow.names:
            raise ValueError(f"{path}: no column {text_field!r} (has {pf.schema_arrow.names})")
        for batch in pf.iter_batches(columns=[text_field], batch_size=1024):
            for text in batch.column(0).to_pylist():
                if text:
                    yield str(text)
    else:
        raise ValueError(f"{path}: unsupported file type (expected one of {SUFFIXES})")
