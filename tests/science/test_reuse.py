"""Mixture reuse when domains change: after adding a domain the reuse design keeps the
unchanged domains at their old ratios in every proposed run and proposes fewer runs than a
fresh swarm; old runs are mapped to the new domains where valid (splits shared by tokens)
and dropped, with a note, where they used a removed domain."""

from __future__ import annotations

import numpy as np
import pytest

from mixopt.mixing.reuse import map_old_runs, reuse_design

pytestmark = pytest.mark.science

OLD = {"web": 0.5, "code": 0.3, "math": 0.2}


def test_reuse_after_adding_a_domain_keeps_frozen_ratios_with_fewer_runs():
    new = ["web", "code", "math", "papers"]
    out = reuse_design(OLD, new, prior=[0.4, 0.3, 0.1, 0.2], random_state=0)
    assert out["changed"] == ["papers"] and out["frozen"] == pytest.approx(OLD)
    assert out["count"] < out["fresh_count"] and out["count"] == len(out["mixtures"]) == 8
    W = np.array(out["mixtures"])
    np.testing.assert_allclose(W.sum(axis=1), 1.0, atol=1e-9)
    frozen = W[:, :3]
    np.testing.assert_allclose(
        frozen / frozen.sum(axis=1, keepdims=True), np.tile([0.5, 0.3, 0.2], (8, 1)), atol=1e-9
    )
    assert np.ptp(W[:, 3]) > 0.05  # the new domain is explored
    assert "instead of 16" in out["explanation"]


def test_reuse_after_a_split_and_a_removal():
    new = ["web:news", "web:blog", "code"]  # web split, math removed
    out = reuse_design(OLD, new, random_state=1)
    assert set(out["changed"]) == {"web:news", "web:blog"} and out["frozen"] == {"code": 1.0}
    assert out["removed"] == ["web", "math"] and out["count"] == 12 and out["fresh_count"] == 12
    assert "removed" in out["explanation"]


def test_old_runs_mapped_where_valid():
    X = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    Xn, kept, notes = map_old_runs(
        X,
        ["web", "code", "math"],
        ["web:news", "web:blog", "code"],
        splits={"web": ["web:news", "web:blog"]},
        token_counts={"web:news": 300, "web:blog": 100},
    )
    assert kept.tolist() == [True, False]
    np.testing.assert_allclose(Xn, [[0.375, 0.125, 0.5]])
    assert (
        any("math" in n and "dropped" in n for n in notes) and "1 of 2 old runs reused" in notes[-1]
    )


def test_map_mixtures_split_merge_and_removal_by_hand():
    """old: a, b, c, d; new: a1, a2 (a split 1:3 by tokens), bc (b + c merged, tokens 2:2),
    d removed."""
    from mixopt.mixing.reuse import map_mixtures

    X = np.array(
        [
            [0.4, 0.3, 0.3, 0.0],  # b:c = 1:1 = their token shares: merged exactly
            [0.4, 0.5, 0.1, 0.0],  # b:c = 5:1: not a mixture of bc sampled as a whole
            [0.5, 0.2, 0.2, 0.1],  # used the removed d
            [1.0, 0.0, 0.0, 0.0],  # only split weight
            [0.0, 0.0, 0.0, 1.0],
        ]
    )  # only d
    out = map_mixtures(
        X,
        ["a", "b", "c", "d"],
        ["a1", "a2", "bc", "e"],
        splits={"a": ["a1", "a2"]},
        merges={"bc": ["b", "c"]},
        token_counts={"a1": 100, "a2": 300, "b": 2, "c": 2},
    )
    assert out["status"] == ["mapped", "dropped", "dropped", "mapped", "dropped"]
    np.testing.assert_allclose(out["X"][0], [0.1, 0.3, 0.6, 0.0])
    np.testing.assert_allclose(out["X"][3], [0.25, 0.75, 0.0, 0.0])
    assert np.isnan(out["X"][1]).all()
    assert "0.833:0.167" in out["reasons"][1] and "0.5:0.5" in out["reasons"][1]
    assert out["reasons"][2] == out["reasons"][4] == "trained on removed domain(s) ['d']"
    # a split then the inverse merge gives back the old run
    back = map_mixtures(
        out["X"][[0]],
        ["a1", "a2", "bc", "e"],
        ["a", "bc", "e"],
        merges={"a": ["a1", "a2"]},
        token_counts={"a1": 100, "a2": 300},
    )
    assert back["status"] == ["mapped"]
    np.testing.assert_allclose(back["X"][0], [0.4, 0.6, 0.0])


def test_reuse_size_is_the_designs_default():
    from mixopt.mixing.reuse import reuse_size

    for new in (
        ["web", "code", "math", "papers"],
        ["web", "papers", "books"],
        ["web", "code", "math"],
    ):
        size, out = reuse_size(OLD, new), reuse_design(OLD, new, random_state=0)
        assert (size["count"], size["fresh_count"], size["dimensions"]) == (
            out["count"],
            out["fresh_count"],
            out["dimensions"],
        ), new
        assert len(out["mixtures"]) == out["count"]
