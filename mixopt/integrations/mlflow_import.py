"""Runs of an MLflow tracking store as mixopt runs (``mixopt runs import-mlflow``).

The store is read with MLflow's own client (``pip install 'mixopt[mlflow]'``, the
``mlflow-skinny`` package): a directory (the file store ``mlruns/`` that ``mlflow.log_*``
writes by default before MLflow 3; read-only here), a ``sqlite:///mlflow.db`` or other
database URI, or a tracking server ``http(s)://host:port``. Each run's params and latest
metrics go through :class:`~mixopt.integrations.run_import.RunMapping`; runs not ``FINISHED``
are left out unless asked (``statuses``). The loss metrics' histories (every logged step)
become each run's loss curve (``curves=False`` leaves them out: one request per run and loss).

:func:`records` is pure (MLflow ``Run`` objects or their ``to_dictionary()`` form in, the
mapping's records out) and tested without a store; :func:`read_store` talks to MLflow.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mixopt.integrations.run_import import ImportPlan, RunMapping, plan

#: how many runs one import reads at most (a bound on memory; the batch API has its own)
MAX_RUNS = 100_000


def tracking_uri(location: str) -> str:
    """A directory as a ``file://`` URI; URIs (``sqlite:``, ``http:``...) as they are."""
    if "://" in location or location.startswith(("sqlite:", "postgresql:", "mysql:")):
        return location
    path = Path(location).expanduser()
    if not path.is_dir():
        raise ValueError(f"--tracking-uri: {location} is neither a directory nor a URI")
    return path.resolve().as_uri()


def _run_dict(run: Any) -> Mapping[str, Any]:
    return run.to_dictionary() if hasattr(run, "to_dictionary") else run


def records(
    runs: Iterable[Any], statuses: Sequence[str] = ("FINISHED",)
) -> Iterator[tuple[str, str | None, dict[str, Any], dict[str, Any]]]:
    """(run id, run name, params, latest metrics) of the runs whose status is in ``statuses``
    (MLflow ``Run`` objects or ``Run.to_dictionary()`` dicts)."""
    for run in runs:
        d = _run_dict(run)
        info, data = d.get("info", {}), d.get("data", {})
        if statuses and info.get("status") not in statuses:
            continue
        params, metrics = data.get("params", {}), data.get("metrics", {})
        # to_dictionary() gives dicts; the REST form gives [{"key", "value"}] lists
        if isinstance(params, list):
            params = {p["key"]: p["value"] for p in params}
        if isinstance(metrics, list):
            metrics = {m["key"]: m["value"] for m in metrics}
        yield str(info["run_id"]), info.get("run_name"), dict(params), dict(metrics)


@contextmanager
def _mlflow_settings() -> Iterator[None]:
    # MLflow 3 refuses to open a file store unless asked; reading an existing one is safe
    # and a server that cannot be reached fails in seconds, not after MLflow's 7 retries
    settings = {
        "MLFLOW_ALLOW_FILE_STORE": "true",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1"),
        "MLFLOW_HTTP_REQUEST_TIMEOUT": os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", "30"),
    }
    old = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def read_store(location: str, experiments: Sequence[str] = ()) -> list[Any]:
    """Every run of the named experiments (default: all) of a tracking store."""
    from mixopt.extras import MissingExtra, require

    require("mlflow", "import-mlflow")
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(location)
    with _mlflow_settings():
        try:
            client = MlflowClient(tracking_uri=uri)
            if experiments:
                found = {n: client.get_experiment_by_name(n) for n in experiments}
                missing = [n for n, e in found.items() if e is None]
                if missing:
                    raise ValueError(f"--experiment: no experiment named {missing} in {location}")
                ids = [e.experiment_id for e in found.values() if e is not None]
            else:
                ids = [e.experiment_id for e in client.search_experiments()]
            runs: list[Any] = []
            for eid in ids:
                token = None
                while True:
                    page = client.search_runs([eid], max_results=1000, page_token=token)
                    runs.extend(page)
                    if len(runs) > MAX_RUNS:
                        raise ValueError(
                            f"{location}: more than {MAX_RUNS} runs; give --experiment"
                        )
                    token = page.token
                    if not token:
                        break
        except MlflowException as exc:
            raise ValueError(f"--tracking-uri {location}: {exc.message}") from None
        except ImportError as exc:  # a database store needs sqlalchemy and alembic
            raise MissingExtra(
                f"--tracking-uri {location}: MLflow needs {exc.name} for this store: "
                f"pip install {exc.name}"
            ) from None
    return runs


def read_histories(
    location: str, keys: Mapping[str, Sequence[str]]
) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """``{run id: {metric: [(step, value), ...]}}`` for the metrics ``keys`` names per run id
    (MLflow's ``get_metric_history``)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    out: dict[str, dict[str, list[tuple[int, float]]]] = {}
    with _mlflow_settings():
        client = MlflowClient(tracking_uri=tracking_uri(location))
        try:
            for run_id, names in keys.items():
                out[run_id] = {
                    k: [(m.step, m.value) for m in client.get_metric_history(run_id, k)]
                    for k in names
                }
        except MlflowException as exc:
            raise ValueError(f"--tracking-uri {location}: {exc.message}") from None
    return out


def import_plan(
    location: str,
    mapping: RunMapping,
    experiments: Sequence[str] = (),
    statuses: Sequence[str] = ("FINISHED",),
    curves: bool = True,
) -> ImportPlan:
    """The runs to import; with ``curves``, each with its loss metrics' history as its curve."""
    found = list(records(read_store(location, experiments), statuses))
    out = plan(found, mapping)
    if curves and out.runs:
        metric_keys = {run_id: list(metrics) for run_id, _, _, metrics in found}
        wanted = {r.external_id: mapping.loss_keys(metric_keys[r.external_id]) for r in out.runs}
        histories = read_histories(location, wanted)
        for r in out.runs:
            r.curve = mapping.curve(histories.get(r.external_id, {}))
    return out
