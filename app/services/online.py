"""Online re-mixing sessions: external trainers report losses, beat re-mixes on a schedule,
trainers poll the new weights (versioned, with ETags)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.schemas.online import Observation, OnlineSessionCreate, OnlineSessionUpdate
from app.services import jobs as job_service
from app.services.errors import Conflict, Invalid, NotFound
from app.store.models import Job, OnlineObservation, OnlineSession, OnlineWeights, Project, utcnow
from mixopt.online import base as mixers


def _as_dict(domains: list[str], w) -> dict[str, float]:
    return {d: float(x) for d, x in zip(domains, w, strict=True)}


def create_session(session: Session, project: Project, data: OnlineSessionCreate) -> OnlineSession:
    names = [d.name for d in project.domains]
    domains = data.domains or names
    unknown = [d for d in domains if d not in names]
    if unknown:
        raise Invalid(
            f"unknown domains {unknown}; the project's domains are {names}", field="domains"
        )
    if len(set(domains)) != len(domains) or len(domains) < 2:
        raise Invalid("domains must be at least two distinct names", field="domains")
    if data.initial_weights is not None:
        extra = sorted(set(data.initial_weights) - set(domains))
        if extra:
            raise Invalid(f"unknown domains {extra}", field=f"initial_weights.{extra[0]}")
        if sum(data.initial_weights.values()) <= 0:
            raise Invalid("weights sum to zero", field="initial_weights")
    try:
        mixer = mixers.make_mixer(
            data.algorithm, domains, data.params, data.initial_weights, data.seed
        )
    except (ValueError, KeyError) as exc:
        msg = str(exc).strip("'\"")
        field = msg.split(":", 1)[0] if ":" in msg else "params"
        raise Invalid(
            msg, field=field if field.startswith(("params", "initial_weights")) else "params"
        ) from None
    weights = _as_dict(domains, mixer.weights())
    row = OnlineSession(
        project_id=project.id,
        name=data.name,
        algorithm=data.algorithm,
        params=mixer.params,
        domains=domains,
        state=mixer.state_dict(),
        weights=weights,
        version=1,
        applies_from_step=0,
        schedule=data.schedule.model_dump(),
        status="active",
    )
    session.add(row)
    session.flush()
    session.add(
        OnlineWeights(session_id=row.id, version=1, step=0, weights=weights, n_observations=0)
    )
    session.commit()
    return row


def get_session_row(session: Session, project: Project, session_id: int) -> OnlineSession:
    row = session.get(OnlineSession, session_id)
    if row is None or row.project_id != project.id:
        raise NotFound(f"online session {session_id} not found in project {project.id}")
    return row


def list_sessions(session: Session, project: Project) -> list[OnlineSession]:
    return list(
        session.scalars(
            select(OnlineSession)
            .where(OnlineSession.project_id == project.id)
            .order_by(OnlineSession.id)
        )
    )


def count_active(session: Session, project_ids: list[int]) -> dict[int, int]:
    if not project_ids:
        return {}
    rows = session.execute(
        select(OnlineSession.project_id, func.count())
        .where(OnlineSession.project_id.in_(project_ids), OnlineSession.status == "active")
        .group_by(OnlineSession.project_id)
    )
    return {pid: n for pid, n in rows}


def pending_count(session: Session, session_id: int) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(OnlineObservation)
            .where(
                OnlineObservation.session_id == session_id, OnlineObservation.processed.is_(False)
            )
        )
        or 0
    )


def update_session(
    session: Session, row: OnlineSession, data: OnlineSessionUpdate
) -> OnlineSession:
    if data.status is not None:
        if row.status == "stopped" and data.status != "stopped":
            raise Conflict(
                "a stopped session cannot be restarted; create a new one", field="status"
            )
        row.status = data.status
    if data.schedule is not None:
        row.schedule = data.schedule.model_dump()
    session.commit()
    return row


def add_observations(
    session: Session, row: OnlineSession, observations: list[Observation]
) -> dict[str, int]:
    """Store observations, idempotent per step: a step already stored with the same values is a
    duplicate (ignored); with different values it is a 409. Out-of-order steps are fine: a
    re-mix consumes every pending observation in step order."""
    if row.status == "stopped":
        raise Conflict(f"online session {row.id} is stopped", field="session_id")
    domains = set(row.domains)
    by_step: dict[int, dict[str, Any]] = {}
    for i, obs in enumerate(observations):
        for key in ("train_losses", "eval_losses", "mixture"):
            for d in getattr(obs, key) or {}:
                if d not in domains:
                    raise Invalid(
                        f"unknown domain {d!r}; the session mixes {row.domains}",
                        field=f"observations[{i}].{key}.{d}",
                    )
        rec = {
            "step": obs.step,
            "tokens": obs.tokens,
            "train_losses": dict(obs.train_losses),
            "eval_losses": dict(obs.eval_losses),
            "mixture": dict(obs.mixture) if obs.mixture else None,
        }
        if obs.step in by_step and by_step[obs.step] != rec:
            raise Conflict(
                f"step {obs.step} appears twice with different values",
                field=f"observations[{i}].step",
            )
        by_step[obs.step] = rec
    existing = {
        o.step: o
        for o in session.scalars(
            select(OnlineObservation).where(
                OnlineObservation.session_id == row.id, OnlineObservation.step.in_(list(by_step))
            )
        )
    }
    new = []
    for step, rec in sorted(by_step.items()):
        old = existing.get(step)
        if old is None:
            new.append({"session_id": row.id, **rec, "processed": False, "created_at": utcnow()})
        elif (old.train_losses, old.eval_losses, old.tokens) != (
            rec["train_losses"],
            rec["eval_losses"],
            rec["tokens"],
        ):
            raise Conflict(
                f"step {step} was already reported with different values", field="observations.step"
            )
    if new:
        _check_with_mixer(session, row, new)
        session.execute(insert(OnlineObservation), new)
    session.commit()
    return {
        "accepted": len(new),
        "duplicates": len(by_step) - len(new),
        "pending": pending_count(session, row.id),
    }


def _pending(session: Session, session_id: int) -> list[OnlineObservation]:
    return list(
        session.scalars(
            select(OnlineObservation)
            .where(
                OnlineObservation.session_id == session_id, OnlineObservation.processed.is_(False)
            )
            .order_by(OnlineObservation.step)
        )
    )


def _as_observations(obs: list[OnlineObservation]) -> list[dict[str, Any]]:
    return [
        {
            "step": o.step,
            "tokens": o.tokens,
            "train_losses": o.train_losses,
            "eval_losses": o.eval_losses,
            **({"mixture": o.mixture} if o.mixture else {}),
        }
        for o in obs
    ]


def _check_with_mixer(session: Session, row: OnlineSession, new: list[dict[str, Any]]) -> None:
    """Replay the pending and the new reports on a copy of the mixer: a report the algorithm
    refuses (e.g. an Aioli sweep trained on the wrong mixture) is a 422 now, not a failed re-mix."""
    mixer = mixers.load_mixer(row.state)
    pending = _as_observations(_pending(session, row.id))
    fresh = [
        {
            k: v
            for k, v in o.items()
            if k in ("step", "tokens", "train_losses", "eval_losses", "mixture") and v is not None
        }
        for o in new
    ]
    try:
        mixer.update(pending + fresh)
    except ValueError as exc:
        raise Invalid(f"{row.algorithm} refuses the report: {exc}", field="observations") from None


def weights_view(session: Session, row: OnlineSession, step: int | None = None) -> dict[str, Any]:
    """The stored weights (version, step) and, with ``step``, the mixer's plan for that step.

    The plan looks ahead through the reports not yet re-mixed (on a copy of the mixer; nothing
    is stored), so a trainer following Aioli's sweep schedule never waits for the next beat
    tick; the stored version advances on the session's schedule.
    """
    mixer = mixers.load_mixer(row.state)
    out = {
        "session_id": row.id,
        "algorithm": row.algorithm,
        "version": row.version,
        "step": row.applies_from_step,
        "weights": row.weights,
        "final_weights": _as_dict(row.domains, mixer.final_weights()),
    }
    if step is not None:
        pending = _pending(session, row.id)
        if pending:
            try:
                mixer.update(_as_observations(pending))
            except ValueError:
                pass  # the re-mix will record the rejected report; plan from the stored state
        plan = mixer.plan(step)
        out["mixture_for_step"] = plan["weights"]
        out["needs_eval"] = plan["eval_at"] == step
        out["plan"] = plan
    return out


def history(session: Session, row: OnlineSession) -> dict[str, Any]:
    weights = list(
        session.scalars(
            select(OnlineWeights)
            .where(OnlineWeights.session_id == row.id)
            .order_by(OnlineWeights.version)
        )
    )
    obs = list(
        session.scalars(
            select(OnlineObservation)
            .where(OnlineObservation.session_id == row.id)
            .order_by(OnlineObservation.step)
        )
    )
    return {"session_id": row.id, "weights": weights, "observations": obs}


# -- re-mixing (done by the workers) -------------------------------------------------------
def create_remix_job(session: Session, row: OnlineSession) -> Job:
    """A ``remix`` job for "re-mix now" (committed; the caller enqueues it): tracked like every
    other job. Beat's scheduled re-mixes call :func:`remix` directly (``mixopt.remix_session``)."""
    job = job_service.create_job(
        session, kind="remix", project_id=row.project_id, params={"session_id": row.id}
    )
    session.commit()
    return job


