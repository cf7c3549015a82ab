"""CUDA paths of the trainer: bf16 autocast, torch.compile, SDPA kernels. Skipped without a GPU
(``scripts/gpu_check.sh`` runs them on one)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mixopt.training.model import GPT, config_for
from mixopt.training.trainer import TrainConfig, train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

RUN = dict(
    preset="tiny", batch_size=16, block_size=128, max_steps=60, eval_interval=30, eval_batches=2
)


def test_bf16_autocast_matches_fp32_and_really_runs_in_bf16(corpora):
    data = {d: corpora[d] for d in ("code", "prose", "math")}
    model = GPT(config_for("tiny", block_size=128, vocab_size=257)).cuda()
    x = torch.randint(0, 257, (2, 128), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits, loss = model(x, x)
    assert torch.cuda.is_bf16_supported()
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32  # matmuls bf16, loss fp32
    bf16 = train(TrainConfig(**RUN, device="cuda", dtype="auto", compile=False), data)
    fp32 = train(TrainConfig(**RUN, device="cuda", dtype="fp32", compile=False), data)
    a, b = (
        np.mean(list(bf16.final_val_losses.values())),
        np.mean(list(fp32.final_val_losses.values())),
    )
    first = np.mean(list(bf16.curve[0]["losses"].values()))
    assert math.isfinite(a) and a < first - 0.5  # it learned
    assert abs(a - b) < 0.1  # bf16 autocast trains like fp32


def test_torch_compile_trains_like_eager(corpora):
    import torch._dynamo

    data = {d: corpora[d] for d in ("code", "prose")}
    torch._dynamo.reset()
    compiled = train(TrainConfig(**RUN, device="cuda", compile=True), data)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    eager = train(TrainConfig(**RUN, device="cuda", compile=False), data)
    assert graphs > 0  # compile really produced graphs
    a = np.mean(list(compiled.final_val_losses.values()))
    b = np.mean(list(eager.final_val_losses.values()))
    assert abs(a - b) < 0.1


@pytest.mark.parametrize("backend", ["FLASH_ATTENTION", "EFFICIENT_ATTENTION"])
def test_sdpa_kernels_match_the_math(backend):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.manual_seed(0)
    B, H, T, D = 2, 4, 256, 64
    q, k, v = (torch.randn(B, H, T, D, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    mask = torch.ones(T, T, device="cuda", dtype=torch.bool).tril()
    ref = (
        torch.softmax(
            (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(D)
            + torch.where(mask, 0.0, float("-inf")),
            dim=-1,
        )
        @ v.float()
    )
    with sdpa_kernel([getattr(SDPBackend, backend)]):
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert (out.float() - ref).abs().max() < 3e-2
    # the model's attention runs on that kernel too (sdpa_kernel raises if it cannot be used)
    model = GPT(config_for("small", block_size=256, vocab_size=257)).cuda()
    x = torch.randint(0, 257, (2, 256), device="cuda")
    with sdpa_kernel([getattr(SDPBackend, backend)]), torch.autocast("cuda", dtype=torch.bfloat16):
        logits, _ = model(x)
    assert torch.isfinite(logits.float()).all()
