"""A Hugging Face ``Trainer`` run reported to mixopt and steered by an online session.

A tiny GPT-2 (one layer, byte vocabulary) trains on CPU on local text domains drawn through
``mixopt.integrations.mixture_dataset``; ``MixoptCallback`` creates the run (mixture, scale),
sends each evaluation's per-domain losses as a curve point, reports per-domain training
losses to the online session every ``--interval`` steps and applies its weights to the
sampler; the run ends ``succeeded`` with the last losses as its metrics.

    pip install 'mixopt[hf]'
    mixopt serve &
    export MIXOPT_TOKEN=$(cat ~/.mixopt/admin_token)
    python examples/hf_trainer.py --steps 60            # ~10 s on a laptop CPU

``--domain name=path`` (repeatable) reads the ``.py``/``.txt``/``.md`` files under ``path``
(default: three folders of Python's standard library). ``--project 0`` creates a project;
``--no-session`` only reports the run.
"""

from __future__ import annotations

import argparse
import sysconfig
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers

from mixopt.client import MixoptClient
from mixopt.integrations import mixture_dataset
from mixopt.integrations.huggingface import MixoptCallback

SEQ = 64
STDLIB = Path(sysconfig.get_paths()["stdlib"])
DEFAULT_DOMAINS = [f"code={STDLIB / 'json'}", f"docs={STDLIB / 'pydoc_data'}", f"mail={STDLIB / 'email'}"]


def windows(path: str, start: int, count: int) -> list[dict[str, torch.Tensor]]:
    """``count`` windows of ``SEQ`` bytes from the files under ``path``, from window ``start``."""
    p = Path(path)
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.suffix in (".py", ".txt", ".md"))
    data = b"".join(f.read_bytes() for f in files)[start * SEQ : (start + count) * SEQ]
    if len(data) < count * SEQ:
        raise SystemExit(f"{path}: need {(start + count) * SEQ} bytes of text")
    ids = torch.frombuffer(bytearray(data), dtype=torch.uint8).long().view(count, SEQ)
    return [{"input_ids": x, "labels": x} for x in ids]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default=None, help="default MIXOPT_URL or http://127.0.0.1:8000")
    ap.add_argument("--token", default=None, help="default MIXOPT_TOKEN")
    ap.add_argument("--project", type=int, default=0)
    ap.add_argument("--session", type=int, default=0, help="an online session (0: create one)")
    ap.add_argument("--no-session", action="store_true", help="report the run only")
    ap.add_argument("--domain", action="append", help="name=path (repeatable)")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--interval", type=int, default=10)
    args = ap.parse_args()

    domains = dict(d.split("=", 1) for d in (args.domain or DEFAULT_DOMAINS))
    names = list(domains)
    c = MixoptClient(args.url, args.token)
    project = args.project or c.create_project("hf-trainer-example", domains=names).id
    session = None
    if not args.no_session:
        session = args.session or c.create_online_session(project, "odm", schedule={"every_observations": 5}).id

    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(vocab_size=256, n_positions=SEQ, n_embd=64, n_layer=1, n_head=2)
    )
    train = mixture_dataset({n: windows(p, 0, 400) for n, p in domains.items()}, with_domain="domain")
    val = {n: windows(p, 400, 16) for n, p in domains.items()}
    callback = MixoptCallback(
        c, project, sampler=train.sampler, session_id=session, interval=args.interval,
        model_params=model.num_parameters(), train_steps=args.steps,
        tokens_per_step=args.batch_size * SEQ, name="hf-trainer-example",
    )

    class DomainLossTrainer(transformers.Trainer):
        """Per-sequence losses with their domains for the session (ODM reads them)."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            domain = inputs.pop("domain", None)
            out = model(**inputs)
            if domain is not None:
                logits, labels = out.logits[:, :-1], inputs["labels"][:, 1:]
                per_token = F.cross_entropy(logits.reshape(-1, 256), labels.reshape(-1), reduction="none")
                callback.record_batch(domain, per_token.view(len(labels), -1).mean(1))
            return (out.loss, out) if return_outputs else out.loss

    trainer = DomainLossTrainer(
        model=model,
        args=transformers.TrainingArguments(
            output_dir="/tmp/mixopt-hf-example", max_steps=args.steps,
            per_device_train_batch_size=args.batch_size, learning_rate=3e-3,
            eval_strategy="steps", eval_steps=max(1, args.steps // 3), logging_steps=10,
            save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
            remove_unused_columns=False,  # keep the batches' "domain"
        ),
        train_dataset=train,
        eval_dataset=val,  # a dict: the Trainer logs eval_<domain>_loss for each
        callbacks=[callback],
    )
    with callback.guard():  # a crash marks the run failed
        trainer.train()
    run = c.get_run(project, callback.reporter.run_id)
    print(f"run {run.id} {run.status}: " + ", ".join(f"{k}={v:.3f}" for k, v in run.metrics.items()))
    if session is not None:
        print(f"session {session}: {callback.reporter.reports} reports, weights now "
              + ", ".join(f"{k}={v:.3f}" for k, v in train.sampler.weights.items()))


if __name__ == "__main__":
    main()
