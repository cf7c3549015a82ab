"""Data experts for the Mixture of Data Experts (MDE) approximation (Belenki, Agarwal, Shi,
Toutanova 2025, "Optimizing Pre-Training Data Mixtures with Mixtures of Data Experts",
arXiv:2502.15950, Fig. 1 and Sec. 3): one expert per training domain, trained with the swarm's
budget on that domain alone, and each expert's probability of every observed next token of each
validation domain. :mod:`mixopt.mixing.mde` turns those arrays into the loss approximation
``-mean_t log(sum_i w_i p_i(t))`` for any mixture ``w``.

Token positions (the contract of the arrays; an external trainer must produce the same):
the validation shard ``val`` (the domain's flat token array, ``DomainData.val``) is cut into
the trainer's evaluation windows (:func:`mixopt.training.trainer._eval_windows`):
``m = min(n_windows, (len(val) - 1) // block_size)`` windows of ``block_size + 1`` tokens
starting at ``s_k = int(linspace(0, len(val) - block_size - 1, m)[k])`` (numpy ``linspace`` cast
to int64: evenly spaced, non-overlapping), ``n_windows = eval_batches * eval_batch_size`` of the
run's :class:`~mixopt.training.trainer.TrainConfig` (``eval_batch_size`` defaulting to
``batch_size``). Within window ``k`` the model reads ``val[s_k : s_k + block_size]`` and
position ``t`` (``0 <= t < block_size``) scores the observed token ``val[s_k + t + 1]``. The
array is window-major: element ``k * block_size + t`` is ``p(val[s_k + t + 1] | val[s_k ..
s_k + t])``, so its length is ``m * block_size`` (:func:`predicted_token_count`). Because every
window has ``block_size`` scored tokens, ``-mean(log p)`` over the array is exactly the
trainer's validation loss (mean over windows of each window's mean token loss), and the MDE
loss of a one-hot mixture equals that expert's reported validation loss up to float16 rounding.

Probabilities are stored as float16, clipped to ``[2**-24, 1]`` (float16's smallest positive
value), so every stored value lies in ``(0, 1]`` as :class:`mixopt.mixing.mde.ExpertProbs`
requires; the clip changes a token's loss only where ``p < 6e-8`` (a loss above 16.6 nats).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from mixopt.training.data import DomainData
from mixopt.training.trainer import TrainConfig, TrainResult, _eval_windows, resolve_device, train

#: float16's smallest positive (subnormal) value: the floor of a stored probability
P_FLOOR = float(np.finfo(np.float16).smallest_subnormal)  # 2**-24


def predicted_token_count(n_val_tokens: int, block_size: int, n_windows: int) -> int:
    """Length of :func:`next_token_probs`' array for a validation shard of ``n_val_tokens``
    tokens: ``min(n_windows, (n_val_tokens - 1) // block_size) * block_size``. Raises
    ``ValueError`` when the shard is shorter than ``block_size + 1`` tokens or a size is < 1."""
    n_val_tokens, block_size, n_windows = int(n_val_tokens), int(block_size), int(n_windows)
    if block_size < 1:
        raise ValueError(f"block_size: must be >= 1, got {block_size}")
    if n_windows < 1:
        raise ValueError(f"n_windows: must be >= 1, got {n_windows}")
    fit = (n_val_tokens - 1) // block_size
    if fit < 1:
        raise ValueError(
            f"validation split has {n_val_tokens} tokens, fewer than block_size + 1 "
            f"({block_size + 1})"
        )
    return min(n_windows, fit) * block_size


def eval_window_count(config: TrainConfig) -> int:
    """``n_windows`` of a run's config: ``eval_batches * (eval_batch_size or batch_size)``."""
    return int(config.eval_batches) * int(config.eval_batch_size or config.batch_size)


@torch.no_grad()
def next_token_probs(
    model: torch.nn.Module,
    val_tokens: Any,
    *,
    block_size: int,
    n_windows: int,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """The model's probability of every observed next token over the trainer's evaluation
    windows of ``val_tokens`` (see the module docstring for the exact positions): a 1-D float16
    array of :func:`predicted_token_count` values in ``[2**-24, 1]``.

    ``model`` is a :class:`~mixopt.training.model.GPT` (``model(x)`` returns ``(logits, _)``);
    it is evaluated in eval mode, in float32 (the trainer's CPU precision), and its training
    mode is restored afterwards.
    """
    val = np.asarray(val_tokens)
    expected = predicted_token_count(len(val), block_size, n_windows)
    wins = torch.from_numpy(_eval_windows(val, int(block_size), int(n_windows)))
    dev = resolve_device(str(device)) if not isinstance(device, torch.device) else device
    was_training = model.training
    model.eval()
    out = []
    try:
        for chunk in wins.split(max(1, int(batch_size))):
            chunk = chunk.to(dev)
            logits, _ = model(chunk[:, :-1])
            logp = torch.log_softmax(logits.float(), dim=-1)
            tok = logp.gather(-1, chunk[:, 1:].unsqueeze(-1)).squeeze(-1)  # (b, T)
            out.append(tok.exp().reshape(-1).cpu().numpy())
    finally:
        model.train(was_training)
    p = np.concatenate(out).astype(np.float64)
    assert p.size == expected  # the windows are the trainer's: same count, same length
    return np.clip(p, P_FLOOR, 1.0).astype(np.float16)


class _KeepModel:
    """Trainer callback that keeps the trained model (``ctx.model``) at the end of training."""

    def __init__(self) -> None:
        self.model: torch.nn.Module | None = None

    def on_train_end(self, ctx: Any, result: TrainResult) -> None:
        self.model = ctx.model


@dataclass
class ExpertRun:
    """One trained expert: its domain, the trainer's result and its probability arrays."""

    domain: str
    result: TrainResult
    probs: dict[str, np.ndarray]  # val domain -> float16 (predicted_token_count,)


def one_hot(domains: Sequence[str], domain: str) -> list[float]:
    """The one-hot mixture of ``domain`` over ``domains``."""
    if domain not in domains:
        raise ValueError(f"expert domain {domain!r} is not one of the domains {list(domains)}")
    return [1.0 if d == domain else 0.0 for d in domains]


def train_experts(
    config: TrainConfig,
    data: Mapping[str, DomainData],
    *,
    experts: Sequence[str] | None = None,
    val_domains: Sequence[str] | None = None,
    callbacks: Sequence[Any] = (),
) -> tuple[dict[tuple[str, str], np.ndarray], dict[str, ExpertRun]]:
    """Train one expert per domain (the one-hot mixture through
    :func:`mixopt.training.trainer.train`, everything else as ``config``: the swarm's preset,
    budget and seed) and compute each expert's :func:`next_token_probs` on every validation
    domain, over the trainer's evaluation windows of ``config``.

    Returns ``(probs, runs)``: ``probs[(expert_domain, val_domain)]`` the float16 array,
    ``runs[expert_domain]`` the :class:`ExpertRun` (with the trainer's result, whose
    ``final_val_losses`` equal ``-mean(log p)`` of the arrays up to float16 rounding).
    ``experts`` / ``val_domains`` default to every domain of ``data``. K experts cost K runs.
    """
    domains = list(data)
    experts = list(experts) if experts is not None else domains
    val_domains = list(val_domains) if val_domains is not None else domains
    unknown = sorted(set(val_domains) - set(domains))
    if unknown:
        raise ValueError(f"val_domains: unknown domain(s) {unknown}; known: {domains}")
    T, n_windows = config.seq_len(), eval_window_count(config)
    eval_bs = int(config.eval_batch_size or config.batch_size)
    probs: dict[tuple[str, str], np.ndarray] = {}
    runs: dict[str, ExpertRun] = {}
    for e in experts:
        keep = _KeepModel()
        result = train(
            replace(config, weights=one_hot(domains, e)), data, [*callbacks, keep], resume=False
        )
        assert keep.model is not None
        mine = {
            v: next_token_probs(
                keep.model,
                data[v].val,
                block_size=T,
                n_windows=n_windows,
                batch_size=eval_bs,
                device=result.device,
            )
            for v in val_domains
        }
        for v, p in mine.items():
            probs[(e, v)] = p
        runs[e] = ExpertRun(domain=e, result=result, probs=mine)
    return probs, runs
