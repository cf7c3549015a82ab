"""Read-only aggregates for the web dashboard (counts per project, the runs table).

The dashboard's pages call these and the other services; no route builds SQL.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.services import online
from app.store.models import Fit, Project, Recommendation, Run

#: the runs table and the swarm-coverage chart load at most this many runs (newest first)
MAX_TABLE_RUNS = 20_000


def _grouped_count(session: Session, column, project_ids: list[int], *where) -> dict[int, int]:
    if not project_ids:
        return {}
    q = select(column, func.count()).where(column.in_(project_ids), *where).group_by(column)
    return {pid: n for pid, n in session.execute(q)}


def project_counts(session: Session, project_ids: list[int]) -> dict[int, dict[str, int]]:
    """``{project_id: {runs, fits, recommendations, online_sessions}}`` (active online sessions)."""
    runs = _grouped_count(session, Run.project_id, project_ids)
    fits = _grouped_count(session, Fit.project_id, project_ids)
    recs = _grouped_count(session, Recommendation.project_id, project_ids)
    online = active_online_sessions(session, project_ids)
    return {
        pid: {
            "runs": runs.get(pid, 0),
            "fits": fits.get(pid, 0),
            "recommendations": recs.get(pid, 0),
            "online_sessions": online.get(pid, 0),
        }
        for pid in project_ids
    }


def active_online_sessions(session: Session, project_ids: list[int]) -> dict[int, int]:
    """Active online sessions per project."""
    return online.count_active(session, project_ids)


def table_runs(
    session: Session, project: Project, limit: int = MAX_TABLE_RUNS
) -> tuple[list[dict[str, Any]], int]:
    """The newest ``limit`` runs of a project (every status) as plain dicts, oldest first, and
    the project's total number of runs."""
    total = (
        session.scalar(select(func.count()).select_from(Run).where(Run.project_id == project.id))
        or 0
    )
    cols = (
        Run.id,
        Run.name,
        Run.external_id,
        Run.status,
        Run.origin,
        Run.tags,
        Run.mixture,
        Run.metrics,
        Run.model_params,
        Run.train_tokens,
        Run.train_steps,
        Run.created_at,
    )
    q = select(*cols).where(Run.project_id == project.id).order_by(Run.id.desc()).limit(limit)
    rows = [dict(r._mapping) for r in session.execute(q)]
    rows.reverse()
    return rows, total


# -- the fit the pages start from ------------------------------------------------------------
def fit_trust(fit: Fit) -> float:
    """How far to trust a fit: its pooled cross-validated Spearman (``fidelity.pooled.spearman``,
    or a flat ``fidelity.spearman``), -inf when it has none. The criterion of ``mixopt best`` and
    ``MixoptClient.best`` (mixopt.client ``_trust``)."""
    fid = fit.fidelity if isinstance(fit.fidelity, dict) else {}
    pooled = fid.get("pooled", fid)
    value = pooled.get("spearman") if isinstance(pooled, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return float("-inf")
    return float(value)


def best_fit(fits: list[Fit]) -> Fit | None:
    """The succeeded fit with the highest cross-validated Spearman, the newest on ties (or
    when none has one): what the recommend form, what-if and Pareto pages select first."""
    ok = [f for f in fits if f.status == "succeeded"]
    return max(ok, key=lambda f: (fit_trust(f), f.id)) if ok else None


# -- what a job produced ---------------------------------------------------------------------
#: at most this many runs of a job are linked one by one (then a count)
JOB_RUN_LINKS = 3


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _run_ids(result: dict[str, Any]) -> list[int]:
    ids = result.get("run_ids")
    if not isinstance(ids, list):  # a swarm in rounds: {"rounds": [{"run_ids": [...]}, ...]}
        rounds = result.get("rounds")
        ids = [
            i
            for r in (rounds if isinstance(rounds, list) else [])
            if isinstance(r, dict)
            for i in (r.get("run_ids") or [])
        ]
    return [i for i in ids if _int(i) is not None]


def job_links(job: dict[str, Any]) -> list[dict[str, str]]:
    """Links to what a job produced, from its result (and, for the ids a job was started on,
    its params): the fit, the recommendation, the runs, the validation, the online session.
    ``[{"label", "href"}]``, each a dashboard page of the job's project."""
    pid = _int(job.get("project_id"))
    if pid is None:
        return []
    base = f"/dashboard/projects/{pid}"
    raw_result, raw_params = job.get("result"), job.get("params")
    result: dict[str, Any] = raw_result if isinstance(raw_result, dict) else {}
    params: dict[str, Any] = raw_params if isinstance(raw_params, dict) else {}

    def pick(key: str) -> int | None:
        return _int(result.get(key)) if key in result else _int(params.get(key))

    links: list[dict[str, str]] = []
    if (rid := _int(result.get("recommendation_id"))) is not None:
        links.append({"label": f"recommendation #{rid}", "href": f"{base}/mixtures#rec-{rid}"})
    if (fid := pick("fit_id")) is not None:
        links.append({"label": f"fit #{fid}", "href": f"{base}/fits#fit-{fid}"})
    if (vid := pick("validation_id")) is not None:
        links.append(
            {"label": f"validation #{vid}", "href": f"{base}/validations?validation={vid}"}
        )
    if (sid := pick("session_id")) is not None:
        links.append({"label": f"online session #{sid}", "href": f"{base}/online?session={sid}"})
    runs = _run_ids(result) or _run_ids(params)  # a swarm in rounds lists them as it goes
    single = pick("run_id")
    if single is not None and single not in runs:
        runs.insert(0, single)
    links += [{"label": f"run #{i}", "href": f"{base}/runs/{i}"} for i in runs[:JOB_RUN_LINKS]]
    if len(runs) > JOB_RUN_LINKS:
        links.append({"label": f"{len(runs)} runs in all", "href": f"{base}#runs"})
    return links
