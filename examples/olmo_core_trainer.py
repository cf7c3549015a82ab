"""An OLMo-core ``Trainer`` run reported to mixopt and steered by an online session.

A real ``olmo_core.train.Trainer`` (``BasicTrainModule``, a tiny byte-level model, CPU) trains
from ``mixopt.integrations.olmo_core.MixtureDataLoader``, a ``DataLoaderBase`` drawing each
sequence's domain from a ``MixtureSampler``; a small callback records per-domain validation
losses under the names OLMo-core's ``LMEvaluator`` gives them (``eval/lm/<domain>/CE loss``:
with a ``TransformerTrainModule``, use OLMo-core's ``LMEvaluatorCallbackConfig`` instead), and
``MixoptCallback`` reports the run and follows the session.

    pip install 'ai2-olmo-core>=3,<4'
    mixopt serve &
    export MIXOPT_TOKEN=$(cat ~/.mixopt/admin_token)
    python examples/olmo_core_trainer.py --steps 60     # ~10 s on a laptop CPU

Options as in ``examples/hf_trainer.py``.
"""

from __future__ import annotations

import argparse
import sysconfig
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from olmo_core.train import Duration, TrainerConfig
from olmo_core.train.callbacks import Callback
from olmo_core.train.train_module import BasicTrainModule

from mixopt.client import MixoptClient
from mixopt.integrations import MixtureSampler
from mixopt.integrations.olmo_core import MixoptCallback, MixtureDataLoader

SEQ = 64
STDLIB = Path(sysconfig.get_paths()["stdlib"])
DEFAULT_DOMAINS = [f"code={STDLIB / 'json'}", f"docs={STDLIB / 'pydoc_data'}", f"mail={STDLIB / 'email'}"]


def windows(path: str, start: int, count: int) -> torch.Tensor:
    p = Path(path)
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.suffix in (".py", ".txt", ".md"))
    data = b"".join(f.read_bytes() for f in files)[start * SEQ : (start + count) * SEQ]
    if len(data) < count * SEQ:
        raise SystemExit(f"{path}: need {(start + count) * SEQ} bytes of text")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).long().view(count, SEQ)


class ByteLM(torch.nn.Module):
    def __init__(self, width: int = 64):
        super().__init__()
        self.emb = torch.nn.Embedding(256, width)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(width, 2 * width), torch.nn.GELU(), torch.nn.Linear(2 * width, 256))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.emb(input_ids))


class TrainModule(BasicTrainModule):
    """BasicTrainModule, plus the per-domain training losses the session's mixer (ODM) reads:
    the batch's per-sequence losses with its ``"domain"`` go to ``callback.record_batch``."""

    record_batch = None

    def train_batch(self, batch, dry_run=False):
        domain = batch.pop("domain", None)
        if domain is not None and not dry_run and self.record_batch is not None:
            x = batch["input_ids"]
            with torch.no_grad():  # a second, cheap forward pass: the model is tiny
                logits = self.model(x[:, :-1])
                loss = F.cross_entropy(logits.reshape(-1, 256), x[:, 1:].reshape(-1), reduction="none")
            self.record_batch(domain.tolist(), loss.view(len(x), -1).mean(1).tolist())
        return super().train_batch(batch, dry_run)

    def global_num_flops_in_batch(self, batch):  # no FLOP count for a custom model
        return None

    def num_flops_per_token(self, seq_len):
        return None


class PerDomainEval(Callback):
    """Validation loss per domain every ``every`` steps, named as OLMo-core's LMEvaluator does."""

    def __init__(self, model: torch.nn.Module, val: dict[str, torch.Tensor], every: int):
        self.model, self.val, self.every = model, val, every

    def post_step(self) -> None:
        if self.step % self.every:
            return
        with torch.no_grad():
            for name, x in self.val.items():
                loss = F.cross_entropy(self.model(x[:, :-1]).reshape(-1, 256), x[:, 1:].reshape(-1))
                self.trainer.record_metric(f"eval/lm/{name}/CE loss", loss)


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
    project = args.project or c.create_project("olmo-core-example", domains=names).id
    session = None
    if not args.no_session:
        session = args.session or c.create_online_session(project, "odm", schedule={"every_observations": 5}).id

    torch.manual_seed(0)
    model = ByteLM()
    data = {n: list(windows(p, 0, 400)) for n, p in domains.items()}
    val = {n: windows(p, 400, 16) for n, p in domains.items()}
    sampler = MixtureSampler({n: len(v) for n, v in data.items()})
    work = tempfile.mkdtemp(prefix="mixopt-olmo-example-")
    loader = MixtureDataLoader(data, sampler, seq_len=SEQ, global_batch_size=args.batch_size * SEQ, work_dir=work)
    callback = MixoptCallback(
        c, project, sampler=sampler, session_id=session, interval=args.interval,
        model_params=sum(p.numel() for p in model.parameters()), train_steps=args.steps,
        name="olmo-core-example",
    )
    train_module = TrainModule(model, torch.optim.Adam(model.parameters(), lr=3e-3), rank_microbatch_size=args.batch_size * SEQ)
    train_module.record_batch = callback.reporter.record_batch
    trainer = TrainerConfig(
        save_folder=work, max_duration=Duration.steps(args.steps), metrics_collect_interval=1,
        no_checkpoints=True, device="cpu",
        callbacks={"eval": PerDomainEval(model, val, max(1, args.steps // 3)), "mixopt": callback},
    ).build(train_module, loader)
    trainer.fit()
    run = c.get_run(project, callback.reporter.run_id)
    print(f"run {run.id} {run.status}: " + ", ".join(f"{k}={v:.3f}" for k, v in run.metrics.items()))
    if session is not None:
        print(f"session {session}: {callback.reporter.reports} reports, weights now "
              + ", ".join(f"{k}={v:.3f}" for k, v in sampler.weights.items()))


if __name__ == "__main__":
    main()
