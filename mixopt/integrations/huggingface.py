"""A Hugging Face ``transformers.TrainerCallback`` that reports the run to a mixopt project and
follows an online session (``pip install 'mixopt[hf]'``).

Wiring::

    from mixopt.client import MixoptClient
    from mixopt.integrations import mixture_dataset
    from mixopt.integrations.huggingface import MixoptCallback

    train = mixture_dataset({"web": web_ds, "code": code_ds}, {"web": 0.5, "code": 0.5},
                            with_domain="domain")   # an IterableDataset: train by max_steps
    callback = MixoptCallback(MixoptClient(), project_id, sampler=train.sampler,
                              session_id=session_id, interval=10, model_params=n_params,
                              train_steps=200, tokens_per_step=batch * seq_len)
    trainer = Trainer(model, args, train_dataset=train,
                      eval_dataset={"web": web_val, "code": code_val}, callbacks=[callback])

* per-domain evaluation losses: give ``eval_dataset`` as a dict keyed by domain; the Trainer
  logs ``eval_<domain>_loss`` for each, which become the curve's ``val_loss/<domain>`` and the
  run's metrics;
* per-domain training losses (what ODM and DoReMi read): the Trainer computes the batch mean
  only, so a ``compute_loss`` that computes per-sequence losses hands them to
  ``callback.record_batch(inputs.pop("domain"), per_sequence_losses)`` (see
  ``examples/hf_trainer.py``; ``TrainingArguments(remove_unused_columns=False)`` keeps the
  ``domain`` the model does not take); without it the session gets the evaluation losses only;
* Aioli (which reads evaluation losses at the boundaries its plan names): give
  ``evaluate=`` a function returning the model's per-domain validation losses; the callback
  calls it where the plan asks and follows the sweeps (:class:`MixoptReporter`);
* the run ends ``succeeded`` in ``on_train_end``; a Trainer that raises never calls a callback,
  so wrap ``trainer.train()`` as ``with callback.guard(): trainer.train()`` to mark it
  ``failed`` with the error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from mixopt.integrations.reporter import MixoptReporter

_EVAL = re.compile(r"^eval_(?P<domain>.+)_loss$")


class _Callback:
    """Report the run (mixture, scale, per-domain eval losses, curve, final status) and,
    with ``session_id``, follow an online session every ``interval`` steps; the keyword
    arguments are :class:`~mixopt.integrations.reporter.MixoptReporter`'s."""

    def __init__(self, client: Any, project_id: int, **options: Any) -> None:
        self.reporter = MixoptReporter(client, project_id, **options)
        self._evals: dict[str, float] = {}
        self._eval_step = 0
        self.reporter.details.setdefault("trainer", "transformers")

    def record_batch(self, domains: Any, losses: Any) -> None:
        """Per-sequence training losses with their domains (tensors or lists)."""
        self.reporter.record_batch(_as_list(domains), _as_list(losses))

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Mark the run failed (with the error) when the training inside raises."""
        try:
            yield
        except BaseException as exc:
            self._flush()
            self.reporter.finish("failed", f"{type(exc).__name__}: {exc}")
            raise

    def _flush(self) -> None:
        if self._evals:
            self.reporter.evaluated(self._eval_step, self._evals)
            self._evals = {}

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.reporter.start()

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
        if logs and "loss" in logs:
            self.reporter.train_loss(float(logs["loss"]))

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any
    ) -> None:
        # one call per eval dataset of a dict: gathered into one curve point per step
        if state.global_step != self._eval_step:
            self._flush()
        self._eval_step = int(state.global_step)
        domains = set(self.reporter.mixture) | set(
            self.reporter.sampler.domains if self.reporter.sampler else ()
        )
        for key, value in (metrics or {}).items():
            m = _EVAL.match(key)
            if m and m["domain"] in domains:
                self._evals[m["domain"]] = float(value)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._flush()
        self.reporter.step_end(int(state.global_step) - 1)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._flush()
        if self.reporter.session_id is not None:
            self.reporter.report(int(state.global_step))
        self.reporter.finish("succeeded")


@cache
def _build() -> type:
    from mixopt.extras import require

    require("hf", "mixopt.integrations.huggingface")
    from transformers import TrainerCallback

    return type(
        "MixoptCallback",
        (_Callback, TrainerCallback),
        {"__module__": __name__, "__doc__": _Callback.__doc__},
    )


def _as_list(values: Any) -> list[Any]:
    if hasattr(values, "detach"):
        values = values.detach().cpu().tolist()
    return list(values)


def __getattr__(name: str) -> Any:
    if name == "MixoptCallback":
        return _build()
    raise AttributeError(name)
