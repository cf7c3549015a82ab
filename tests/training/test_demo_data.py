"""Demo corpora helpers (the full build downloads pinned archives: marked slow)."""

from __future__ import annotations

import json

import pytest

from mixopt.training import demo_data
from tests.training.conftest import CORPORA, DOMAINS


def test_fixtures_are_small_permissive_slices():
    sources = json.loads((CORPORA / "SOURCES.json").read_text())
    assert set(sources) == set(DOMAINS)
    for d in DOMAINS:
        assert demo_data.DOMAINS[d]["permissive"]
        size = (CORPORA / d / f"{d}.jsonl").stat().st_size
        assert 15_000 < size < 60_000, (d, size)


def test_select_is_deterministic_and_capped():
    docs = [f"doc {i} " * (i % 7 + 1) for i in range(200)]
    a = demo_data._select(docs, 500)
    assert a == demo_data._select(list(reversed(docs)), 500)
    assert sum(len(x.encode()) for x in a) <= 500


def test_wikitext_cleaning_and_language_filter():
    raw = "'''Anarchism''' is a [[political philosophy|philosophy]]{{citation needed}}<ref>x</ref>."
    assert demo_data._clean_wikitext(raw) == "Anarchism is a philosophy."
    english = "Permission is hereby granted to any person obtaining a copy of this software " * 5
    assert demo_data._is_english(english)
    assert not demo_data._is_english("Die Lizenz gilt für alle Nutzer und Werke dieser Art " * 5)


@pytest.mark.slow
def test_build_demo_corpora(tmp_path):
    m = demo_data.build_demo_corpora(
        tmp_path / "demo", max_bytes=200_000, cache_dir=tmp_path / "archives"
    )
    assert set(m["domains"]) == set(demo_data.DEFAULT_DOMAINS)
    for d, info in m["domains"].items():
        assert 50_000 < info["bytes"] <= 200_000, d
    again = demo_data.build_demo_corpora(
        tmp_path / "demo", max_bytes=200_000, cache_dir=tmp_path / "archives"
    )
    assert again["domains"] == m["domains"]