def due_sessions(session: Session) -> list[int]:
    """Active sessions whose schedule says a re-mix is due and that have pending observations."""
    now = utcnow()
    pending = dict(
        session.execute(
            select(OnlineObservation.session_id, func.count())
            .where(OnlineObservation.processed.is_(False))
            .group_by(OnlineObservation.session_id)
        ).all()
    )
    due = []
    for row in session.scalars(
        select(OnlineSession).where(
            OnlineSession.status == "active", OnlineSession.id.in_(list(pending))
        )
    ):
        sched = row.schedule or {}
        n = pending.get(row.id, 0)
        every_obs, every_s = sched.get("every_observations"), sched.get("every_seconds")
        if every_obs and n >= every_obs:
            due.append(row.id)
        elif every_s and (
            row.last_remix_at is None or now - row.last_remix_at >= timedelta(seconds=every_s)
        ):
            due.append(row.id)
    return due


def remix(session: Session, session_id: int) -> int | None:
    """Apply the pending observations to the mixer and store a new weights version, in one
    transaction; a second call with nothing pending does nothing (idempotent).

    Concurrent re-mixes of one session (beat's tick and a "remix now" request) are safe: on
    PostgreSQL the row lock serialises them; SQLite has no row locks, so the loser's insert of
    the same version fails its unique key, is rolled back, and is retried on what is still
    pending (nothing, usually)."""
    for _ in range(3):
        try:
            return _remix_once(session, session_id)
        except IntegrityError:
            session.rollback()
    raise Conflict(f"online session {session_id}: concurrent re-mixes kept colliding; try again")


