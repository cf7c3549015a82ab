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
* following a session: OLMo-core builds its batches from a ``NumpyDataLoader`` of fixed
  per-source instances, which has no hook to change the mixture while it runs; give
  ``sampler`` when the data loader draws from a :class:`~mixopt.integrations.MixtureSampler`
  (a custom ``DataLoaderBase``), and the callback reports and applies the session's weights
  every ``interval`` steps (``post_step``); per-domain training losses go through
  ``callback.reporter.record_batch`` from the train module;
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


def __getattr__(name: str) -> Any:
    if name == "MixoptCallback":
        return _build()
    raise AttributeError(name)
