"""Domain data: read text files, tokenise once into memory-mapped shards, split off validation.

A domain's *source* is a local path: a file, a directory (searched recursively) or a glob, of

* ``.txt`` / ``.md`` files (each file is one document),
* ``.jsonl`` / ``.jsonl.gz`` files (one document per line, text in ``text_field``),
* ``.parquet`` files (one document per row, text in column ``text_field``).

:func:`ingest_domain` tokenises every document, appends the tokenizer's end-of-document token,
and writes nanoGPT-style flat token shards (``train.bin``, ``val.bin``: raw uint16, or uint32
for vocabularies over 65,536) plus ``meta.json`` (token and UTF-8 byte counts per split,
document counts, files, tokenizer identity). The shard directory is named by a content hash
(every file's bytes + the tokenizer identity + the split settings), so re-running with
unchanged files finds the shards and does no tokenisation; a small stat cache (size, mtime)
even avoids re-hashing unchanged files.

Validation split (deterministic, by document): each document gets a pseudo-random score from
the hash of its text; documents are taken into validation in score order until they hold
``val_fraction`` of the tokens (skipping documents that would overshoot twice the target).
A source with a single document (one big .txt) is split by tokens instead: the last
``val_fraction`` of the stream.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mixopt.training.documents import iter_documents, resolve_files
from mixopt.training.tokenizer import (
    ByteTokenizer,
    Tokenizer,
    bits_per_byte,
    load_tokenizer,
    token_dtype,
)

FORMAT_VERSION = 1


# -- hashing with a stat cache -----------------------------------------------------------------
def _file_sha256(path: Path, stat_cache: dict[str, Any]) -> str:
    st = path.stat()
    key = str(path.resolve())
    hit = stat_cache.get(key)
    if hit and hit["size"] == st.st_size and hit["mtime_ns"] == st.st_mtime_ns:
        return hit["sha256"]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    stat_cache[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": h.hexdigest()}
    return h.hexdigest()


def atomic_write_json(path: Path, obj: Any, **dump_kwargs: Any) -> None:
    """Write JSON through a uniquely named temporary file and a rename, so readers never see a
    partial file and concurrent writers never collide (``dump_kwargs`` go to ``json.dump``;
    default ``indent=1``)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, **{"indent": 1, **dump_kwargs})
    os.replace(tmp, path)


# -- the domain --------------------------------------------------------------------------------
@dataclass
class DomainData:
    """One domain's tokenised data: flat train/val token arrays (memory-mapped) and counts.

    ``n_train_bytes`` / ``n_val_bytes`` are the UTF-8 bytes of the documents in each split, so
    ``val_bits_per_byte(loss)`` converts a validation loss in nats per token.
    """

    name: str
    train: np.ndarray
    val: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    cache_hit: bool = False

    @property
    def n_train_tokens(self) -> int:
        return int(len(self.train))

    @property
    def n_val_tokens(self) -> int:
        return int(len(self.val))

    @property
    def n_tokens(self) -> int:
        return self.n_train_tokens + self.n_val_tokens

    @property
    def n_train_bytes(self) -> int:
        return int(self.meta.get("n_train_bytes", self.n_train_tokens))

    @property
    def n_val_bytes(self) -> int:
        return int(self.meta.get("n_val_bytes", self.n_val_tokens))

    @property
    def n_bytes(self) -> int:
        return self.n_train_bytes + self.n_val_bytes

    @property
    def vocab_size(self) -> int:
        return int(self.meta.get("vocab_size", 257))

    @property
    def bytes_per_token(self) -> float:
        return self.n_bytes / max(self.n_tokens, 1)

    def val_bits_per_byte(self, loss_nats: float) -> float:
        return bits_per_byte(loss_nats, self.n_val_tokens, self.n_val_bytes)

    @classmethod
    def load(cls, path: str | Path, name: str | None = None) -> DomainData:
        """Open an ingested shard directory (``meta.json``, ``train.bin``, ``val.bin``)."""
        path = Path(path)
        meta = json.loads((path / "meta.json").read_text())
        dtype = np.dtype(meta["dtype"])

        def mm(split: str) -> np.ndarray:
            n = meta[f"n_{split}_tokens"]
            if n == 0:
                return np.zeros(0, dtype=dtype)
            return np.memmap(path / f"{split}.bin", dtype=dtype, mode="r", shape=(n,))

        return cls(name or meta["name"], mm("train"), mm("val"), meta, path)

    @classmethod
    def from_tokens(
        cls,
        name: str,
        train: np.ndarray,
        val: np.ndarray,
        vocab_size: int = 257,
        n_train_bytes: int | None = None,
        n_val_bytes: int | None = None,
    ) -> DomainData:
        """In-memory domain data (tests, synthetic domains); bytes default to tokens."""
        dtype = token_dtype(vocab_size)
        train, val = np.asarray(train, dtype=dtype), np.asarray(val, dtype=dtype)
        meta = {
            "name": name,
            "vocab_size": vocab_size,
            "dtype": dtype.name,
            "n_train_tokens": len(train),
            "n_val_tokens": len(val),
            "n_train_bytes": len(train) if n_train_bytes is None else n_train_bytes,
            "n_val_bytes": len(val) if n_val_bytes is None else n_val_bytes,
        }
        return cls(name, train, val, meta)


