"""A PyTorch Lightning ``Callback`` that reports the run to a mixopt project and follows an
online session (``pip install 'mixopt[lightning]'``).

Wiring::

    from mixopt.integrations import mixture_dataset
    from mixopt.integrations.lightning import MixoptCallback

    train = mixture_dataset(per_domain_datasets, weights, with_domain="domain")
    callback = MixoptCallback(MixoptClient(), project_id, sampler=train.sampler,
                              session_id=session_id, interval=10, train_steps=200)
    trainer = L.Trainer(max_steps=200, callbacks=[callback], val_check_interval=50)
    trainer.fit(module, DataLoader(train, batch_size=8), val_loaders)

* per-domain evaluation losses: log them in ``validation_step`` as ``val_loss/<domain>``
  (``self.log(f"val_loss/{name}", loss)``, e.g. one validation dataloader per domain); the
  callback reads ``trainer.callback_metrics`` after each validation (``metric`` changes the
  name pattern);
* per-domain training losses (ODM, DoReMi): return ``{"loss": loss, "per_sample_loss":
  per_sequence.detach()}`` from ``training_step`` with batches that carry ``"domain"``
  (``with_domain="domain"``); the callback records them after every batch;
* Aioli (which reads evaluation losses at the boundaries its plan names): give
  ``evaluate=`` a function returning the model's per-domain validation losses; the callback
  calls it where the plan asks and follows the sweeps (:class:`MixoptReporter`);
* the run ends ``succeeded`` at the end of ``fit``, ``failed`` (with the error) when it raises.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from mixopt.integrations.huggingface import _as_list
from mixopt.integrations.reporter import MixoptReporter


class _Callback:
    """Report the run and follow an online session; the keyword arguments are
    :class:`~mixopt.integrations.reporter.MixoptReporter`'s, plus ``metric`` (the logged
    name of a domain's validation loss, ``{domain}`` in it), ``domain_key`` and
    ``loss_key`` (where the batch and ``training_step``'s output hold them)."""

    def __init__(
        self,
        client: Any,
        project_id: int,
        *,
        metric: str = "val_loss/{domain}",
        domain_key: str = "domain",
        loss_key: str = "per_sample_loss",
        **options: Any,
    ) -> None:
        if "{domain}" not in metric:
            raise ValueError("metric: must contain {domain}")
        self.reporter = MixoptReporter(client, project_id, **options)
        self.reporter.details.setdefault("trainer", "lightning")
        head, tail = metric.split("{domain}", 1)
        self._metric = re.compile(f"^{re.escape(head)}(?P<domain>.+){re.escape(tail)}$")
        self.domain_key = domain_key
        self.loss_key = loss_key
        self._last_step = 0

    def record_batch(self, domains: Any, losses: Any) -> None:
        self.reporter.record_batch(_as_list(domains), _as_list(losses))

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        # before the fit loop fetches its first batch (it fetches one ahead), after a
        # checkpoint's callback state is restored
        self._last_step = int(trainer.global_step)
        self.reporter.start()

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if isinstance(outputs, dict):
            if "loss" in outputs:
                self.reporter.train_loss(float(outputs["loss"]))
            per_sample = outputs.get(self.loss_key)
            if per_sample is not None and isinstance(batch, dict) and self.domain_key in batch:
                self.record_batch(batch[self.domain_key], per_sample)
        step = int(trainer.global_step)
        if step != self._last_step:  # an optimiser step was taken (not an accumulation)
            self._last_step = step
            self.reporter.step_end(step - 1)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        losses = {}
        for key, value in trainer.callback_metrics.items():
            m = self._metric.match(key)
            if m:
                losses[m["domain"]] = float(value)
        self.reporter.evaluated(int(trainer.global_step), losses)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self.reporter.session_id is not None:
            self.reporter.report(int(trainer.global_step))
        self.reporter.finish("succeeded")

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        status = "cancelled" if isinstance(exception, KeyboardInterrupt) else "failed"
        self.reporter.finish(status, f"{type(exception).__name__}: {exception}")

    def state_dict(self) -> dict[str, Any]:
        sampler = self.reporter.sampler
        return {"run_id": self.reporter.run_id} | (
            {"sampler": sampler.state_dict()} if sampler is not None else {}
        )

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.reporter.run_id = state_dict.get("run_id", self.reporter.run_id)
        if "sampler" in state_dict and self.reporter.sampler is not None:
            self.reporter.sampler.load_state_dict(state_dict["sampler"])


@cache
def _build() -> type:
    from mixopt.extras import require

    require("lightning", "mixopt.integrations.lightning")
    from lightning.pytorch import Callback

    return type(
        "MixoptCallback",
        (_Callback, Callback),
        {"__module__": __name__, "__doc__": _Callback.__doc__},
    )


def __getattr__(name: str) -> Any:
    if name == "MixoptCallback":
        return _build()
    raise AttributeError(name)
