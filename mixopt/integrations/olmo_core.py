"""An OLMo-core trainer ``Callback`` (``olmo_core.train.callbacks.Callback``, ai2-olmo-core 3)
that reports the run to a mixopt project and follows an online session.

Wiring::

    from mixopt.integrations.olmo_core import MixoptCallback

    callback = MixoptCallback(MixoptClient(), project_id, mixture=ratios,
                              model_params=model.num_params, train_tokens=max_tokens)
    trainer_config = trainer_config.with_callback("mixopt", callback)   # or callbacks={...}

* per-domain evaluation losses: an ``LMEvaluatorCallbackConfig`` with one label per domain
  records ``eval/<evaluator>/<domain>/CE loss``; the callback reads those in ``log_metrics``
  (``metric`` is the regular expression, its group ``domain``), and ``train/CE loss`` as the
  curve's ``train_loss``;
* tokens: the trainer's ``global_train_tokens_seen``;
* following a session: OLMo-core's ``NumpyDataLoader`` builds batches from fixed
  per-source instances and has no hook to change the mixture while it runs; train from a
  :class:`MixtureDataLoader` instead (a ``DataLoaderBase`` over per-domain token sequences,
  drawing from a :class:`~mixopt.integrations.MixtureSampler`), give the callback its
  ``sampler`` and ``session_id``, and every ``interval`` steps (``post_step``) it reports and
  applies the session's weights; the loader's batches carry ``"domain"`` for per-domain
  training losses (``callback.reporter.record_batch`` from a train module that computes
  them);
* Aioli (which reads evaluation losses at the boundaries its plan names): give
  ``evaluate=`` a function returning the model's per-domain validation losses; the callback
  calls it where the plan asks and follows the sweeps (:class:`MixoptReporter`);
* the run ends ``succeeded`` in ``post_train``, ``failed`` in ``on_error``.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from mixopt.integrations.reporter import MixoptReporter

EVAL_METRIC = r"^eval/[^/]+/(?P<domain>.+)/CE loss$"
TRAIN_METRIC = "train/CE loss"


class _Callback:
    """Report the run and follow an online session from an OLMo-core ``Trainer``; the
    keyword arguments are :class:`~mixopt.integrations.reporter.MixoptReporter`'s plus
    ``metric`` (the eval metrics' regular expression)."""

    priority = -10  # after the evaluators have recorded their metrics
    #: from OLMo-core's ``Callback`` (the trainer, its ``global_step``)
    trainer: Any
    step: int

    def __init__(
        self, client: Any, project_id: int, *, metric: str = EVAL_METRIC, **options: Any
    ) -> None:
        self.reporter = MixoptReporter(client, project_id, **options)
        self.reporter.details.setdefault("trainer", "olmo-core")
        self.metric = re.compile(metric)
        if "domain" not in self.metric.groupindex:
            raise ValueError("metric: needs a group named 'domain'")

    def _tokens(self) -> int | None:
        seen = getattr(self.trainer, "global_train_tokens_seen", None)
        return None if seen is None else int(seen)

    def pre_train(self) -> None:
        self.reporter.start()

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        losses: dict[str, float] = {}
        for key, value in metrics.items():
            if key == TRAIN_METRIC:
                self.reporter.train_loss(float(value))
                continue
            m = self.metric.match(key)
            if m:
                losses[m["domain"]] = float(value)
        if losses:
            self.reporter.evaluated(int(step), losses, tokens=self._tokens())

    def post_step(self) -> None:
        self.reporter.step_end(int(self.step) - 1, tokens=self._tokens())

    def post_train(self) -> None:
        if self.reporter.session_id is not None:
            self.reporter.report(int(self.step), tokens=self._tokens())
        self.reporter.finish("succeeded")

    def on_error(self, exc: BaseException) -> None:
        self.reporter.finish("failed", f"{type(exc).__name__}: {exc}")

    def state_dict(self) -> dict[str, Any]:
        return {"run_id": self.reporter.run_id}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("run_id") is not None:
            self.reporter.run_id = int(state_dict["run_id"])


@cache
def _build() -> type:
    from mixopt.extras import MissingExtra

    try:
        from olmo_core.train.callbacks import Callback
    except ImportError:
        raise MissingExtra(
            "mixopt.integrations.olmo_core needs OLMo-core: pip install 'ai2-olmo-core>=3,<4'"
        ) from None

    return type(
        "MixoptCallback",
        (_Callback, Callback),
        {"__module__": __name__, "__doc__": _Callback.__doc__},
    )


class _Loader:
    """Batches of ``{"input_ids": (B, seq_len), "domain": (B,)}`` drawn by a
    :class:`~mixopt.integrations.MixtureSampler` from per-domain sequences of token ids
    (each item a 1-D tensor or array of ``seq_len`` ids); ``global_batch_size`` is in tokens,
    as for OLMo-core's own loaders; ``total_batches`` per epoch (None: endless, train by
    ``Duration.steps``)."""

    def __init__(
        self,
        datasets: Any,
        sampler: Any,
        *,
        seq_len: int,
        global_batch_size: int,
        work_dir: str,
        total_batches: int | None = None,
        with_domain: bool = True,
    ) -> None:
        super().__init__(work_dir=work_dir, global_batch_size=global_batch_size)  # type: ignore[call-arg]
        if list(datasets) != sampler.domains:
            raise ValueError(f"datasets: domains {list(datasets)} differ from the sampler's")
        if global_batch_size % seq_len:
            raise ValueError("global_batch_size: a multiple of seq_len (it counts tokens)")
        self.datasets = dict(datasets)
        self.sampler = sampler
        self.seq_len = int(seq_len)
        self._total = total_batches
        self.with_domain = with_domain

    @property
    def total_batches(self) -> int | None:
        return self._total

    def reshuffle(self, epoch: int | None = None, **kwargs: Any) -> None:
        self._epoch = 1 if epoch is None else epoch  # type: ignore[attr-defined]

    def state_dict(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict(), "batches": self.batches_processed}  # type: ignore[attr-defined]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state_dict["sampler"])
        self.batches_processed = int(state_dict["batches"])

    def _batch(self, n: int) -> dict[str, Any]:
        import torch

        rows, ids = [], []
        for _ in range(n):
            domain, index = self.sampler.next_index()
            item = self.datasets[domain][index - self.sampler.offsets[domain]]
            rows.append(torch.as_tensor(item, dtype=torch.long)[: self.seq_len])
            ids.append(self.sampler.domains.index(domain))
        batch = {"input_ids": torch.stack(rows)}
        if self.with_domain:
            batch["domain"] = torch.tensor(ids)
        return batch

    def _iter_batches(self) -> Any:
        n = self.rank_batch_size // self.seq_len  # type: ignore[attr-defined]
        done = self.batches_processed  # type: ignore[attr-defined]
        while self._total is None or done < self._total:
            done += 1
            yield self._batch(n)

    def global_num_tokens_in_batch(self, batch: dict[str, Any]) -> int:
        return int(self.global_batch_size)  # type: ignore[attr-defined]

    def get_mock_batch(self) -> dict[str, Any]:
        import torch

        return {"input_ids": torch.zeros((1, self.seq_len), dtype=torch.long)}


@cache
def _build_loader() -> type:
    _build()  # the same message when OLMo-core is missing
    from olmo_core.data.data_loader import DataLoaderBase

    return type(
        "MixtureDataLoader",
        (_Loader, DataLoaderBase),
        {"__module__": __name__, "__doc__": _Loader.__doc__},
    )


def __getattr__(name: str) -> Any:
    if name == "MixoptCallback":
        return _build()
    if name == "MixtureDataLoader":
        return _build_loader()
    raise AttributeError(name)