def _cache_key(
    files: list[Path],
    names: list[str] | None,
    tok: Tokenizer,
    text_field: str,
    val_fraction: float,
    stat_cache: dict[str, Any],
) -> tuple[str, list[dict]]:
    h = hashlib.sha256()
    h.update(f"v{FORMAT_VERSION}|{tok.identity}|{text_field}|{val_fraction!r}\n".encode())
    listing = []
    for i, f in enumerate(files):
        sha = _file_sha256(f, stat_cache)
        rel = names[i] if names is not None else f.name
        h.update(f"{rel}|{sha}\n".encode())
        listing.append({"path": rel, "sha256": sha, "bytes": f.stat().st_size})
    return h.hexdigest(), listing


def _choose_val(doc_tokens: np.ndarray, doc_hash: np.ndarray, val_fraction: float) -> np.ndarray:
    """Boolean mask of validation documents (see the module docstring)."""
    n = len(doc_tokens)
    mask = np.zeros(n, dtype=bool)
    if n < 2 or val_fraction <= 0:
        return mask
    target = val_fraction * doc_tokens.sum()
    got = 0
    for i in np.argsort(doc_hash, kind="stable"):
        if got >= target:
            break
        if got > 0 and got + doc_tokens[i] > 2 * target:
            continue
        mask[i] = True
        got += doc_tokens[i]
    if mask.all():  # never leave the training split empty
        mask[np.argmax(doc_tokens)] = False
    return mask


