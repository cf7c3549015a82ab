"""The trainer callbacks against a real server: an HF Trainer and a Lightning run of a tiny
model on CPU report their runs (curve, metrics, final status) and follow an online session's
weights; the OLMo-core callback's reporting path through OLMo-core's own Callback base."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from mixopt.client import MixoptClient

torch = pytest.importorskip("torch")
F = torch.nn.functional

DOMAINS = ["code", "docs", "mail"]
SESSION_WEIGHTS = {"code": 0.6, "docs": 0.3, "mail": 0.1}
SEQ, VOCAB = 32, 256


def _windows(path: Path, n: int, offset: int = 0) -> list[torch.Tensor]:
    files = [path] if path.is_file() else sorted(path.rglob("*.py"))
    data = b"".join(f.read_bytes() for f in files)[offset : offset + n * SEQ]
    t = torch.frombuffer(bytearray(data), dtype=torch.uint8).long()
    return list(t[: n * SEQ].view(n, SEQ))


def _domain_data(n: int, offset: int = 0) -> dict[str, list[dict[str, torch.Tensor]]]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    sources = {"code": stdlib / "json", "docs": stdlib / "pydoc_data", "mail": stdlib / "email"}
    return {
        d: [{"input_ids": w, "labels": w} for w in _windows(p, n, offset)]
        for d, p in sources.items()
    }


@pytest.fixture
def setup(live_server, admin_token):
    c = MixoptClient(live_server, admin_token)
    project = c.create_project("callbacks", domains=DOMAINS)
    session = c.create_online_session(
        project.id,
        "odm",
        initial_weights=SESSION_WEIGHTS,
        schedule={"every_seconds": 3600},
    )
    return c, project.id, session.id


def _check_run(c: MixoptClient, project_id: int, run_id: int, trainer: str, evals: list[int]):
    run = c.get_run(project_id, run_id)
    assert run.status == "succeeded"
    assert run.details["trainer"] == trainer
    assert set(run.metrics) == {f"val_loss/{d}" for d in DOMAINS}
    assert run.mixture == pytest.approx({d: 1 / 3 for d in DOMAINS})
    points = c.get_curve(project_id, run_id)["points"]
    assert [p["step"] for p in points] == evals
    assert all(set(p["metrics"]) >= {f"val_loss/{d}" for d in DOMAINS} for p in points)
    last = points[-1]["metrics"]
    assert {k: last[k] for k in run.metrics} == run.metrics
    return run, points


def _check_followed(
    reporter, sampler, c: MixoptClient, project_id: int, session_id: int, reports: int
):
    # the first poll switched the sampler from the run's uniform mixture to the session's
    assert sampler.segments[0]["weights"] == pytest.approx({d: 1 / 3 for d in DOMAINS})
    assert sum(sampler.segments[0]["counts"].values()) == 0  # before any draw
    assert reporter.applied[0]["weights"] == pytest.approx(SESSION_WEIGHTS)
    # every mixture the session answered became the sampler's, in order
    assert len(reporter.applied) >= 2 and len(sampler.segments) == len(reporter.applied) + 1
    for seg, answer in zip(sampler.segments[1:], reporter.applied, strict=True):
        assert seg["weights"] == pytest.approx(answer["weights"])
    # over all draws (>= 2,000), the realised shares are the session's within 2%
    counts = [seg["counts"] for seg in sampler.segments[1:]]
    n = sum(sum(cnt.values()) for cnt in counts)
    assert n >= 2000
    for d in DOMAINS:
        expected = (
            sum(
                seg["weights"][d] * sum(cnt.values())
                for seg, cnt in zip(sampler.segments[1:], counts, strict=True)
            )
            / n
        )
        realised = sum(cnt[d] for cnt in counts) / n
        assert abs(realised - expected) <= 0.02, (d, realised, expected)
    history = c.session_history(project_id, session_id)
    obs = history["observations"]
    # one report every `interval` steps, then the last evaluation's at the end
    assert [o["step"] for o in obs] == [*range(9, 10 * reports, 10), 10 * reports]
    assert all(set(o["train_losses"]) == set(DOMAINS) for o in obs[:-1])
    assert not obs[-1]["train_losses"] and set(obs[-1]["eval_losses"]) == set(DOMAINS)


def test_hf_trainer_reports_and_follows_a_session(setup, tmp_path):
    transformers = pytest.importorskip("transformers")
    from mixopt.integrations import mixture_dataset
    from mixopt.integrations.huggingface import MixoptCallback

    c, project_id, session_id = setup
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(vocab_size=VOCAB, n_positions=SEQ, n_embd=32, n_layer=1, n_head=2)
    )
    train = mixture_dataset(_domain_data(200), with_domain="domain", seed=0)
    steps, batch = 70, 32
    callback = MixoptCallback(
        c,
        project_id,
        sampler=train.sampler,
        session_id=session_id,
        interval=10,
        model_params=model.num_parameters(),
        train_steps=steps,
        tokens_per_step=batch * SEQ,
        on_error="raise",
    )

    class DomainLossTrainer(transformers.Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            domain = inputs.pop("domain", None)
            out = model(**inputs)
            if domain is not None:
                logits, labels = out.logits[:, :-1], inputs["labels"][:, 1:]
                per_token = F.cross_entropy(
                    logits.reshape(-1, VOCAB), labels.reshape(-1), reduction="none"
                )
                callback.record_batch(domain, per_token.view(len(labels), -1).mean(1))
            return (out.loss, out) if return_outputs else out.loss

    val = {d: items[:16] for d, items in _domain_data(16, offset=200 * SEQ).items()}
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=steps,
        per_device_train_batch_size=batch,
        per_device_eval_batch_size=16,
        learning_rate=3e-3,
        eval_strategy="steps",
        eval_steps=35,
        logging_steps=5,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,  # keeps the batches' "domain"
    )
    trainer = DomainLossTrainer(
        model=model, args=args, train_dataset=train, eval_dataset=val, callbacks=[callback]
    )
    with callback.guard():
        trainer.train()

    rep = callback.reporter
    run, points = _check_run(c, project_id, rep.run_id, "transformers", [35, 70])
    assert run.model_params == model.num_parameters() and run.train_steps == steps
    assert [p["tokens"] for p in points] == [35 * batch * SEQ, 70 * batch * SEQ]
    assert points[-1]["metrics"]["val_loss/code"] < points[0]["metrics"]["val_loss/code"] + 0.5
    assert "train_loss" in points[0]["metrics"]
    _check_followed(
        callback.reporter, train.sampler, c, project_id, session_id, reports=steps // 10
    )


def test_hf_trainer_follows_aiolis_sweeps(live_server, admin_token, tmp_path):
    """Aioli's LearnParams (mixopt/online/PROTOCOL.md): the callback evaluates where the plan
    asks (``eval_at``), reports at that boundary with the mixture the steps before it used (the
    server refuses a mixture off its schedule), and polls again where the plan ends."""
    transformers = pytest.importorskip("transformers")
    from mixopt.integrations import mixture_dataset
    from mixopt.integrations.huggingface import MixoptCallback

    c = MixoptClient(live_server, admin_token)
    project_id = c.create_project("aioli", domains=DOMAINS).id
    session_id = c.create_online_session(
        project_id, "aioli", params={"update_steps": 30, "lp_rounds": 1, "lp_steps": 4}
    ).id
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(vocab_size=VOCAB, n_positions=SEQ, n_embd=32, n_layer=1, n_head=2)
    )
    train = mixture_dataset(_domain_data(200), seed=0)
    val = {
        d: torch.stack([x["input_ids"] for x in v]) for d, v in _domain_data(8, 200 * SEQ).items()
    }

    def evaluate() -> dict[str, float]:
        with torch.no_grad():
            return {d: float(model(input_ids=x, labels=x).loss) for d, x in val.items()}

    callback = MixoptCallback(
        c,
        project_id,
        sampler=train.sampler,
        session_id=session_id,
        interval=1000,
        evaluate=evaluate,
        on_error="raise",
    )
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=70,
        per_device_train_batch_size=8,
        learning_rate=3e-3,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        logging_steps=1000,
    )
    transformers.Trainer(model=model, args=args, train_dataset=train, callbacks=[callback]).train()

    obs = c.session_history(project_id, session_id)["observations"]
    # two rounds (every 30 steps), each an evaluation before its K = 3 sweeps of 4 steps and
    # one after each sweep
    assert [o["step"] for o in obs] == [0, 4, 8, 12, 30, 34, 38, 42, 60, 64, 68]
    assert all(set(o["eval_losses"]) == set(DOMAINS) for o in obs)
    assert callback.reporter.reports == len(obs)
    sweeps = [a["weights"] for a in callback.reporter.applied if a["step"] in (0, 4, 8)]
    assert len(sweeps) == 3
    assert {max(w, key=w.get) for w in sweeps} == set(DOMAINS)  # one sweep favours each domain
    # each sweep's evaluation is a curve point of the run, the last one its metrics
    run = c.get_run(project_id, callback.reporter.run_id)
    points = c.get_curve(project_id, run.id)["points"]
    assert [p["step"] for p in points] == [o["step"] for o in obs]
    assert run.status == "succeeded" and run.metrics == points[-1]["metrics"]


def test_hf_guard_marks_a_crashed_run_failed(setup):
    pytest.importorskip("transformers")
    from mixopt.integrations.huggingface import MixoptCallback

    c, project_id, _ = setup
    callback = MixoptCallback(c, project_id, mixture={"code": 1.0}, on_error="raise")
    callback.reporter.start()
    with pytest.raises(RuntimeError), callback.guard():
        raise RuntimeError("out of memory")
    run = c.get_run(project_id, callback.reporter.run_id)
    assert run.status == "failed" and "RuntimeError: out of memory" in run.error


def test_lightning_reports_and_follows_a_session(setup, tmp_path):
    L = pytest.importorskip("lightning.pytorch")
    from torch.utils.data import DataLoader

    from mixopt.integrations import mixture_dataset
    from mixopt.integrations.lightning import MixoptCallback

    c, project_id, session_id = setup
    torch.manual_seed(0)

    class TinyLM(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(VOCAB, 32)
            self.out = torch.nn.Linear(32, VOCAB)

        def _per_sequence(self, batch):
            x = batch["input_ids"]
            logits = self.out(self.emb(x[:, :-1]))
            loss = F.cross_entropy(
                logits.reshape(-1, VOCAB), x[:, 1:].reshape(-1), reduction="none"
            )
            return loss.view(len(x), -1).mean(1)

        def training_step(self, batch, batch_idx):
            per_seq = self._per_sequence(batch)
            return {"loss": per_seq.mean(), "per_sample_loss": per_seq.detach()}

        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            loss = self._per_sequence(batch).mean()
            name = f"val_loss/{DOMAINS[dataloader_idx]}"
            self.log(name, loss, add_dataloader_idx=False)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=3e-3)

    train = mixture_dataset(_domain_data(200), with_domain="domain", seed=0)
    steps, batch = 70, 32
    callback = MixoptCallback(
        c,
        project_id,
        sampler=train.sampler,
        session_id=session_id,
        interval=10,
        model_params=sum(p.numel() for p in TinyLM().parameters()),
        train_steps=steps,
        tokens_per_step=batch * SEQ,
        on_error="raise",
    )
    val = [DataLoader(items, batch_size=16) for items in _domain_data(16, 200 * SEQ).values()]
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        val_check_interval=35,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=1,
        callbacks=[callback],
        default_root_dir=str(tmp_path),
    )
    trainer.fit(TinyLM(), DataLoader(train, batch_size=batch), val)

    run, points = _check_run(c, project_id, callback.reporter.run_id, "lightning", [35, 70])
    assert points[-1]["metrics"]["val_loss/code"] < points[0]["metrics"]["val_loss/code"]
    _check_followed(
        callback.reporter, train.sampler, c, project_id, session_id, reports=steps // 10
    )


def test_lightning_exception_marks_the_run_failed(setup, tmp_path):
    L = pytest.importorskip("lightning.pytorch")
    from torch.utils.data import DataLoader

    from mixopt.integrations.lightning import MixoptCallback

    c, project_id, _ = setup

    class Broken(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(1, 1)

        def training_step(self, batch, batch_idx):
            raise ValueError("diverged")

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    callback = MixoptCallback(c, project_id, mixture={"code": 0.5, "docs": 0.5}, on_error="raise")
    trainer = L.Trainer(
        max_steps=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
        default_root_dir=str(tmp_path),
    )
    with pytest.raises(ValueError, match="diverged"):
        trainer.fit(Broken(), DataLoader([torch.zeros(1)] * 4))
    run = c.get_run(project_id, callback.reporter.run_id)
    assert run.status == "failed" and "ValueError: diverged" in run.error


def test_olmo_core_trainer_reports_and_follows_a_session(setup, tmp_path):
    """A real OLMo-core ``Trainer`` (``BasicTrainModule``, a tiny byte model, CPU) trains from a
    :class:`MixtureDataLoader`; per-domain evaluation losses are recorded under the names
    OLMo-core's ``LMEvaluator`` gives them (``eval/lm/<domain>/CE loss``) by a small callback of
    the test: OLMo-core's own ``EvaluatorCallback`` needs a ``TransformerTrainModule`` (its
    Transformer models), which is not built here."""
    pytest.importorskip("olmo_core")
    from olmo_core.train import Duration, TrainerConfig
    from olmo_core.train.callbacks import Callback
    from olmo_core.train.train_module import BasicTrainModule

    from mixopt.integrations import MixtureSampler
    from mixopt.integrations.olmo_core import MixoptCallback, MixtureDataLoader

    c, project_id, session_id = setup
    torch.manual_seed(0)
    data = {d: [x["input_ids"] for x in items] for d, items in _domain_data(200).items()}
    val = {
        d: torch.stack([x["input_ids"] for x in items])
        for d, items in _domain_data(16, 200 * SEQ).items()
    }

    class TinyLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(VOCAB, 32)
            self.out = torch.nn.Linear(32, VOCAB)

        def forward(self, input_ids):
            return self.out(self.emb(input_ids))

    class TrainModule(BasicTrainModule):  # no FLOP count for a custom model
        def global_num_flops_in_batch(self, batch):
            return None

        def num_flops_per_token(self, seq_len):
            return None

    model = TinyLM()

    class PerDomainEval(Callback):
        def post_step(self):
            if self.step % 10 == 0:
                with torch.no_grad():
                    for d, x in val.items():
                        logits = model(x[:, :-1])
                        loss = F.cross_entropy(logits.reshape(-1, VOCAB), x[:, 1:].reshape(-1))
                        self.trainer.record_metric(f"eval/lm/{d}/CE loss", loss)

    batch = 32
    loader = MixtureDataLoader(
        data,
        sampler := MixtureSampler({d: len(v) for d, v in data.items()}),
        seq_len=SEQ,
        global_batch_size=batch * SEQ,
        work_dir=str(tmp_path / "work"),
    )
    callback = MixoptCallback(
        c,
        project_id,
        sampler=sampler,
        session_id=session_id,
        interval=10,
        model_params=sum(p.numel() for p in model.parameters()),
        train_steps=70,
        on_error="raise",
    )
    trainer = TrainerConfig(
        save_folder=str(tmp_path / "save"),
        max_duration=Duration.steps(70),
        metrics_collect_interval=1,
        no_checkpoints=True,
        device="cpu",
        callbacks={"eval": PerDomainEval(), "mixopt": callback},
    ).build(
        TrainModule(
            model, torch.optim.Adam(model.parameters(), lr=3e-3), rank_microbatch_size=batch * SEQ
        ),
        loader,
    )
    trainer.fit()

    run, points = _check_run(
        c, project_id, callback.reporter.run_id, "olmo-core", [10, 20, 30, 40, 50, 60, 70]
    )
    assert [p["tokens"] for p in points] == [s * batch * SEQ for s in range(10, 71, 10)]
    assert points[0]["metrics"]["train_loss"] > points[-1]["metrics"]["train_loss"]
    assert points[-1]["metrics"]["val_loss/code"] < points[0]["metrics"]["val_loss/code"]
    # no per-domain training losses from BasicTrainModule: the session gets the evaluations
    obs = c.session_history(project_id, session_id)["observations"]
    # (nothing to report at step 9: step 10's evaluation comes after it)
    assert [o["step"] for o in obs] == [*range(19, 70, 10), 70]
    assert all(not o["train_losses"] and set(o["eval_losses"]) == set(DOMAINS) for o in obs)
    assert callback.reporter.applied[0]["weights"] == pytest.approx(SESSION_WEIGHTS)
    assert sampler.segments[1]["weights"] == pytest.approx(SESSION_WEIGHTS)
    assert sum(sampler.segments[0]["counts"].values()) == 0


def test_missing_trainer_library_names_the_extra(monkeypatch):
    """Without the trainer library (``sys.modules[name] = None`` is how Python spells "not
    installed" to ``import`` and ``importlib.util.find_spec``) the modules still import, and the
    callback names the pip command (the CLI's exit code 3)."""
    import importlib
    import sys

    from mixopt.extras import MissingExtra

    for name, extra, library in (
        ("huggingface", "hf", "transformers"),
        ("lightning", "lightning", "lightning"),
    ):
        monkeypatch.setitem(sys.modules, library, None)
        module = importlib.import_module(f"mixopt.integrations.{name}")
        module._build.cache_clear()
        try:
            with pytest.raises(MissingExtra, match=rf"pip install 'mixopt\[{extra}\]'") as e:
                module.MixoptCallback  # noqa: B018 - building the class is what fails
            assert f"missing: {library}" in str(e.value)
        finally:
            module._build.cache_clear()
    monkeypatch.setitem(sys.modules, "olmo_core.train.callbacks", None)
    from mixopt.integrations import olmo_core

    olmo_core._build.cache_clear()
    try:
        with pytest.raises(MissingExtra, match="pip install 'ai2-olmo-core"):
            olmo_core.MixoptCallback  # noqa: B018
    finally:
        olmo_core._build.cache_clear()
