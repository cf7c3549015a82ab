"""What the MLflow and W&B imports share: the mapping from a tracked run's parameters and
metrics to a mixopt run, and the upload through the batch import API.

The mapping (:class:`RunMapping`, documented in the README's "Trainer integrations"):

* **mixture**: the parameters named ``<prefix><domain>`` (``--mixture-params``, default
  ``mix.``: ``mix.web=0.6``, ``mix.code=0.4``), or one parameter holding a JSON object
  ``{domain: weight}`` (``--mixture-json``); weights are normalised to sum to 1;
* **losses**: the metrics matching ``--loss-metrics``, a pattern with ``{domain}``
  (default ``eval/{domain}/loss``) or a regular expression with a group named ``domain``;
  each becomes the metric ``val_loss/<domain>`` (the project's own trainer's name); the
  value is the run's last (MLflow's latest, W&B's summary);
* **scale**: the parameters ``model_params``, ``train_tokens``, ``train_steps`` (names
  changed with ``--scale-param model_params=n_params``), or one value for every run
  (``--model-params``...): a fixed value wins;
* **id**: the tracker's run id is the mixopt run's ``external_id``, its name the run's name.

Runs without a mixture or without any loss are left out with the reason (never a silent
drop). :func:`upload` sends the runs as CSV pairs (the olmix layout) to
``POST /v1/projects/{id}/runs/import``, one pair per scale, so a run already imported at its
scale is refused (409) or skipped (``on_duplicate="skip"``) as in every import.

**Curves**: a run whose loss metrics have a history (MLflow's metric history; W&B's exports
hold the summary only) carries it as :attr:`ImportedRun.curve` (one point per logged step with
every loss logged at that step, at most :data:`MAX_CURVE_POINTS`, thinned evenly beyond), and
:func:`upload` posts it to the created run (``POST .../runs/{id}/curve``): the curves are what
the scaling laws of a fit with a ``target_scale`` read.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixopt.integrations.reporter import METRIC

SCALES = ("model_params", "train_tokens", "train_steps")
#: the points of one run's curve an import keeps (the API's limit per request)
MAX_CURVE_POINTS = 100_000
#: curve points per request when uploading
CURVE_CHUNK = 10_000


@dataclass
class ImportedRun:
    external_id: str
    name: str | None
    mixture: dict[str, float]
    metrics: dict[str, float]
    scale: dict[str, int] = field(default_factory=dict)
    #: loss-curve points ``{"step", "metrics"}`` in step order (empty without a history)
    curve: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ImportPlan:
    runs: list[ImportedRun] = field(default_factory=list)
    #: (run id, why it was left out)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _loss_regex(pattern: str) -> re.Pattern[str]:
    if "{domain}" in pattern:
        head, tail = pattern.split("{domain}", 1)
        return re.compile(f"^{re.escape(head)}(?P<domain>[^/]+){re.escape(tail)}$")
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"--loss-metrics: not a regular expression ({exc})") from None
    if "domain" not in regex.groupindex:
        raise ValueError("--loss-metrics: give a pattern with {domain} or a (?P<domain>...) group")
    return regex


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


@dataclass
class RunMapping:
    """How a tracked run's parameters and metrics become a mixopt run (see the module)."""

    mixture_params: str = "mix."
    mixture_json: str | None = None
    loss_metrics: str = "eval/{domain}/loss"
    scale_params: dict[str, str] = field(default_factory=lambda: {s: s for s in SCALES})
    fixed_scale: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._loss = _loss_regex(self.loss_metrics)
        unknown = sorted(set(self.scale_params) - set(SCALES))
        if unknown:
            raise ValueError(f"--scale-param: unknown scales {unknown}; use {list(SCALES)}")
        self.scale_params = {**{s: s for s in SCALES}, **self.scale_params}

    def mixture(self, params: Mapping[str, Any]) -> dict[str, float]:
        """The run's mixture from its parameters; a ``ValueError`` saying what is missing."""
        if self.mixture_json is not None:
            raw = params.get(self.mixture_json)
            if raw is None:
                raise ValueError(f"no parameter {self.mixture_json!r}")
            try:
                value = json.loads(raw) if isinstance(raw, str) else raw
            except json.JSONDecodeError:
                raise ValueError(f"parameter {self.mixture_json!r} is not JSON") from None
            if not isinstance(value, dict):
                raise ValueError(f"parameter {self.mixture_json!r} is not a JSON object")
            items: Iterable[tuple[Any, Any]] = value.items()
        else:
            p = self.mixture_params
            items = ((k[len(p) :], v) for k, v in params.items() if k.startswith(p) and k != p)
        mixture: dict[str, float] = {}
        for domain, raw in items:
            x = _number(raw)
            if x is None or x < 0:
                raise ValueError(f"mixture weight of {domain!r} is not a number >= 0: {raw!r}")
            mixture[str(domain)] = x
        where = self.mixture_json or f"{self.mixture_params}<domain>"
        if not mixture:
            raise ValueError(f"no mixture parameters ({where})")
        total = sum(mixture.values())
        if total <= 0:
            raise ValueError(f"the mixture ({where}) sums to 0")
        return {d: w / total for d, w in mixture.items()}

    def losses(self, metrics: Mapping[str, Any]) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, value in metrics.items():
            m = self._loss.match(key)
            x = _number(value)
            if m and x is not None:
                out[METRIC.format(domain=m["domain"])] = x
        return out

    def loss_keys(self, keys: Iterable[str]) -> list[str]:
        """The tracker's metric names that are losses under this mapping."""
        return [k for k in keys if self._loss.match(k)]

    def curve(self, histories: Mapping[str, Iterable[tuple[Any, Any]]]) -> list[dict[str, Any]]:
        """Loss curve points from metric histories ``{tracker metric: [(step, value), ...]}``:
        one point per step with every finite loss logged at it (the last value when a step was
        logged twice), in step order; empty when fewer than two steps were logged (a single
        value is the run's final metric, not a curve); at most :data:`MAX_CURVE_POINTS`,
        thinned evenly (the last step always kept)."""
        by_step: dict[int, dict[str, float]] = {}
        for key, history in histories.items():
            m = self._loss.match(key)
            if not m:
                continue
            name = METRIC.format(domain=m["domain"])
            for step, value in history:
                x, st = _number(value), _number(step)
                if x is None or st is None or st < 0 or st != int(st) or st > 2**31 - 1:
                    continue
                by_step.setdefault(int(st), {})[name] = x
        steps = sorted(by_step)
        if len(steps) < 2:
            return []
        if len(steps) > MAX_CURVE_POINTS:
            keep = {
                round(i * (len(steps) - 1) / (MAX_CURVE_POINTS - 1))
                for i in range(MAX_CURVE_POINTS)
            }
            steps = [steps[i] for i in sorted(keep)]
        return [{"step": st, "metrics": by_step[st]} for st in steps]

    def scale(self, params: Mapping[str, Any]) -> dict[str, int]:
        out: dict[str, int] = {}
        for scale, key in self.scale_params.items():
            x = _number(params.get(key))
            if x is not None and x > 0 and x == int(x):
                out[scale] = int(x)
        return {**out, **self.fixed_scale}

    def run(
        self, run_id: str, name: str | None, params: Mapping[str, Any], metrics: Mapping[str, Any]
    ) -> ImportedRun:
        """One tracked run as a mixopt run; a ``ValueError`` saying why it cannot be."""
        mixture = self.mixture(params)
        losses = self.losses(metrics)
        if not losses:
            raise ValueError(f"no loss metric matches {self.loss_metrics!r}")
        return ImportedRun(run_id, name, mixture, losses, self.scale(params))


