"""MFU arithmetic of bench/train_throughput.py (the part a CPU can check)."""

import pytest

from bench.train_throughput import flops_per_token, mfu, model_flops_per_token, peak_bf16_tflops
from mixopt.training.model import GPT, config_for


def test_peak_table_picks_the_most_specific_device():
    assert peak_bf16_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert peak_bf16_tflops("NVIDIA H100 PCIe") == 756.0
    assert peak_bf16_tflops("NVIDIA H200") == 989.0
    assert peak_bf16_tflops("NVIDIA A10G") == 70.0 and peak_bf16_tflops("NVIDIA A10") == 125.0
    assert peak_bf16_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_bf16_tflops("NVIDIA L40S") == 362.0 and peak_bf16_tflops("NVIDIA L4") == 121.0
    assert peak_bf16_tflops("Some Future GPU") is None


def test_mfu_by_hand():
    # 10M parameters, 6 layers of width 512, context 1024:
    # 6e7 + 12*6*512*1024 = 97,748,992 FLOPs/token
    fpt = model_flops_per_token(10_000_000, 6, 512, 1024)
    assert fpt == 60_000_000 + 37_748_736
    # 1M tokens/s on a 989 TFLOP/s device
    assert mfu(fpt, 1e6, 989.0) == pytest.approx(97_748_736e6 / 989e12)


def test_flops_of_a_preset_come_from_its_config():
    cfg = config_for("tiny", block_size=128, vocab_size=257)
    model = GPT(cfg)
    n = sum(p.numel() for p in model.parameters()) - model.pos_emb.weight.numel()
    assert flops_per_token("tiny", 128) == 6 * n + 12 * cfg.n_layer * cfg.n_embd * 128
