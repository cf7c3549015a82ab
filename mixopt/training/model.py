"""A small GPT (decoder-only transformer) for proxy runs, in one file that reads top to bottom.

Pre-norm blocks (LayerNorm -> causal self-attention -> residual, LayerNorm -> MLP ->
residual), learned absolute position embeddings, the output head tied to the token
embedding, attention through ``F.scaled_dot_product_attention(is_causal=True)`` (flash /
memory-efficient kernels on GPU). ``forward`` returns the logits and the loss, either the
batch mean, one loss per sequence (what per-domain and per-sample losses need) or one per
token.

Presets (``PRESETS``) go from ``micro`` (about 0.1M non-embedding parameters, for the demo's
swarm on a laptop) and ``tiny`` (about 1M parameters, trains on a CPU core in tens of seconds)
to ``base`` (about 100M, for a GPU). Mixture laws scale with *non-embedding* parameters
(Kaplan et al. 2020): :meth:`GPT.num_params` counts both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    vocab_size: int = 257  # 256 byte values + one end-of-document token (byte tokenizer)
    block_size: int = 128  # longest context the position table covers
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads; n_embd must be a multiple of it
    n_embd: int = 128  # residual stream width
    dropout: float = 0.0  # proxy runs see each token about once: no dropout by default
    bias: bool = False  # biases in the linear layers and LayerNorms (False: a little faster)


# Model shapes for proxy runs, smallest first. ``lr`` is a learning rate that works for the
# preset at batch 16-64 (smaller models tolerate larger rates).
PRESETS: dict[str, dict] = {
    # micro: the demo's swarm on 2 CPU cores (600 steps in about 15 s on one core)
    "micro": dict(n_layer=2, n_head=4, n_embd=64, block_size=64, lr=3e-3),  # ~0.1M non-emb
    "tiny": dict(n_layer=4, n_head=4, n_embd=128, block_size=128, lr=3e-3),  # ~0.8M non-emb
    "small": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, lr=1e-3),  # ~10.6M
    "medium": dict(n_layer=10, n_head=8, n_embd=512, block_size=512, lr=8e-4),  # ~31.5M
    "base": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, lr=6e-4),  # ~85M (GPT-2 small)
}


def config_for(preset: str, **overrides) -> GPTConfig:
    """The :class:`GPTConfig` of a preset; keyword overrides that are None are ignored."""
    if preset not in PRESETS:
        raise ValueError(f"preset: unknown {preset!r}; available: {list(PRESETS)}")
    names = {f.name for f in fields(GPTConfig)}
    base = {k: v for k, v in PRESETS[preset].items() if k in names}
    base.update({k: v for k, v in overrides.items() if v is not None and k in names})
    return GPTConfig(**base)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        if cfg.n_embd % cfg.n_head:
            raise ValueError(f"n_embd ({cfg.n_embd}) must be a multiple of n_head ({cfg.n_head})")
        self.n_head = cfg.n_head
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)  # q, k, v in one matmul
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # 3 x (B, T, C)
        hs = C // self.n_head
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again: (B, T, C)
        return self.resid_drop(self.proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))  # (B, T, C) -> (B, T, 4C) -> (B, T, C)


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight  # weight tying: one (vocab, C) matrix
        self.apply(self._init_weights)
        # residual output projections start smaller, so the residual stream's variance does not
        # grow with depth (GPT-2's scheme: std / sqrt(2 * n_layer))
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameters, counted once each (the tied head is the token embedding).

        ``non_embedding=True`` leaves out the token and position embeddings: the ``N`` of
        scaling laws.
        """
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.tok_emb.weight.numel() + self.pos_emb.weight.numel()
        return n

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, reduction: str = "mean"
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits ``(B, T, vocab)`` and, with ``targets`` ``(B, T)``, the cross-entropy loss.

        ``reduction``: ``"mean"`` (a scalar), ``"sequence"`` (``(B,)``, each sequence's mean
        over its tokens: per-sample and per-domain losses) or ``"none"`` (``(B, T)``). The loss
        is computed in float32 even under autocast.
        """
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} > block_size {self.config.block_size}")
        pos = torch.arange(T, device=idx.device)  # (T,)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))  # (B, T, C) + (T, C) -> (B, T, C)
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))  # (B, T, vocab)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(
            logits.float().view(B * T, -1), targets.reshape(B * T), reduction="none"
        ).view(B, T)  # (B*T, vocab) x (B*T,) -> (B, T)
        if reduction == "mean":
            return logits, loss.mean()
        if reduction == "sequence":
            return logits, loss.mean(dim=1)  # (B,)
        if reduction == "none":
            return logits, loss
        raise ValueError(f"reduction: expected 'mean', 'sequence' or 'none', got {reduction!r}")


def build_model(preset: str = "tiny", **overrides) -> GPT:
    """A freshly initialised :class:`GPT` for a preset (seed torch first for reproducibility)."""
    return GPT(config_for(preset, **overrides))


def describe_presets(vocab_size: int = 257) -> dict[str, dict]:
    """Parameter counts (total and non-embedding) of each preset, for a vocabulary size."""
    out = {}
    for name in PRESETS:
        cfg = replace(config_for(name), vocab_size=vocab_size)
        with torch.device("meta"):
            m = GPT(cfg)
        out[name] = {
            "params": m.num_params(False),
            "non_embedding_params": m.num_params(True),
            "block_size": cfg.block_size,
            "lr": PRESETS[name]["lr"],
        }
    return out
