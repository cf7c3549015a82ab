"""Entropy-driven mixtures (BiMix, Ge et al. 2024): entropies behave as information theory
says on synthetic streams, and the mixture is on the simplex, favouring high entropy."""

from __future__ import annotations

import numpy as np
import pytest

from mixopt.mixing.entropy import domain_entropies, entropy_mixture


def streams(n=200_000, V=256, seed=0):
    rng = np.random.default_rng(seed)
    uniform = rng.integers(0, V, n)
    repetitive = np.tile(np.arange(4), n // 4)  # deterministic cycle over 4 tokens
    perm = rng.permutation(V)
    start = rng.integers(0, V)
    chain = perm[(start + np.arange(n)) % V]  # every token determines the next one
    return {"uniform": uniform, "repetitive": repetitive, "chain": chain}, V


def test_entropy_values():
    data, V = streams()
    H = domain_entropies(data, vocab_size=V)
    assert H["uniform"]["shannon"] == pytest.approx(np.log(V), abs=0.01)
    assert H["repetitive"]["shannon"] == pytest.approx(np.log(4), abs=1e-6)
    assert H["uniform"]["shannon"] > H["repetitive"]["shannon"]
    assert H["uniform"]["conditional"] > H["repetitive"]["conditional"]
    assert H["chain"]["conditional"] == pytest.approx(0.0, abs=1e-6)
    assert H["repetitive"]["conditional"] == pytest.approx(0.0, abs=1e-6)
    # joint = H(prev) + H(next | prev); for i.i.d. tokens about 2 log V (finite-sample bias)
    assert H["uniform"]["joint"] == pytest.approx(2 * np.log(V), abs=0.2)
    assert H["uniform"]["von_neumann"] > H["repetitive"]["von_neumann"]


def test_documents_and_bits():
    a = np.array([0, 1, 0, 1])
    H2 = domain_entropies({"d": [a, a]}, ["shannon", "conditional"], base=2)
    assert H2["d"]["shannon"] == pytest.approx(1.0)
    assert H2["d"]["conditional"] == pytest.approx(0.0)


@pytest.mark.parametrize("normalization", ["softmax", "sum"])
def test_mixture_on_simplex_and_ordered(normalization):
    data, V = streams()
    w = entropy_mixture(data, "shannon", vocab_size=V, normalization=normalization)
    assert list(w) == list(data)
    assert sum(w.values()) == pytest.approx(1.0)
    assert w["uniform"] > w["repetitive"]
    w = entropy_mixture(data, "conditional", vocab_size=V, normalization=normalization)
    assert w["uniform"] == max(w.values())


def test_large_vocab_entropies_are_consistent():
    # 2M tokens over a 50k vocabulary (no timing here: speed belongs to benchmarks)
    rng = np.random.default_rng(1)
    toks = rng.integers(0, 50_000, 2_000_000)
    H = domain_entropies({"a": toks}, ["shannon", "conditional", "joint"], vocab_size=50_000)
    assert 0 < H["a"]["conditional"] <= H["a"]["shannon"] + 1e-9
    # uniform draws: the unigram entropy is close to log(V)
    assert H["a"]["shannon"] == pytest.approx(np.log(50_000), rel=0.01)
