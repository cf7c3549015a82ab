"""Training throughput: the service trainer ``train()`` against a bare loop, per preset.

For each preset, in the same process and on the same device: tokens/s of
``mixopt.training.trainer.train`` (sampler, callbacks, per-sequence losses and all) and of a
bare nanoGPT-style loop over the same model shape, batch and optimiser (random windows of a
token array, AdamW, clipping, bf16 autocast on CUDA). The ratio should be >= 0.95. On CUDA
also the model FLOPs utilisation of both: MFU = (6 N + 12 L d T) * tokens/s / peak, N the
parameters without the position embedding (the tied token embedding counts once, as the
output projection), L layers, d width, T context (PaLM, Chowdhery et al. 2022, appendix B:
forward + backward of the matmuls and of attention); the peak is the device's dense bf16
tensor-core figure from :data:`PEAK_BF16_TFLOPS`, matched on ``torch.cuda.get_device_name()``
(``--peak-tflops`` overrides it; an unknown device prints no MFU rather than a guess).

    python bench/train_throughput.py                       # CPU: tiny and small
    python bench/train_throughput.py --device cuda --presets tiny,small,medium,base
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mixopt.training.data import DomainData  # noqa: E402
from mixopt.training.model import GPT, PRESETS, config_for  # noqa: E402
from mixopt.training.trainer import TrainConfig, make_optimizer, resolve_device, train  # noqa: E402

#: dense bf16 peak TFLOP/s (no sparsity) from the vendors' data sheets, by a substring of the
#: device name; the most specific match wins (PCIe/NVL H100s are slower than SXM ones)
PEAK_BF16_TFLOPS = {
    "H100 PCIe": 756.0,
    "H100 NVL": 835.0,
    "H100": 989.0,
    "H200": 989.0,
    "H20": 148.0,
    "GH200": 989.0,
    "B200": 2250.0,
    "A100": 312.0,
    "A800": 312.0,
    "A6000": 155.0,
    "A40": 150.0,
    "A30": 165.0,
    "A10G": 70.0,
    "A10": 125.0,
    "L40S": 362.0,
    "L40": 181.0,
    "L4": 121.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
    "V100": 125.0,
    "T4": 65.0,
}


def peak_bf16_tflops(device_name: str) -> float | None:
    """The device's dense bf16 peak (TFLOP/s), or None when the name is not in the table.

    The longest matching key wins ("NVIDIA H100 PCIe" is "H100 PCIe", not "H100"; "NVIDIA
    A10G" is "A10G", not "A10"); V100 and T4 have no bf16 tensor cores (their fp16 peak).
    """
    hits = [k for k in PEAK_BF16_TFLOPS if k.lower() in device_name.lower()]
    return PEAK_BF16_TFLOPS[max(hits, key=len)] if hits else None


def model_flops_per_token(n_params: int, n_layer: int, n_embd: int, T: int) -> float:
    """Training FLOPs per token, ``6 N + 12 L d T`` (PaLM appendix B)."""
    return 6.0 * n_params + 12.0 * n_layer * n_embd * T


def mfu(flops_per_tok: float, tokens_per_s: float, peak_tflops: float) -> float:
    """Model FLOPs utilisation: achieved model FLOP/s over the peak."""
    return flops_per_tok * tokens_per_s / (peak_tflops * 1e12)


def synthetic_data(vocab: int = 257, n: int = 2_000_000, k: int = 3) -> dict[str, DomainData]:
    rng = np.random.default_rng(0)
    return {
        f"d{i}": DomainData.from_tokens(
            f"d{i}", rng.integers(0, vocab, n), rng.integers(0, vocab, 200_000), vocab
        )
        for i in range(k)
    }


class Timer:
    """Callback: wall time from the end of step ``warmup - 1`` to the end of the last step."""

    def __init__(self, warmup: int, steps: int, device: torch.device):
        self.warmup, self.steps, self.device = warmup, steps, device
        self.t0 = self.t1 = None

    def on_step_end(self, ctx, step, info):
        if step == self.warmup - 1 or step == self.steps - 1:
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            if step == self.warmup - 1:
                self.t0 = time.perf_counter()
            else:
                self.t1 = time.perf_counter()


def bench_trainer(cfg: TrainConfig, data, warmup: int) -> float:
    timer = Timer(warmup, cfg.max_steps, resolve_device(cfg.device))
    train(cfg, data, [timer])
    return (cfg.max_steps - warmup) * cfg.batch_size * cfg.seq_len() / (timer.t1 - timer.t0)


def bench_bare(cfg: TrainConfig, data, warmup: int) -> float:
    device = resolve_device(cfg.device)
    T, B = cfg.seq_len(), cfg.batch_size
    torch.manual_seed(cfg.seed)
    vocab = max(d.vocab_size for d in data.values())
    model = GPT(config_for(cfg.preset, block_size=T, vocab_size=vocab)).to(device)
    opt = make_optimizer(model, cfg, device)
    fwd = (
        torch.compile(model)
        if (cfg.compile if cfg.compile is not None else device.type == "cuda")
        else model
    )
    tokens = np.concatenate([d.train for d in data.values()]).astype(np.int64)
    rng = np.random.default_rng(0)
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    t0 = None
    for step in range(cfg.max_steps):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        starts = rng.integers(0, len(tokens) - T - 1, B)
        win = torch.from_numpy(np.stack([tokens[s : s + T + 1] for s in starts])).to(
            device
        )  # (B, T+1)
        for g in opt.param_groups:
            g["lr"] = cfg.lr_at(step)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            _, loss = fwd(win[:, :-1], win[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (cfg.max_steps - warmup) * B * T / (time.perf_counter() - t0)


def flops_per_token(preset: str, T: int, vocab: int = 257) -> float:
    """``6 N + 12 L d T`` of a preset's model, from its config (built on the meta device)."""
    cfg = config_for(preset, block_size=T, vocab_size=vocab)
    with torch.device("meta"):
        model = GPT(cfg)
        n = model.num_params(non_embedding=False) - model.pos_emb.weight.numel()
    return model_flops_per_token(n, cfg.n_layer, cfg.n_embd, T)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--presets", default=None, help="comma-separated (default: tiny,small on CPU, all on GPU)"
    )
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 30 CPU, 100 GPU)")
    ap.add_argument(
        "--warmup", type=int, default=None, help="untimed first steps (default 3 CPU, 20 GPU)"
    )
    ap.add_argument("--batch-size", type=int, default=None, help="default 16 on CPU, 32 on GPU")
    ap.add_argument(
        "--block-size", type=int, default=None, help="default: the preset's (CPU: <= 128)"
    )
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--peak-tflops", type=float, default=None, help="peak bf16 TFLOP/s for MFU")
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    presets = (
        args.presets.split(",") if args.presets else (list(PRESETS) if gpu else ["tiny", "small"])
    )
    warmup = args.warmup if args.warmup is not None else (20 if gpu else 3)
    steps = (args.steps or (100 if gpu else 30)) + warmup
    batch = args.batch_size or (32 if gpu else 16)
    peak = args.peak_tflops
    if gpu and peak is None:
        peak = peak_bf16_tflops(torch.cuda.get_device_name())
    data = synthetic_data()
    where = torch.cuda.get_device_name() if gpu else f"CPU, {torch.get_num_threads()} threads"
    print(
        f"device: {where}; batch {batch}; {steps - warmup} timed steps after {warmup} warm-up; "
        f"peak bf16 {'unknown' if peak is None else f'{peak:g} TFLOP/s'}"
    )
    print(
        f"{'preset':8} {'params':>9} {'T':>5} {'train() tok/s':>14} {'bare tok/s':>12} "
        f"{'ratio':>6} {'MFU':>6} {'bare MFU':>8}"
    )
    for p in presets:
        T = args.block_size or (
            PRESETS[p]["block_size"] if gpu else min(128, PRESETS[p]["block_size"])
        )
        cfg = TrainConfig(
            preset=p,
            block_size=T,
            batch_size=batch,
            max_steps=steps,
            eval_interval=10**9,
            eval_batches=1,
            device=str(device),
            compile=False if args.no_compile else None,
        )
        bare = bench_bare(cfg, data, warmup)
        svc = bench_trainer(cfg, data, warmup)
        fpt = flops_per_token(p, T)
        m_svc = mfu(fpt, svc, peak) if (gpu and peak) else None
        m_bare = mfu(fpt, bare, peak) if (gpu and peak) else None
        with torch.device("meta"):
            n = GPT(config_for(p, block_size=T)).num_params(non_embedding=False) / 1e6
        print(
            f"{p:8} {n:8.1f}M {T:5d} {svc:14,.0f} {bare:12,.0f} {svc / bare:6.3f} "
            f"{'n/a' if m_svc is None else f'{m_svc:6.1%}':>6} "
            f"{'n/a' if m_bare is None else f'{m_bare:8.1%}':>8}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