def _keyed(
    cache_dir: Path,
    files: list[Path],
    names: list[str] | None,
    tok: Tokenizer,
    text_field: str,
    val_fraction: float,
) -> tuple[str, list[dict[str, Any]]]:
    """The shards' cache key and the file listing, through the stat cache (rewritten when a
    file's hash was computed afresh)."""
    stat_path = cache_dir / "stat_cache.json"
    try:
        stat_cache = json.loads(stat_path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        stat_cache = {}
    n_stat = len(stat_cache)
    key, listing = _cache_key(files, names, tok, text_field, val_fraction, stat_cache)
    if len(stat_cache) != n_stat or any(
        stat_cache.get(str(f.resolve()), {}).get("sha256") != entry["sha256"]
        for f, entry in zip(files, listing, strict=True)
    ):
        atomic_write_json(stat_path, stat_cache, sort_keys=True)
    return key, listing


def _tokenise(
    path: Path, files: list[Path], tok: Tokenizer, text_field: str, dtype: np.dtype, eos: list[int]
) -> tuple[list[int], list[int], list[int]]:
    """Every document of ``files`` tokenised (EOS appended) into one stream at ``path``, in
    batches of 256; each document's tokens, bytes and 64-bit hash."""
    doc_tokens: list[int] = []
    doc_bytes: list[int] = []
    doc_hash: list[int] = []
    with open(path, "wb") as allf:

        def flush(batch: list[str]) -> None:
            encoded: Sequence[Any]
            if isinstance(tok, ByteTokenizer):  # fast path: no Python list of ints
                encoded = [tok.encode_array(t) for t in batch]
            else:
                encoded = tok.encode_batch(batch)
            for text, ids in zip(batch, encoded, strict=True):
                arr = np.concatenate([np.asarray(ids, dtype=dtype), np.asarray(eos, dtype=dtype)])
                allf.write(arr.tobytes())
                raw = text.encode("utf-8", errors="replace")
                doc_tokens.append(len(arr))
                doc_bytes.append(len(raw))
                doc_hash.append(int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big"))

        batch: list[str] = []
        for f in files:
            for text in iter_documents(f, text_field):
                batch.append(text)
                if len(batch) >= 256:
                    flush(batch)
                    batch = []
        if batch:
            flush(batch)
    return doc_tokens, doc_bytes, doc_hash


def _split_ranges(
    ntok: np.ndarray,
    nbytes: np.ndarray,
    is_val: np.ndarray,
    val_fraction: float,
) -> tuple[dict[str, list[tuple[int, int]]], dict[str, int]]:
    """Token ranges of the stream per split (documents by ``is_val``; one document: its stream
    cut at ``1 - val_fraction``) and the bytes of each split."""
    total = int(ntok.sum())
    starts = np.concatenate([[0], np.cumsum(ntok)[:-1]])
    if len(ntok) == 1 and val_fraction > 0:  # one document: split the token stream
        cut = total - max(1, int(round(val_fraction * total)))
        frac = cut / total
        return (
            {"train": [(0, cut)], "val": [(cut, total)]},
            {"train": int(nbytes[0] * frac), "val": int(nbytes[0]) - int(nbytes[0] * frac)},
        )
    splits = {
        s: [(int(starts[i]), int(starts[i] + ntok[i])) for i in np.flatnonzero(m)]
        for s, m in (("train", ~is_val), ("val", is_val))
    }
    return splits, {"train": int(nbytes[~is_val].sum()), "val": int(nbytes[is_val].sum())}


def ingest_domain(
    name: str,
    source: str | Path,
    cache_dir: str | Path,
    tokenizer: Tokenizer | Any = None,
    text_field: str = "text",
    val_fraction: float = 0.05,
    roots: Sequence[str | Path] | None = None,
) -> DomainData:
    """Tokenise a domain's files into cached shards (or find them) and open them.

    Parameters
    ----------
    name : the domain's name (stored in the metadata; the cache is keyed by content).
    source : a file, directory or glob (see the module docstring).
    cache_dir : where shard directories ``<name>-<hash>`` live.
    tokenizer : a tokenizer or a spec for :func:`load_tokenizer` (None: bytes).
    text_field : the JSONL / Parquet field holding the text.
    val_fraction : target share of tokens held out for validation, in [0, 0.5].
    roots : when given, only files that resolve inside these directories are read (see
        :func:`resolve_files`); the service passes its data roots.

    Returns a :class:`DomainData` whose ``cache_hit`` says whether the shards already existed.
    """
    if not 0 <= val_fraction <= 0.5:
        raise ValueError(f"val_fraction: must be in [0, 0.5], got {val_fraction}")
    tok = load_tokenizer(tokenizer)
    cache_dir = Path(cache_dir).expanduser()
    cache_dir.mkdir(parents=True, exist_ok=True)
    files = resolve_files(source, roots)
    src = Path(source).expanduser()
    names = None
    if src.is_dir():
        # a directory's files are named relative to it as listed, not as resolved: with roots,
        # ``files`` are resolved, and a symlink inside the directory may lead elsewhere in the
        # roots (resolve_files lists both in the same sorted order)
        names = [str(p.relative_to(src)) for p in resolve_files(source)]
        if len(names) != len(files):  # the directory changed between the two listings
            raise FileNotFoundError(f"source: {source!r} changed while it was listed")
    key, listing = _keyed(cache_dir, files, names, tok, text_field, val_fraction)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:64]
    out = cache_dir / f"{safe}-{key[:16]}"
    if (out / "meta.json").is_file():
        data = DomainData.load(out, name)
        data.cache_hit = True
        return data

    t0 = time.perf_counter()
    dtype = token_dtype(tok.vocab_size)
    eos = [] if tok.eos_id is None else [tok.eos_id]
    work = Path(tempfile.mkdtemp(prefix=f".{safe}-", dir=cache_dir))
    try:
        doc_tokens, doc_bytes, doc_hash = _tokenise(
            work / "all.bin", files, tok, text_field, dtype, eos
        )
        if not doc_tokens:
            raise ValueError(f"source: {source!r} has no non-empty documents")
        ntok = np.asarray(doc_tokens, dtype=np.int64)
        nbytes = np.asarray(doc_bytes, dtype=np.int64)
        is_val = _choose_val(ntok, np.asarray(doc_hash, dtype=np.uint64), val_fraction)
        total = int(ntok.sum())
        allm = np.memmap(work / "all.bin", dtype=dtype, mode="r", shape=(total,))
        splits, split_bytes = _split_ranges(ntok, nbytes, is_val, val_fraction)
        counts = {}
        for split, ranges in splits.items():
            with open(work / f"{split}.bin", "wb") as fh:
                for a, b in ranges:
                    fh.write(np.asarray(allm[a:b]).tobytes())
            counts[split] = sum(b - a for a, b in ranges)
        del allm
        (work / "all.bin").unlink()
        meta = {
            "name": name,
            "source": str(source),
            "format_version": FORMAT_VERSION,
            "tokenizer": tok.identity,
            "vocab_size": int(tok.vocab_size),
            "eos_id": tok.eos_id,
            "dtype": dtype.name,
            "text_field": text_field,
            "val_fraction": val_fraction,
            "key": key,
            "files": listing,
            "n_docs": len(ntok),
            "n_val_docs": int(is_val.sum()) if len(ntok) > 1 else 0,
            "n_train_tokens": counts["train"],
            "n_val_tokens": counts["val"],
            "n_train_bytes": split_bytes["train"],
            "n_val_bytes": split_bytes["val"],
            "bytes_per_token": float(nbytes.sum() / max(total, 1)),
            "ingest_seconds": round(time.perf_counter() - t0, 3),
        }
        atomic_write_json(work / "meta.json", meta, sort_keys=True)
        try:
            os.replace(work, out)  # atomic: a reader sees all of the shards or none
        except OSError:  # another process finished the same shards first
            if not (out / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return DomainData.load(out, name)


def ingest_domains(
    sources: dict[str, str | Path], cache_dir: str | Path, tokenizer: Any = None, **kwargs: Any
) -> dict[str, DomainData]:
    """:func:`ingest_domain` for each ``name -> source`` (order kept)."""
    tok = load_tokenizer(tokenizer)
    return {n: ingest_domain(n, s, cache_dir, tok, **kwargs) for n, s in sources.items()}
