"""An external trainer steered by a mixopt online session.

It trains a small byte-level language model (a causal convolution + MLP, plain PyTorch, no
mixopt training code) on a few text domains, samples each batch from the session's current
weights, reports per-domain training losses (and, when the mixer asks, validation losses)
with the Python client, and polls the weights cheaply with ETags.

    mixopt serve &                                    # API + embedded worker (beat inside)
    export MIXOPT_TOKEN=$(cat ~/.mixopt/admin_token)
    python examples/external_trainer.py --project 1 --algorithm odm \
        --domain code=/usr/lib/python3.11/json --domain prose=docs/ --steps 300

Each ``--domain name=path`` reads the ``.txt``/``.py``/``.md`` files under ``path``. The
project must have these domains (the script creates the project when ``--project`` is 0).
Loss-based sample reweighting (Sow et al. 2025) is applied locally with ``--reweight``.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mixopt.client import MixoptClient
from mixopt.online.reweighting import sample_weights  # numpy; pip install "mixopt[science]"


def load_domain(path: str, limit: int = 2_000_000) -> np.ndarray:
    p = Path(path)
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.suffix in (".txt", ".py", ".md", ".rst"))
    data = b"".join(f.read_bytes() for f in files)[:limit]
    if len(data) < 10_000:
        raise SystemExit(f"{path}: need at least 10 kB of text, found {len(data)} bytes")
    return np.frombuffer(data, dtype=np.uint8)


class ByteLM(nn.Module):
    """Causal byte model: embedding -> two causal convolutions -> MLP -> next-byte logits."""

    def __init__(self, width: int = 128, kernel: int = 8):
        super().__init__()
        self.kernel = kernel
        self.emb = nn.Embedding(256, width)
        self.conv1 = nn.Conv1d(width, width, kernel)
        self.conv2 = nn.Conv1d(width, width, kernel)
        self.out = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, 256))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.emb(x).transpose(1, 2)                      # (B, W, T)
        h = F.gelu(self.conv1(F.pad(h, (self.kernel - 1, 0))))  # causal: pad on the left only
        h = F.gelu(self.conv2(F.pad(h, (self.kernel - 1, 0))))
        return self.out(h.transpose(1, 2))                   # (B, T, 256)


def batch(data: dict[str, np.ndarray], names: list[str], weights: np.ndarray, size: int, block: int,
          rng: np.random.Generator, split: str = "train") -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    counts = rng.multinomial(size, weights)
    xs, ys, dom = [], [], []
    for i, n in enumerate(counts):
        arr = data[names[i]]
        cut = int(len(arr) * 0.9)
        lo, hi = (0, cut) if split == "train" else (cut, len(arr))
        for start in rng.integers(lo, hi - block - 1, size=n):
            chunk = torch.from_numpy(arr[start:start + block + 1].astype(np.int64))
            xs.append(chunk[:-1])
            ys.append(chunk[1:])
            dom.append(i)
    return torch.stack(xs), torch.stack(ys), np.array(dom)


@torch.no_grad()
def evaluate(model: nn.Module, data: dict[str, np.ndarray], names: list[str], block: int) -> dict[str, float]:
    rng = np.random.default_rng(0)  # the same validation windows every time
    out = {}
    for i, name in enumerate(names):
        one_hot = np.eye(len(names))[i]
        x, y, _ = batch(data, names, one_hot, 16, block, rng, split="val")
        out[name] = float(F.cross_entropy(model(x).reshape(-1, 256), y.reshape(-1)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default=None)
    ap.add_argument("--token", default=None)
    ap.add_argument("--project", type=int, default=0)
    ap.add_argument("--session", type=int, default=0, help="an existing online session (else one is created)")
    ap.add_argument("--algorithm", default="odm", choices=["odm", "doremi", "aioli"])
    ap.add_argument("--params", default="{}", help="JSON hyper-parameters for the mixer")
    ap.add_argument("--domain", action="append", required=True, help="name=path (repeatable)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--block", type=int, default=64)
    ap.add_argument("--report-every", type=int, default=5)
    ap.add_argument("--reweight", action="store_true", help="loss-based sample reweighting (LinUpper)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import json

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    names = [d.split("=", 1)[0] for d in args.domain]
    data = {d.split("=", 1)[0]: load_domain(d.split("=", 1)[1]) for d in args.domain}
    c = MixoptClient(args.url, args.token)
    project = args.project or c.create_project("external-trainer", domains=names)["id"]
    session = args.session or c.create_online_session(
        project, args.algorithm, params=json.loads(args.params), schedule={"every_observations": args.report_every},
        seed=args.seed)["id"]

    model = ByteLM()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    current, etag = c.weights(project, session, step=0)
    plan = current["plan"]
    weights = np.array([plan["weights"][n] for n in names])
    trained_on = weights
    pending: list[dict] = []
    evaluated: set[int] = set()

    def refresh(step: int, force: bool = False) -> None:
        nonlocal plan, weights, etag
        fresh, etag = c.weights(project, session, step=step, etag=None if force else etag)
        if fresh is not None:
            plan = fresh["plan"]
            weights = np.array([plan["weights"][n] for n in names])

    t0 = time.perf_counter()
    for step in range(args.steps):
        if (plan.get("valid_until") is not None and step >= plan["valid_until"]) or step % args.report_every == 0:
            refresh(step, force=plan.get("valid_until") is not None)
        if plan.get("eval_at") == step and step not in evaluated:
            # Aioli's LearnParams: validation losses at each sweep boundary, reported at once
            evaluated.add(step)
            pending.append({"step": step, "eval_losses": evaluate(model, data, names, args.block),
                            "mixture": dict(zip(names, map(float, trained_on), strict=True))})
            c.report(project, session, pending)
            pending = []
            refresh(step, force=True)
        elif len(pending) >= args.report_every:
            c.report(project, session, pending)
            pending = []
        trained_on = weights  # the mixture of the steps since the last boundary
        x, y, dom = batch(data, names, weights, args.batch_size, args.block, rng)
        per_seq = F.cross_entropy(model(x).reshape(-1, 256), y.reshape(-1), reduction="none").view(len(x), -1).mean(1)
        if args.reweight:
            w = torch.as_tensor(sample_weights(per_seq.detach().numpy(), step=step, warmup_steps=50),
                                dtype=per_seq.dtype)
            loss = (w * per_seq).mean()
        else:
            loss = per_seq.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        per_domain = {names[i]: float(per_seq[dom == i].detach().mean()) for i in np.unique(dom)}
        if args.algorithm != "aioli":  # Aioli reads validation losses only (mixopt/online/PROTOCOL.md)
            pending.append({"step": step, "tokens": (step + 1) * args.batch_size * args.block,
                            "train_losses": per_domain,
                            "mixture": dict(zip(names, map(float, weights), strict=True))})
        if step % 50 == 0:
            print(f"step {step:5d} loss {float(loss):.3f} weights " +
                  " ".join(f"{n}={w:.3f}" for n, w in zip(names, weights, strict=True)), flush=True)
    if pending:
        c.report(project, session, pending)
    final = evaluate(model, data, names, args.block)
    print(f"done in {time.perf_counter() - t0:.1f} s; validation bits/byte: " +
          " ".join(f"{n}={v / math.log(2):.3f}" for n, v in final.items()))
    print(f"session {session}: {len(c.session_history(project, session)['weights'])} weight versions")


if __name__ == "__main__":
    main()
