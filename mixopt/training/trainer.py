"""The proxy-run trainer: ``train(config, data, callbacks) -> TrainResult``, a plain function.

One loop, nanoGPT style: AdamW (decoupled weight decay on matrices only, none on norms or
biases), linear warm-up then cosine decay to ``min_lr_ratio * lr``, gradient clipping, and on
CUDA bf16 autocast and optional ``torch.compile``. Batches come from
:class:`~mixopt.training.sampler.MixtureSampler`; the loss of a step is the mean of the
per-sequence losses, times per-sequence weights when a callback gives them.

Evaluation: each domain's validation shard is cut into a fixed set of windows once (evenly
spaced, non-overlapping), so every evaluation of a run -- and of every run on the same data --
sees the same tokens and curves are comparable. An evaluation runs before the first step, every
``eval_interval`` steps and after the last; each appends ``{step, tokens, losses, bpb}`` to
``result.curve``.

Callbacks follow :mod:`mixopt.training.callbacks`. Per step, in order:
``mixture_for_step`` (all callbacks; the last non-None answer wins) -> sample the batch ->
forward -> ``sample_weights`` (the product of all non-None answers) -> backward, clip, step ->
``on_step_end`` -> evaluation and ``on_eval`` if due -> checkpoint if due -> stop if asked.

Checkpoints (``checkpoint_dir``): ``ckpt.pt`` (a plain dict: model, optimizer, sampler state,
step, tokens, weights, curve, callback states, torch RNG) and ``meta.json``, each written to a
temporary file and renamed. ``train(..., resume=True)`` continues from it; on CPU the resumed
run ends with exactly the losses of an uninterrupted one (same seed, same thread count).
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mixopt.training.data import DomainData, atomic_write_json
from mixopt.training.model import GPT, PRESETS, config_for
from mixopt.training.sampler import MixtureSampler, validate_weights
from mixopt.training.tokenizer import bits_per_byte

CKPT_VERSION = 1


@dataclass
class TrainConfig:
    preset: str = "tiny"  # model shape, see mixopt.training.model.PRESETS
    n_layer: int | None = None  # overrides of the preset's shape (None: the preset's)
    n_head: int | None = None
    n_embd: int | None = None
    dropout: float = 0.0
    block_size: int | None = None  # tokens per training sequence (None: the preset's)
    batch_size: int = 16  # sequences per optimiser step
    max_steps: int | None = None  # budget in steps ...
    max_tokens: int | None = None  # ... or in tokens (batch_size * block_size per step); both: min
    weights: Any = None  # initial mixture over the domains (list or dict); None: natural
    max_epochs: float | None = None  # cap on epochs per domain (None: no cap)
    on_exhausted: str = "renormalize"  # or "raise"; see mixopt.training.sampler
    learning_rate: float | None = None  # peak rate (None: the preset's)
    min_lr_ratio: float = 0.1  # cosine decays to learning_rate * min_lr_ratio
    warmup_steps: int | None = None  # None: 5% of the steps, at least 1, at most 200
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # max global grad norm (0: no clipping)
    seed: int = 0
    device: str = "auto"  # "auto": cuda if available, else cpu
    dtype: str = "auto"  # "auto": bf16 autocast on CUDA (when supported), fp32 on CPU
    compile: bool | None = None  # torch.compile; None: only on CUDA
    eval_interval: int = 50  # steps between evaluations
    eval_batches: int = 4  # fixed eval batches per domain (eval_batch_size sequences each)
    eval_batch_size: int | None = None  # None: batch_size
    checkpoint_dir: str | None = None  # None: no checkpoints
    checkpoint_interval: int | None = None  # None: at every evaluation

    def total_steps(self) -> int:
        """Optimiser steps of the run, from ``max_steps`` and/or ``max_tokens``."""
        if self.max_steps is None and self.max_tokens is None:
            raise ValueError("max_steps / max_tokens: give at least one training budget")
        steps = []
        if self.max_steps is not None:
            steps.append(int(self.max_steps))
        if self.max_tokens is not None:
            steps.append(math.ceil(self.max_tokens / (self.batch_size * self.seq_len())))
        n = min(steps)
        if n < 1:
            raise ValueError(f"max_steps / max_tokens: the budget is {n} steps")
        return n

    def seq_len(self) -> int:
        if self.block_size is not None:
            return int(self.block_size)
        return int(PRESETS[self.preset]["block_size"])

    def peak_lr(self) -> float:
        return float(self.learning_rate or PRESETS[self.preset]["lr"])

    def lr_at(self, step: int) -> float:
        """Linear warm-up to the peak, then cosine decay to ``min_lr_ratio`` of it."""
        total, peak = self.total_steps(), self.peak_lr()
        warm = self.warmup_steps if self.warmup_steps is not None else min(200, max(1, total // 20))
        if step < warm:
            return peak * (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total - warm))
        floor = peak * self.min_lr_ratio
        return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * progress))


@dataclass
class TrainResult:
    domains: list[str]
    final_val_losses: dict[str, float]
    final_val_bpb: dict[str, float]
    curve: list[dict[str, Any]]
    steps: int
    tokens: int
    n_params: int  # non-embedding parameters (the N of scaling laws)
    n_params_total: int
    weights: list[float]  # the mixture in force at the end
    tokens_per_s: float  # training throughput of this call (evaluations excluded)
    wall_s: float
    device: str
    stopped: bool = False  # a callback asked to stop before the budget was spent
    resumed_from: int | None = None  # the checkpoint step this call started from
    exhausted: dict[str, int] = field(default_factory=dict)  # domain -> step (max_epochs)
    last_train_loss: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- helpers -----------------------------------------------------------------------------------
def set_threads(n: int) -> None:
    """Torch's CPU threads for this process (workers call it so torch stays out of their
    imports)."""
    torch.set_num_threads(int(n))


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device):
    """AdamW with weight decay on matrices (dim >= 2) only: none on norms and biases."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    extra = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.AdamW(groups, lr=cfg.peak_lr(), betas=(cfg.beta1, cfg.beta2), **extra)


