"""Mixture exports for trainers (pure functions, no browser)."""

import ast
import json

import pytest

from app.dashboard import exports

DOMAINS = [{"name": "web", "source": {"path": "/data/web"}}, {"name": "code", "source": None},
           {"name": "9math", "source": None}, {"name": "empty", "source": None}]
MIX = {"web": 0.5, "code": 1 / 3, "9math": 1 / 6, "empty": 0.0}


def test_rounded_weights_sum_to_one_exactly():
    w = exports.rounded_weights({f"d{i}": 1 / 7 for i in range(7)}, digits=6)
    assert sum(round(v * 10**6) for v in w.values()) == 10**6
    assert all(abs(v - 1 / 7) <= 1e-6 for v in w.values())
    with pytest.raises(ValueError, match="sum to zero"):
        exports.rounded_weights({"a": 0.0})


def test_json_export_is_the_mixture():
    out = json.loads(exports.render("json", MIX, DOMAINS, title="t"))
    assert list(out) == ["web", "code", "9math", "empty"]
    assert out["web"] == 0.5 and out["empty"] == 0.0 and sum(out.values()) == pytest.approx(1, abs=1e-12)


def test_trainer_snippets_are_valid_and_skip_zero_weights():
    for fmt in ("olmo-core", "hf"):
        text = exports.render(fmt, MIX, DOMAINS, title="t", constraints={"target_tokens": 10**9, "max_epochs": 4})
        ast.parse(text)  # valid Python
        assert "empty" not in text
    olmo = exports.render("olmo-core", MIX, DOMAINS, title="t",
                          constraints={"target_tokens": 10**9, "max_epochs": 4, "max_epochs_per_domain": {"code": 2}})
    assert "SourceMixtureConfig(" in olmo and "target_ratio=0.500000" in olmo and "REQUESTED_TOKENS = 1000000000" in olmo
    assert "max_repetitions=2.0" in olmo and "max_repetitions=4.0" in olmo and "'/data/web'" in olmo
    hf = exports.render("hf", MIX, DOMAINS, title="t")
    assert "interleave_datasets(" in hf and "probabilities=[0.500000, 0.333333, 0.166667]" in hf
    assert "d_9math = load_dataset" in hf  # identifiers cannot start with a digit
    mega = exports.render("megatron", MIX, DOMAINS, title="t")
    assert "0.500000 /data/web" in mega and "0.333333 /path/to/code_text_document" in mega and "--data-path" in mega
    with pytest.raises(ValueError, match="format"):
        exports.render("yaml", MIX, DOMAINS, title="t")