def plan(records: Iterable[tuple[str, str | None, Mapping, Mapping]], mapping: RunMapping):
    """(id, name, params, metrics) records as an :class:`ImportPlan`."""
    out = ImportPlan()
    seen: set[str] = set()
    for run_id, name, params, metrics in records:
        if run_id in seen:
            out.skipped.append((run_id, "the same id twice in the input"))
            continue
        seen.add(run_id)
        try:
            out.runs.append(mapping.run(run_id, name, params, metrics))
        except ValueError as exc:
            out.skipped.append((run_id, str(exc)))
    return out


def csv_pair(runs: list[ImportedRun]) -> tuple[str, str]:
    """The runs as an olmix ``ratios.csv`` / ``metrics.csv`` pair (keyed by ``run``)."""
    domains = sorted({d for r in runs for d in r.mixture})
    metrics = sorted({m for r in runs for m in r.metrics})
    ratios, values = io.StringIO(), io.StringIO()
    w1, w2 = csv.writer(ratios, lineterminator="\n"), csv.writer(values, lineterminator="\n")
    w1.writerow(["run", "name", *domains])
    w2.writerow(["run", *metrics])
    for r in runs:
        w1.writerow([r.external_id, r.name or "", *(repr(r.mixture.get(d, 0.0)) for d in domains)])
        w2.writerow(
            [r.external_id, *(repr(r.metrics[m]) if m in r.metrics else "" for m in metrics)]
        )
    return ratios.getvalue(), values.getvalue()