def _eval_windows(val: np.ndarray, T: int, n: int) -> np.ndarray:
    """``(m, T + 1)`` fixed windows of a validation shard: at most ``n``, evenly spaced and
    non-overlapping."""
    fit = (len(val) - 1) // T
    if fit < 1:
        raise ValueError(f"validation split has {len(val)} tokens, fewer than block_size + 1")
    m = min(n, fit)
    starts = np.linspace(0, len(val) - T - 1, m).astype(np.int64)
    return np.stack([np.asarray(val[s : s + T + 1]) for s in starts]).astype(np.int64)


def _atomic_save(obj: Any, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _call(callbacks: Sequence[Any], hook: str, *args: Any) -> list[Any]:
    return [getattr(cb, hook)(*args) for cb in callbacks if hasattr(cb, hook)]


class _Context:
    """What callbacks see (the :class:`~mixopt.training.callbacks.TrainContext` protocol)."""

    def __init__(self, domains, config, weights, evaluate_fn):
        self.domains = list(domains)
        self.config = config
        self.weights = weights
        self.step = 0
        self.tokens = 0
        self.model = None  # set by train(); callbacks may read it
        self.vocab_size: int | None = None  # the model's vocabulary, set by train()
        self.stop_requested = False
        self._evaluate = evaluate_fn

    def evaluate(self, max_batches: int | None = None) -> dict[str, float]:
        return self._evaluate(max_batches)

    def request_stop(self) -> None:
        self.stop_requested = True


# -- the loop ----------------------------------------------------------------------------------
def _evaluator(
    model: Any,
    fwd: Any,
    eval_sets: Mapping[str, torch.Tensor],
    eval_bs: int,
    device: torch.device,
    autocast: Any,
) -> Any:
    """``evaluate(max_batches=None) -> {domain: mean validation loss}`` on the fixed windows."""

    @torch.no_grad()
    def evaluate(max_batches: int | None = None) -> dict[str, float]:
        was_training = model.training
        model.eval()
        out = {}
        for name, wins in eval_sets.items():
            if max_batches is not None:
                wins = wins[: max(1, int(max_batches)) * eval_bs]
            total_loss, count = 0.0, 0
            for chunk in wins.split(eval_bs):
                chunk = chunk.to(device, non_blocking=True)
                with autocast:
                    _, loss = fwd(chunk[:, :-1], chunk[:, 1:], reduction="sequence")  # (b,)
                total_loss += float(loss.float().sum())
                count += len(chunk)
            out[name] = total_loss / count
        model.train(was_training)
        return out

    return evaluate


def _resume(
    path: Path,
    device: torch.device,
    domains: list[str],
    mcfg: Any,
    model: Any,
    optimizer: Any,
    sampler: MixtureSampler,
    callbacks: list[Any],
) -> tuple[list[dict[str, Any]], int, float]:
    """Restore model, optimizer, sampler, RNGs and callbacks from a checkpoint; returns its
    curve, step and training time."""
    state = torch.load(path, map_location=device, weights_only=False)
    if state["domains"] != domains:
        raise ValueError(f"checkpoint is for domains {state['domains']}, not {domains}")
    if state["model_config"] != asdict(mcfg):
        raise ValueError("checkpoint's model shape differs from this config's")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    sampler.load_state_dict(state["sampler"])
    torch.set_rng_state(state["torch_rng"].cpu())
    if device.type == "cuda" and state.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(state["cuda_rng"].cpu())
    for i, cb in enumerate(callbacks):
        cb_state = state["callbacks"].get(str(i))
        if cb_state is not None and hasattr(cb, "load_state_dict"):
            cb.load_state_dict(cb_state)
    return list(state["curve"]), int(state["step"]), float(state.get("train_time", 0.0))


def _set_mixture(callbacks: list[Any], ctx: Any, sampler: MixtureSampler, step: int) -> None:
    """The mixture of this step: the callbacks' (online mixing), else the sampler's."""
    for w in _call(callbacks, "mixture_for_step", ctx, step):
        if w is not None:
            sampler.set_weights(w)
    ctx.weights = sampler.weights


def _sample_weights(
    callbacks: list[Any], ctx: Any, step: int, per_seq: torch.Tensor, ids: np.ndarray
) -> torch.Tensor | None:
    """The product of the callbacks' per-sample loss weights (None: unweighted)."""
    sw = None
    for w in _call(callbacks, "sample_weights", ctx, step, per_seq, ids):
        if w is not None:
            w = torch.as_tensor(w, dtype=per_seq.dtype, device=per_seq.device).detach()
            sw = w if sw is None else sw * w
    return sw


def train(
    config: TrainConfig,
    data: Mapping[str, DomainData],
    callbacks: Sequence[Any] = (),
    resume: bool = False,
) -> TrainResult:
    """Train a GPT on a mixture of domains; see the module docstring.

    Parameters
    ----------
    config : the run's settings.
    data : domain name -> :class:`DomainData`, in the run's domain order.
    callbacks : objects with hooks from :mod:`mixopt.training.callbacks`.
    resume : continue from ``config.checkpoint_dir``'s checkpoint when there is one.
    """
    t_wall = time.perf_counter()
    domains = list(data)
    if not domains:
        raise ValueError("data: no domains")
    callbacks = list(callbacks)
    total = config.total_steps()
    T, B = config.seq_len(), int(config.batch_size)
    device = resolve_device(config.device)
    vocab = max(d.vocab_size for d in data.values())
    mcfg = config_for(
        config.preset,
        n_layer=config.n_layer,
        n_head=config.n_head,
        n_embd=config.n_embd,
        block_size=T,
        vocab_size=vocab,
    )
    mcfg.dropout = config.dropout

    torch.manual_seed(config.seed)
    model = GPT(mcfg).to(device)
    optimizer = make_optimizer(model, config, device)
    weights = validate_weights(
        config.weights if config.weights is not None else [d.n_train_tokens for d in data.values()],
        len(domains),
        domains,
    )
    sampler = MixtureSampler(
        data,
        weights,
        B,
        T,
        seed=config.seed,
        max_epochs=config.max_epochs,
        on_exhausted=config.on_exhausted,
    )
    use_bf16 = (
        device.type == "cuda"
        and config.dtype in ("auto", "bf16")
        and torch.cuda.is_bf16_supported()
    )
    autocast = (
        torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        if use_bf16
        else torch.autocast(device_type=device.type, enabled=False)
    )
    do_compile = config.compile if config.compile is not None else device.type == "cuda"
    fwd = torch.compile(model) if do_compile else model

    # fixed evaluation windows, one tensor per domain
    eval_bs = int(config.eval_batch_size or B)
    eval_sets = {
        n: torch.from_numpy(_eval_windows(d.val, T, config.eval_batches * eval_bs))
        for n, d in data.items()
    }

    evaluate = _evaluator(model, fwd, eval_sets, eval_bs, device, autocast)

    def bpb(losses: dict[str, float]) -> dict[str, float]:
        return {
            n: bits_per_byte(v, data[n].n_val_tokens, data[n].n_val_bytes)
            for n, v in losses.items()
        }

    ctx = _Context(domains, config, sampler.weights, evaluate)
    ctx.model = model
    ctx.vocab_size = int(vocab)
    curve: list[dict[str, Any]] = []
    start, train_time_before = 0, 0.0
    resumed_from = None
    ckpt_dir = Path(config.checkpoint_dir).expanduser() if config.checkpoint_dir else None
    ckpt_every = config.checkpoint_interval or config.eval_interval
    if ckpt_dir is not None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        if resume and (ckpt_dir / "ckpt.pt").is_file():
            curve, start, train_time_before = _resume(
                ckpt_dir / "ckpt.pt", device, domains, mcfg, model, optimizer, sampler, callbacks
            )
            resumed_from = start
            ctx.weights = sampler.weights

    def save_checkpoint(step: int, train_time: float) -> None:
        state = {
            "version": CKPT_VERSION,
            "step": step,
            "tokens": step * B * T,
            "domains": domains,
            "model_config": asdict(mcfg),
            "config": asdict(config),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "sampler": sampler.state_dict(),
            "weights": sampler.weights.tolist(),
            "curve": curve,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state() if device.type == "cuda" else None,
            "callbacks": {
                str(i): cb.state_dict()
                for i, cb in enumerate(callbacks)
                if hasattr(cb, "state_dict")
            },
            "train_time": train_time,
        }
        assert ckpt_dir is not None  # checkpoints are saved only with a checkpoint_dir
        _atomic_save(state, ckpt_dir / "ckpt.pt")
        atomic_write_json(
            ckpt_dir / "meta.json",
            {
                "version": CKPT_VERSION,
                "step": step,
                "tokens": step * B * T,
                "total_steps": total,
                "domains": domains,
                "weights": sampler.weights.tolist(),
                "saved_at": time.time(),
                "config": asdict(config),
                "last_eval": curve[-1] if curve else None,
            },
            default=float,
        )

    def record_eval(step: int) -> None:
        losses = evaluate()
        curve.append({"step": step, "tokens": step * B * T, "losses": losses, "bpb": bpb(losses)})
        _call(callbacks, "on_eval", ctx, step, losses)

    model.train()
    _call(callbacks, "on_train_start", ctx)
    if start == 0 and not curve:
        record_eval(0)
    train_time, last_loss = 0.0, None
    step = start
    while step < total and not ctx.stop_requested:
        ctx.step, ctx.tokens = step, step * B * T
        _set_mixture(callbacks, ctx, sampler, step)
        t0 = time.perf_counter()
        x, y, ids = sampler.next_batch()
        ctx.weights = sampler.weights  # an exhausted domain may have been dropped
        xb = torch.from_numpy(x).to(device, non_blocking=True)  # (B, T)
        yb = torch.from_numpy(y).to(device, non_blocking=True)  # (B, T)
        lr = config.lr_at(step)
        for g in optimizer.param_groups:
            g["lr"] = lr
        with autocast:
            _, per_seq = fwd(xb, yb, reduction="sequence")  # (B,)
        per_seq_d = per_seq.detach()
        sw = _sample_weights(callbacks, ctx, step, per_seq_d, ids)
        loss = per_seq.mean() if sw is None else (sw * per_seq).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        per_seq_np = per_seq_d.float().cpu().numpy()
        last_loss = float(loss.detach())
        train_time += time.perf_counter() - t0
        info = {
            "loss": last_loss,
            "domain_ids": ids,
            "per_sample_loss": per_seq_np,
            "per_domain_loss": {
                domains[i]: float(per_seq_np[ids == i].mean()) for i in np.unique(ids)
            },
            "tokens": (step + 1) * B * T,
            "lr": lr,
        }
        _call(callbacks, "on_step_end", ctx, step, info)
        step += 1
        ctx.step, ctx.tokens = step, step * B * T
        if step % config.eval_interval == 0 or step == total:
            record_eval(step)
        if ckpt_dir is not None and (step % ckpt_every == 0 or step == total or ctx.stop_requested):
            save_checkpoint(step, train_time_before + train_time)

    if not curve or curve[-1]["step"] != step:
        record_eval(step)
    final = curve[-1]["losses"]
    done_steps = step - start
    result = TrainResult(
        domains=domains,
        final_val_losses=dict(final),
        final_val_bpb=dict(curve[-1]["bpb"]),
        curve=curve,
        steps=step,
        tokens=step * B * T,
        n_params=model.num_params(True),
        n_params_total=model.num_params(False),
        weights=sampler.weights.tolist(),
        tokens_per_s=done_steps * B * T / train_time if train_time > 0 else 0.0,
        wall_s=time.perf_counter() - t_wall,
        device=str(device),
        stopped=step < total,
        resumed_from=resumed_from,
        exhausted=dict(sampler.exhausted),
        last_train_loss=last_loss,
    )
    _call(callbacks, "on_train_end", ctx, result)
    return result


class PrintProgress:
    """A callback that prints the loss every ``every`` steps and each evaluation."""

    def __init__(self, every: int = 50):
        self.every = every
        self.t0 = time.perf_counter()

    def on_step_end(self, ctx, step: int, info: dict) -> None:
        if (step + 1) % self.every == 0:
            dt = time.perf_counter() - self.t0
            print(
                f"step {step + 1}: loss {info['loss']:.4f}, lr {info['lr']:.2e}, "
                f"{info['tokens'] / max(dt, 1e-9):,.0f} tokens/s",
                flush=True,
            )

    def on_eval(self, ctx, step: int, val_losses: dict[str, float]) -> None:
        print(
            f"eval @ {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in val_losses.items()),
            flush=True,
        )


def config_fields() -> list[str]:
    return [f.name for f in fields(TrainConfig)]
