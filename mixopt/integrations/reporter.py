"""What every trainer callback does, whatever the trainer: report the run to a project and
follow an online session.

:class:`MixoptReporter` is driven by the trainer-specific callbacks
(:mod:`mixopt.integrations.huggingface`, ``.lightning``, ``.olmo_core``):

* ``start()``: creates the run (``POST /v1/projects/{id}/runs``, status ``running``) with its
  mixture, scale (``model_params``, ``train_tokens``, ``train_steps``), name, tags and
  ``details`` (the trainer, the online session);
* ``evaluated(step, losses)``: per-domain evaluation losses at a step; each becomes a point of
  the run's loss curve (``val_loss/<domain>``, the metric names of the project's own trainer,
  plus ``train_loss`` when known) and the last ones are the run's metrics;
* ``record_batch(domains, losses)``: per-sequence training losses of a batch with the domain
  of each sequence (what ODM and DoReMi read); ``step_end(step)`` every optimiser step: every
  ``interval`` steps the mean per-domain training losses since the last report (and the
  evaluation losses since then, which Aioli reads) go to the online session as one
  observation (``mixopt/online/PROTOCOL.md``), then the weights for the next step are polled
  (with an ETag) and applied to the :class:`~mixopt.integrations.sampling.MixtureSampler`;
  the weights are polled again where the plan ends (``valid_until``), and where it asks for
  validation losses (``eval_at``: Aioli's LearnParams sweeps) ``evaluate()`` is called and its
  losses reported at that boundary before the next weights are asked for;
* ``finish(status, error)``: the run's final status and metrics.

A failure to reach the service is logged and training goes on (``on_error="warn"``, the
default: a lost report must not kill a long run); ``on_error="raise"`` raises it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from mixopt.integrations.sampling import MixtureSampler

log = logging.getLogger("mixopt.integrations")

#: the metric name of a domain's evaluation loss (as ``workers/tasks/training.py`` names it)
METRIC = "val_loss/{domain}"


class MixoptReporter:
    """Report one training run to a mixopt project, and follow an online session.

    Parameters
    ----------
    client : mixopt.client.MixoptClient
    project_id : the project the run belongs to
    mixture : the run's mixture (default: the sampler's starting weights)
    sampler : the :class:`MixtureSampler` the trainer draws from (needed to follow a session)
    session_id : an online session to follow (None: report the run only)
    interval : optimiser steps between reports to the session (and polls of its weights)
    model_params, train_tokens, train_steps : the run's scale
    tokens_per_step : tokens of one optimiser step, for the curve's ``tokens`` column
    name, tags, details : labels of the run
    run_id : report into an existing (e.g. planned) run instead of creating one
    evaluate : per-domain validation losses of the current model, on demand: called where the
        session's plan asks for them (Aioli's LearnParams sweeps, ``eval_at``)
    on_error : "warn" (log, go on) or "raise"
    """

    def __init__(
        self,
        client: Any,
        project_id: int,
        *,
        mixture: Mapping[str, float] | None = None,
        sampler: MixtureSampler | None = None,
        session_id: int | None = None,
        interval: int = 10,
        model_params: int | None = None,
        train_tokens: int | None = None,
        train_steps: int | None = None,
        tokens_per_step: int | None = None,
        name: str | None = None,
        tags: Sequence[str] = (),
        details: Mapping[str, Any] | None = None,
        run_id: int | None = None,
        evaluate: Callable[[], Mapping[str, float]] | None = None,
        on_error: str = "warn",
    ) -> None:
        if on_error not in ("warn", "raise"):
            raise ValueError("on_error: 'warn' or 'raise'")
        if session_id is not None and sampler is None:
            raise ValueError("sampler: following an online session needs the MixtureSampler")
        if interval < 1:
            raise ValueError("interval: must be >= 1")
        if mixture is None and sampler is None:
            raise ValueError("mixture: give the run's mixture (or the sampler)")
        self.client = client
        self.project_id = int(project_id)
        self.sampler = sampler
        self.mixture = dict(mixture) if mixture is not None else sampler.weights  # type: ignore[union-attr]
        self.session_id = session_id
        self.interval = int(interval)
        self.scale = {
            k: v
            for k, v in (
                ("model_params", model_params),
                ("train_tokens", train_tokens),
                ("train_steps", train_steps),
            )
            if v is not None
        }
        self.tokens_per_step = tokens_per_step
        self.name = name
        self.tags = list(tags)
        self.details = dict(details or {})
        self.run_id = run_id
        self.on_error = on_error
        self.metrics: dict[str, float] = {}
        self.curve: list[dict[str, Any]] = []
        #: each weights version applied: [{"step", "version", "weights"}]
        self.applied: list[dict[str, Any]] = []
        self.reports = 0
        self.finished = False
        self._train_sums: dict[str, list[float]] = {}
        self._eval_pending: dict[str, float] = {}
        self._train_loss: float | None = None
        self._etag: str | None = None
        self._version: int | None = None
        self._last_reported: int | None = None
        self._plan: dict[str, Any] = {}
        self._last_step = -1
        self._evaluated: set[int] = set()
        self.evaluate = evaluate

    # -- the run -------------------------------------------------------------------------
    def _guard(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the service's failure must not stop training
            if self.on_error == "raise":
                raise
            log.warning("mixopt: %s failed: %s", what, exc)
            return None

    def start(self) -> int | None:
        """Create the run (or mark the given one running); its id."""
        details = {**self.details}
        if self.session_id is not None:
            details["online_session"] = self.session_id
        if self.run_id is not None:
            self._guard("marking the run running", self._update, status="running")
        else:
            run = self._guard(
                "creating the run",
                self.client.add_run,
                self.project_id,
                self.mixture,
                normalize=True,
                status="running",
                name=self.name,
                tags=self.tags,
                details=details,
                **self.scale,
            )
            self.run_id = None if run is None else int(run.id)
        if self.session_id is not None:
            self._poll(0)
            self._evaluate_if_asked(0, self.sampler.weights)  # type: ignore[union-attr]
        return self.run_id

    def _update(self, **fields: Any) -> Any:
        return self.client.update_run(self.project_id, self.run_id, **fields)

    def _tokens(self, step: int, tokens: int | None) -> int | None:
        if tokens is not None:
            return int(tokens)
        return None if self.tokens_per_step is None else int(step * self.tokens_per_step)

    def train_loss(self, value: float) -> None:
        """The latest mean training loss (goes into the next curve point)."""
        if math.isfinite(value):
            self._train_loss = float(value)

    def evaluated(
        self,
        step: int,
        losses: Mapping[str, float],
        *,
        tokens: int | None = None,
        to_session: bool = True,
    ) -> None:
        """Per-domain evaluation losses at ``step``: a curve point, the run's latest metrics,
        and (``to_session``) the session's next observation."""
        clean = {d: float(v) for d, v in losses.items() if math.isfinite(float(v))}
        if not clean:
            return
        metrics = {METRIC.format(domain=d): v for d, v in clean.items()}
        self.metrics.update(metrics)
        point_metrics = dict(metrics)
        if self._train_loss is not None:
            point_metrics["train_loss"] = self._train_loss
        point: dict[str, Any] = {"step": int(step), "metrics": point_metrics}
        t = self._tokens(step, tokens)
        if t is not None:
            point["tokens"] = t
        self.curve.append(point)
        if self.run_id is not None:
            self._guard(
                "sending a curve point",
                self.client.add_curve_points,
                self.project_id,
                self.run_id,
                [point],
            )
        if self.session_id is not None and to_session:
            self._eval_pending.update(clean)

    # -- the online session --------------------------------------------------------------
    def record_batch(self, domains: Iterable[Any], losses: Iterable[float]) -> None:
        """Per-sequence training losses of one batch with each sequence's domain (a name or
        an index into the sampler's domains)."""
        if self.session_id is None:
            return
        names = self.sampler.domains  # type: ignore[union-attr]
        for d, v in zip(domains, losses, strict=True):
            name = names[int(d)] if not isinstance(d, str) else d
            value = float(v)
            if math.isfinite(value):
                acc = self._train_sums.setdefault(name, [0.0, 0.0])
                acc[0] += value
                acc[1] += 1

    def step_end(self, step: int, *, tokens: int | None = None) -> None:
        """After optimiser step ``step`` (0-based): every ``interval`` steps, report and poll;
        poll too where the session's plan ends (``valid_until``: Aioli's sweeps), and evaluate
        where it asks for losses (``eval_at``, with ``evaluate``)."""
        self._last_step = int(step)
        if self.session_id is None:
            return
        boundary = step + 1
        due = boundary % self.interval == 0
        trained_on = self.sampler.weights  # type: ignore[union-attr]  # before any poll here
        if due:
            self.report(step, tokens=tokens)
        if self._evaluate_if_asked(boundary, trained_on):  # reported, then polled
            return
        until = self._plan.get("valid_until")
        if due or (until is not None and boundary >= until):
            self._poll(boundary)
            self._evaluate_if_asked(boundary, trained_on)

    def _evaluate_if_asked(self, boundary: int, trained_on: Mapping[str, float]) -> bool:
        """Aioli's LearnParams (PROTOCOL.md): at the plan's ``eval_at`` boundary, evaluate,
        report the losses with the mixture the steps before it used, and ask again."""
        if self.evaluate is None or self._plan.get("eval_at") != boundary:
            return False
        if boundary in self._evaluated:
            return False
        self._evaluated.add(boundary)
        losses = {d: float(v) for d, v in self.evaluate().items()}
        self.evaluated(boundary, losses, to_session=False)  # a curve point too
        obs = {"step": boundary, "eval_losses": losses, "mixture": dict(trained_on)}
        if self._guard(
            "reporting to the online session",
            self.client.report,
            self.project_id,
            self.session_id,
            [obs],
        ):
            self.reports += 1
        self._poll(boundary)
        return True

    def report(self, step: int, *, tokens: int | None = None) -> None:
        """Send what was recorded since the last report as one observation at ``step`` (a
        step already reported moves to the next: the server keeps the first report of a
        step)."""
        if self._last_reported is not None and step <= self._last_reported:
            step = self._last_reported + 1
        obs: dict[str, Any] = {"step": int(step), "mixture": self.sampler.weights}  # type: ignore[union-attr]
        if self._train_sums:
            obs["train_losses"] = {d: s / n for d, (s, n) in self._train_sums.items() if n}
        if self._eval_pending:
            obs["eval_losses"] = dict(self._eval_pending)
        t = self._tokens(step + 1, tokens)
        if t is not None:
            obs["tokens"] = t
        self._train_sums = {}
        self._eval_pending = {}
        if "train_losses" not in obs and "eval_losses" not in obs:
            return
        self._last_reported = int(step)
        if self._guard(
            "reporting to the online session",
            self.client.report,
            self.project_id,
            self.session_id,
            [obs],
        ):
            self.reports += 1

    def _poll(self, step: int) -> None:
        scheduled = (
            self._plan.get("valid_until") is not None or self._plan.get("eval_at") is not None
        )
        answer = self._guard(
            "polling the session's weights",
            self.client.weights,
            self.project_id,
            self.session_id,
            step=step,
            etag=None if scheduled else self._etag,  # a scheduled plan changes with the step
        )
        if answer is None:
            return
        fresh, self._etag = answer
        if fresh is None:
            return
        plan = fresh.get("plan") or {}
        self._plan = dict(plan)
        weights = plan.get("weights") or fresh["weights"]
        if self.sampler.set_weights(weights):  # type: ignore[union-attr]
            self._version = fresh.get("version")
            self.applied.append({"step": step, "version": self._version, "weights": weights})

    # -- the end -------------------------------------------------------------------------
    def finish(self, status: str = "succeeded", error: str | None = None) -> None:
        """The run's final status (succeeded, failed, cancelled) and metrics; once."""
        if self.finished:
            return
        self.finished = True
        if self.run_id is None:
            return
        if status == "succeeded" and not self.metrics:
            if self.evaluate is not None:
                self.evaluated(self._last_step + 1, self.evaluate(), to_session=False)
            if not self.metrics:  # the API needs a succeeded run's metrics
                log.warning("mixopt: no evaluation losses; run %s stays running", self.run_id)
                return
        fields: dict[str, Any] = {"status": status}
        if self.metrics:
            fields["metrics"] = dict(self.metrics)
        if error:
            fields["error"] = error[:2000]
        self._guard("finishing the run", self._update, **fields)