def _remix_once(session: Session, session_id: int) -> int | None:
    q = select(OnlineSession).where(OnlineSession.id == session_id)
    if session.get_bind().dialect.name == "postgresql":
        q = q.with_for_update()
    row = session.scalar(q)
    if row is None or row.status != "active":
        return None
    obs = _pending(session, row.id)
    if not obs:
        return None
    mixer = mixers.load_mixer(row.state)
    try:
        w = mixer.update(_as_observations(obs))
    except ValueError as exc:
        row.error = f"observation rejected by {row.algorithm}: {exc}"
        session.execute(
            update(OnlineObservation)
            .where(OnlineObservation.id.in_([o.id for o in obs]))
            .values(processed=True)
        )
        session.commit()
        return None
    step = max(o.step for o in obs)
    row.state = mixer.state_dict()
    row.weights = _as_dict(row.domains, w)
    row.version += 1
    row.applies_from_step = max(step, row.applies_from_step)
    row.last_remix_at = utcnow()
    row.error = None
    session.add(
        OnlineWeights(
            session_id=row.id,
            version=row.version,
            step=row.applies_from_step,
            weights=row.weights,
            n_observations=len(obs),
        )
    )
    session.execute(
        update(OnlineObservation)
        .where(OnlineObservation.id.in_([o.id for o in obs]))
        .values(processed=True)
    )
    session.commit()
    return row.version
