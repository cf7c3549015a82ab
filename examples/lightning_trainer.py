"""A PyTorch Lightning run reported to mixopt and steered by an online session.

A tiny byte-level language model (embedding, causal convolution, linear head) trains on CPU on
local text domains drawn through ``mixopt.integrations.mixture_dataset``. ``training_step``
returns the per-sequence losses with the batch's ``"domain"``, ``validation_step`` logs
``val_loss/<domain>`` (one validation loader per domain), and ``MixoptCallback`` does the rest:
the run with its curve and final metrics, the session's reports and weights.

    pip install 'mixopt[lightning]'
    mixopt serve &
    export MIXOPT_TOKEN=$(cat ~/.mixopt/admin_token)
    python examples/lightning_trainer.py --steps 60     # ~10 s on a laptop CPU

Options as in ``examples/hf_trainer.py``.
"""

from __future__ import annotations

import argparse
import sysconfig
from pathlib import Path

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from mixopt.client import MixoptClient
from mixopt.integrations import mixture_dataset
from mixopt.integrations.lightning import MixoptCallback

SEQ = 64
STDLIB = Path(sysconfig.get_paths()["stdlib"])
DEFAULT_DOMAINS = [f"code={STDLIB / 'json'}", f"docs={STDLIB / 'pydoc_data'}", f"mail={STDLIB / 'email'}"]


def windows(path: str, start: int, count: int) -> list[dict[str, torch.Tensor]]:
    p = Path(path)
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.suffix in (".py", ".txt", ".md"))
    data = b"".join(f.read_bytes() for f in files)[start * SEQ : (start + count) * SEQ]
    if len(data) < count * SEQ:
        raise SystemExit(f"{path}: need {(start + count) * SEQ} bytes of text")
    ids = torch.frombuffer(bytearray(data), dtype=torch.uint8).long().view(count, SEQ)
    return [{"input_ids": x} for x in ids]


class ByteLM(L.LightningModule):
    def __init__(self, names: list[str], width: int = 64, kernel: int = 4):
        super().__init__()
        self.names = names
        self.kernel = kernel
        self.emb = torch.nn.Embedding(256, width)
        self.conv = torch.nn.Conv1d(width, width, kernel)
        self.head = torch.nn.Linear(width, 256)

    def per_sequence_loss(self, x: torch.Tensor) -> torch.Tensor:
        h = self.emb(x[:, :-1]).transpose(1, 2)
        h = F.gelu(self.conv(F.pad(h, (self.kernel - 1, 0)))).transpose(1, 2)  # causal
        logits = self.head(h)
        loss = F.cross_entropy(logits.reshape(-1, 256), x[:, 1:].reshape(-1), reduction="none")
        return loss.view(len(x), -1).mean(1)

    def training_step(self, batch, batch_idx):
        per_seq = self.per_sequence_loss(batch["input_ids"])
        # the callback reads "per_sample_loss" with the batch's "domain" (ODM, DoReMi)
        return {"loss": per_seq.mean(), "per_sample_loss": per_seq.detach()}

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        loss = self.per_sequence_loss(batch["input_ids"]).mean()
        self.log(f"val_loss/{self.names[dataloader_idx]}", loss, add_dataloader_idx=False)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=3e-3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default=None)
    ap.add_argument("--token", default=None)
    ap.add_argument("--project", type=int, default=0)
    ap.add_argument("--session", type=int, default=0)
    ap.add_argument("--no-session", action="store_true")
    ap.add_argument("--domain", action="append", help="name=path (repeatable)")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--interval", type=int, default=10)
    args = ap.parse_args()

    domains = dict(d.split("=", 1) for d in (args.domain or DEFAULT_DOMAINS))
    names = list(domains)
    c = MixoptClient(args.url, args.token)
    project = args.project or c.create_project("lightning-example", domains=names).id
    session = None
    if not args.no_session:
        session = args.session or c.create_online_session(project, "odm", schedule={"every_observations": 5}).id

    torch.manual_seed(0)
    module = ByteLM(names)
    train = mixture_dataset({n: windows(p, 0, 400) for n, p in domains.items()}, with_domain="domain")
    val = [DataLoader(windows(p, 400, 16), batch_size=16) for p in domains.values()]
    callback = MixoptCallback(
        c, project, sampler=train.sampler, session_id=session, interval=args.interval,
        model_params=sum(p.numel() for p in module.parameters()), train_steps=args.steps,
        tokens_per_step=args.batch_size * SEQ, name="lightning-example",
    )
    trainer = L.Trainer(
        max_steps=args.steps, accelerator="cpu", devices=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        val_check_interval=max(1, args.steps // 3), check_val_every_n_epoch=None,
        callbacks=[callback],
    )
    trainer.fit(module, DataLoader(train, batch_size=args.batch_size), val)
    run = c.get_run(project, callback.reporter.run_id)
    print(f"run {run.id} {run.status}: " + ", ".join(f"{k}={v:.3f}" for k, v in run.metrics.items()))
    if session is not None:
        print(f"session {session}: {callback.reporter.reports} reports, weights now "
              + ", ".join(f"{k}={v:.3f}" for k, v in train.sampler.weights.items()))


if __name__ == "__main__":
    main()
