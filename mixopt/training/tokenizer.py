"""Tokenizers for proxy runs: raw bytes by default, or any Hugging Face ``tokenizers`` JSON file.

Every tokenizer here has the same small surface: ``encode(text) -> list[int]``,
``encode_batch(texts)``, ``decode(ids) -> str``, ``vocab_size``, ``eos_id`` (appended after
each document by ingestion), and ``identity`` (a string that changes whenever the mapping from
text to ids could change: part of the shard cache key).

Bits per byte: ingestion measures each split's tokens and UTF-8 bytes, so a loss in nats per
token converts as ``bpb = loss / ln 2 * n_tokens / n_bytes`` (:func:`bits_per_byte`); it
compares models across tokenizers.

``train_bpe`` trains a byte-level BPE tokenizer with ``tokenizers`` (no download) and writes
it as one JSON file that :func:`load_tokenizer` reads back.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mixopt.training.documents import iter_documents, resolve_files

EOS_NAMES = ("<|endoftext|>", "</s>", "<eos>", "[SEP]", "<|end_of_text|>")


class ByteTokenizer:
    """UTF-8 bytes as tokens 0-255, plus an end-of-document token 256 (vocabulary 257)."""

    vocab_size = 257
    eos_id = 256
    identity = "byte-v1"

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_array(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        return bytes(int(i) for i in ids if 0 <= int(i) < 256).decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        return "ByteTokenizer()"


class HFTokenizer:
    """A ``tokenizers.Tokenizer`` read from a JSON file (``Tokenizer.from_file``).

    The end-of-document id is the first of ``EOS_NAMES`` the vocabulary has, or None (then
    documents are concatenated without a separator).
    """

    def __init__(self, path: str | Path, max_bytes: int | None = None):
        from tokenizers import Tokenizer

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"tokenizer: no such file {self.path}")
        with open(self.path, "rb") as f:
            raw = f.read() if max_bytes is None else f.read(max_bytes + 1)
        if max_bytes is not None and len(raw) > max_bytes:
            raise ValueError(f"tokenizer: {self.path} is larger than {max_bytes} bytes; refused")
        try:
            # the parser's own messages can quote the file; say only what went wrong
            self._tok = Tokenizer.from_str(raw.decode("utf-8"))
        except Exception:
            raise ValueError(f"tokenizer: {self.path} is not a tokenizers JSON file") from None
        self.identity = "hf-" + hashlib.sha256(raw).hexdigest()[:32]
        self.vocab_size = int(self._tok.get_vocab_size(with_added_tokens=True))
        self.eos_id = next(
            (i for i in (self._tok.token_to_id(n) for n in EOS_NAMES) if i is not None), None
        )

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=True)

    def __repr__(self) -> str:
        return f"HFTokenizer({str(self.path)!r}, vocab_size={self.vocab_size})"


Tokenizer = ByteTokenizer | HFTokenizer


def load_tokenizer(spec: Any = None, max_bytes: int | None = None) -> Tokenizer:
    """A tokenizer from a spec: None / ``"byte"`` / ``{"type": "byte"}`` -> bytes; a path to a
    ``tokenizers`` JSON file, or ``{"path": ...}`` -> :class:`HFTokenizer` (a file over
    ``max_bytes`` is refused before it is parsed)."""
    if isinstance(spec, ByteTokenizer | HFTokenizer):
        return spec
    if spec is None or spec == "byte" or (isinstance(spec, dict) and spec.get("type") == "byte"):
        return ByteTokenizer()
    if isinstance(spec, dict):
        if "path" not in spec:
            raise ValueError(
                f"tokenizer: expected {{'type': 'byte'}} or {{'path': ...}}, got {spec}"
            )
        spec = spec["path"]
    if isinstance(spec, str | Path):
        return HFTokenizer(Path(spec).expanduser(), max_bytes=max_bytes)
    raise ValueError(f"tokenizer: cannot build a tokenizer from {spec!r}")


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype that holds every id (uint16 up to 65,536 ids)."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def bits_per_byte(loss_nats: float, n_tokens: int, n_bytes: int) -> float:
    """Convert a mean loss in nats per token to bits per UTF-8 byte."""
    if n_bytes <= 0:
        return float("nan")
    return float(loss_nats) / math.log(2) * n_tokens / n_bytes


def train_bpe(
    sources: Iterable[str | Path] | None,
    vocab_size: int,
    out_path: str | Path,
    *,
    texts: Iterable[str] | None = None,
    text_field: str = "text",
    min_frequency: int = 2,
) -> HFTokenizer:
    """Train a byte-level BPE tokenizer and save it as a ``tokenizers`` JSON file.

    Parameters
    ----------
    sources : paths (files, directories or globs) in the formats ingestion reads (.txt, .md,
        .jsonl, .jsonl.gz, .parquet), or None.
    vocab_size : target vocabulary size, special tokens included (>= 257).
    out_path : where to write the JSON file.
    texts : more training texts given directly.
    text_field : the JSONL / Parquet field holding the text.

    Returns the trained tokenizer, loaded from ``out_path``; ``<|endoftext|>`` is its EOS.
    """
    from tokenizers import Tokenizer as HFTok
    from tokenizers import decoders, models, pre_tokenizers, trainers

    if vocab_size < 257:
        raise ValueError(f"vocab_size: must be >= 257 (256 bytes + EOS), got {vocab_size}")

    def corpus() -> Iterator[str]:
        if sources is not None:
            for src in sources:
                for f in resolve_files(src):
                    yield from iter_documents(f, text_field)
        if texts is not None:
            yield from texts

    tok = HFTok(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tok.save(str(tmp))
    tmp.replace(out)
    return HFTokenizer(out)
