"""Fixtures for the training tests: the small corpora under tests/fixtures/corpora, ingested
once per session with the byte tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

CORPORA = Path(__file__).resolve().parent.parent / "fixtures" / "corpora"
DOMAINS = ("code", "docs", "legal", "prose", "dialogue", "math")


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    # other agents and test processes share the CPU; results are exact per thread count
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def shard_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shards")


@pytest.fixture(scope="session")
def corpora(shard_dir):
    from mixopt.training.data import ingest_domain

    return {d: ingest_domain(d, CORPORA / d, shard_dir) for d in DOMAINS}