def by_scale(runs: list[ImportedRun]) -> dict[tuple[tuple[str, int], ...], list[ImportedRun]]:
    groups: dict[tuple[tuple[str, int], ...], list[ImportedRun]] = {}
    for r in runs:
        groups.setdefault(tuple(sorted(r.scale.items())), []).append(r)
    return groups


def upload(
    client: Any,
    project_id: int,
    runs: list[ImportedRun],
    *,
    on_duplicate: str = "error",
    tags: Iterable[str] = (),
) -> dict[str, Any]:
    """Post the runs through the batch import API, one CSV pair per scale; the totals."""
    total: dict[str, Any] = {"created": 0, "skipped": 0, "ids": [], "scales": [], "curves": 0}
    with tempfile.TemporaryDirectory(prefix="mixopt-import-") as tmp:
        for i, (scale, group) in enumerate(by_scale(runs).items()):
            ratios, metrics = csv_pair(group)
            paths = Path(tmp) / f"ratios-{i}.csv", Path(tmp) / f"metrics-{i}.csv"
            paths[0].write_text(ratios)
            paths[1].write_text(metrics)
            r = client.import_runs(
                project_id,
                paths[0],
                paths[1],
                format="olmix",
                on_duplicate=on_duplicate,
                on_unmatched="error",
                tags=list(tags),
                **dict(scale),
            )
            total["created"] += r["created"]
            total["skipped"] += r["skipped"]
            total["ids"] += r["ids"]
            total["scales"].append({"scale": dict(scale), "runs": len(group), **_counts(r)})
            total["curves"] += post_curves(client, project_id, group, r["ids"])
    return total


def post_curves(client: Any, project_id: int, runs: list[ImportedRun], ids: list[int]) -> int:
    """Post the curves of the runs an import created (``ids``; skipped duplicates have none):
    each created run is matched to its tracked run by ``external_id``. The number of curves."""
    curves = {r.external_id: r.curve for r in runs if r.curve}
    posted = 0
    for run_id in ids if curves else []:
        curve = curves.get(client.get_run(project_id, run_id).external_id or "")
        if not curve:
            continue
        for start in range(0, len(curve), CURVE_CHUNK):
            client.add_curve_points(project_id, run_id, curve[start : start + CURVE_CHUNK])
        posted += 1
    return posted


def _counts(r: Mapping[str, Any]) -> dict[str, int]:
    return {"created": int(r["created"]), "skipped": int(r["skipped"])}
