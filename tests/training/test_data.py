"""Tokenizers and ingestion: round trips, shard contents, the content-hash cache, the split."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mixopt.training.data import DomainData, ingest_domain, iter_documents, resolve_files
from mixopt.training.tokenizer import ByteTokenizer, bits_per_byte, load_tokenizer, train_bpe
from tests.training.conftest import CORPORA

TEXTS = ["Hello, world!\n", "déjà vu — ünïcödé ✓", "def f(x):\n    return x ** 2\n"]


def test_byte_tokenizer_round_trip():
    tok = ByteTokenizer()
    for t in TEXTS:
        ids = tok.encode(t)
        assert max(ids) < 256 and len(ids) == len(t.encode("utf-8"))
        assert tok.decode(ids + [tok.eos_id]) == t


def test_bpe_train_round_trip(tmp_path):
    tok = train_bpe([CORPORA / "prose", CORPORA / "code"], 400, tmp_path / "bpe.json")
    assert tok.vocab_size <= 400 and tok.eos_id is not None
    again = load_tokenizer(str(tmp_path / "bpe.json"))
    assert again.identity == tok.identity
    for t in TEXTS + ["And God said, Let there be light: and there was light."]:
        ids = again.encode(t)
        assert again.decode(ids) == t
    # BPE compresses: fewer tokens than bytes on in-domain text
    doc = next(iter_documents(resolve_files(CORPORA / "prose")[0]))
    assert len(tok.encode(doc)) < 0.8 * len(doc.encode())


def test_shards_hold_the_documents(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    docs = [f"document {i}: " + "abc " * (i + 5) for i in range(40)]
    (src / "a.jsonl").write_text("".join(json.dumps({"body": d}) + "\n" for d in docs[:20]))
    with gzip.open(src / "b.jsonl.gz", "wt") as f:
        f.writelines(json.dumps({"body": d}) + "\n" for d in docs[20:30])
    pq.write_table(pa.table({"body": docs[30:]}), src / "c.parquet")
    data = ingest_domain("mix", src, tmp_path / "cache", text_field="body", val_fraction=0.1)
    tok = ByteTokenizer()
    # every document appears whole (followed by EOS) in exactly one of the two shards
    streams = {
        s: bytes(np.asarray(getattr(data, s))[np.asarray(getattr(data, s)) < 256].tolist())
        for s in ("train", "val")
    }
    both = {
        s: [tok.decode(p) for p in _split_eos(np.asarray(getattr(data, s)), tok.eos_id)]
        for s in ("train", "val")
    }
    assert sorted(both["train"] + both["val"]) == sorted(docs)
    assert both["val"] and both["train"]
    assert data.n_train_bytes == sum(len(d.encode()) for d in both["train"])
    assert data.n_val_bytes == len(streams["val"])
    assert data.n_tokens == sum(len(d.encode()) + 1 for d in docs)
    assert data.meta["n_docs"] == 40
    # bits per byte from nats per token
    assert data.val_bits_per_byte(1.0) == pytest.approx(
        bits_per_byte(1.0, data.n_val_tokens, data.n_val_bytes)
    )
    reopened = DomainData.load(data.path)
    assert np.array_equal(reopened.train, data.train)


def _split_eos(arr: np.ndarray, eos: int) -> list[list[int]]:
    out, cur = [], []
    for t in arr.tolist():
        if t == eos:
            out.append(cur)
            cur = []
        else:
            cur.append(t)
    return out


def test_validation_split_is_deterministic_and_near_the_fraction(corpora, shard_dir):
    for name, d in corpora.items():
        share = d.n_val_tokens / d.n_tokens
        assert 0.02 < share < 0.2, (name, share)
        again = ingest_domain(name, CORPORA / name, shard_dir)
        assert np.array_equal(np.asarray(again.val), np.asarray(d.val))


def test_cache_hit_does_no_work(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        (src / f"{i}.txt").write_text(f"text number {i} " * 50)
    first = ingest_domain("t", src, tmp_path / "cache")
    assert not first.cache_hit
    mtime = (first.path / "train.bin").stat().st_mtime_ns

    def boom(*a, **k):
        raise AssertionError("tokenised again")

    monkeypatch.setattr(ByteTokenizer, "encode_array", boom)
    monkeypatch.setattr(ByteTokenizer, "encode_batch", boom)
    second = ingest_domain("t", src, tmp_path / "cache")
    assert second.cache_hit and second.path == first.path
    assert (second.path / "train.bin").stat().st_mtime_ns == mtime
    # a changed file is a different content hash: tokenised again
    monkeypatch.undo()
    (src / "0.txt").write_text("changed " * 60)
    third = ingest_domain("t", src, tmp_path / "cache")
    assert not third.cache_hit and third.path != first.path


def test_bad_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="source"):
        ingest_domain("x", tmp_path / "nothing", tmp_path / "cache")
    (tmp_path / "a.jsonl").write_text(json.dumps({"content": "x"}) + "\n")
    with pytest.raises(ValueError, match="text field"):
        ingest_domain("x", tmp_path / "a.jsonl", tmp_path / "cache")
