"""SQLAlchemy ORM models (the schema). Migrations in ``migrations/`` mirror this file and a
test checks they do not drift."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every database (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Project(Base):
    __tablename__ = "project"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    #: {evaluation metric name: weight}; None means the mean of all per-domain validation losses
    objective: Mapped[dict[str, float] | None] = mapped_column(JSON)
    #: constraints dict (see app.schemas.ConstraintsSpec)
    constraints: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    #: the current version of the domain set (``DomainSet``); every add/remove/split/merge adds one
    domain_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    domains: Mapped[list[Domain]] = relationship(
        back_populates="project",
        order_by="Domain.position",
        cascade="all, delete-orphan",
        lazy="selectin",
    )


class Domain(Base):
    __tablename__ = "domain"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_domain_project_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    #: tokens available for training (declared by the user, or measured by ingestion)
    token_count: Mapped[int | None] = mapped_column(BigInteger)
    token_count_measured: Mapped[bool] = mapped_column(Boolean, default=False)
    #: {"path": ..., "format": "txt|jsonl|parquet|auto", "text_field": "text"}
    source: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: whether an admin token registered ``source``: ingestion then reads it with the admin-only
    #: roots (``MIXOPT_ADMIN_DATA_ROOTS``) too; else only with ``MIXOPT_DATA_ROOTS``
    source_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: measured at ingestion: {"train_tokens", "val_tokens", "bytes", "entropy": {variant: nats}}
    stats: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: tokenised files each trainer reads, keyed by export format: {"olmo-core": ["...npy"], ...}
    trainer_paths: Mapped[dict[str, list[str]] | None] = mapped_column(JSON)
    #: number of documents (the HF export turns token shares into per-example probabilities)
    documents: Mapped[int | None] = mapped_column(BigInteger)
    #: declared group path ("web/news"; hierarchical domains); None: parsed from a source:topic name
    group_path: Mapped[str | None] = mapped_column(String(500))

    project: Mapped[Project] = relationship(back_populates="domains")


class DomainSet(Base):
    """One version of a project's domain set, kept readable after the set changes: its domains
    (name, token count, group), what changed from the previous version, and when. Removed
    domains live on in the versions they belonged to; runs record the version they used."""

    __tablename__ = "domain_set"
    __table_args__ = (
        UniqueConstraint("project_id", "version", name="uq_domain_set_project_version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    #: [{"name", "token_count", "group"}] in the project's order
    domains: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    #: {"add": [...], "remove": [...], "split": {old: [parts]}, "merge": {new: [parts]}, "via": ...}
    changes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


def _current_domain_version(context) -> int:
    """A run inserted without ``domain_version`` gets its project's current version."""
    pid = context.get_current_parameters().get("project_id")
    if pid is None:
        return 1
    from sqlalchemy import select

    v = context.connection.execute(select(Project.domain_version).where(Project.id == pid)).scalar()
    return int(v or 1)


class Run(Base):
    __tablename__ = "run"
    __table_args__ = (
        Index("ix_run_project_status", "project_id", "status"),
        Index("ix_run_project_external", "project_id", "external_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str | None] = mapped_column(String(200))
    #: identifier in the source the run came from (RegMix ``index``, olmix ``run``)
    external_id: Mapped[str | None] = mapped_column(String(200))
    #: {domain name: weight}, sums to 1
    mixture: Mapped[dict[str, float]] = mapped_column(JSON)
    #: final metrics {metric name: value}, e.g. per-domain validation losses
    metrics: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    model_params: Mapped[int | None] = mapped_column(BigInteger)
    train_tokens: Mapped[int | None] = mapped_column(BigInteger)
    train_steps: Mapped[int | None] = mapped_column(Integer)
    seed: Mapped[int | None] = mapped_column(Integer)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: planned | queued | running | succeeded | failed | cancelled
    status: Mapped[str] = mapped_column(String(16), default="succeeded")
    #: reported (by a client) | trained (by a worker)
    origin: Mapped[str] = mapped_column(String(16), default="reported")
    #: extra information: training config, weight trajectory of an online run, ...
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[str | None] = mapped_column(String(32), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    #: the version of the project's domain set the mixture is over (``DomainSet.version``)
    domain_version: Mapped[int] = mapped_column(
        Integer, default=_current_domain_version, server_default="1"
    )


class RunTag(Base):
    """One row per (run, tag): lets the runs list filter by tag on any database."""

    __tablename__ = "run_tag"

    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(100), primary_key=True, index=True)


class CurvePoint(Base):
    __tablename__ = "curve_point"
    __table_args__ = (UniqueConstraint("run_id", "step", name="uq_curve_point_run_step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    tokens: Mapped[int | None] = mapped_column(BigInteger)
    #: {metric name: value} at this step
    metrics: Mapped[dict[str, float]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Job(Base):
    """Any asynchronous work: training, fits, re-mixing, ingestion."""

    __tablename__ = "job"
    __table_args__ = (Index("ix_job_state", "state"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_job_id)
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(32))
    #: pending | running | succeeded | failed | cancelled
    state: Mapped[str] = mapped_column(String(16), default="pending")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    queue: Mapped[str] = mapped_column(String(32), default="default")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: Celery id of the task copy that holds the claim (for revoke with terminate)
    task_id: Mapped[str | None] = mapped_column(String(64))
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: how many times the job's message was published (first send + re-sends), and the last
    sends: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: X-Request-ID of the request that created the job (app.core.logs): worker logs carry it
    request_id: Mapped[str | None] = mapped_column(String(64))


class WorkerBeat(Base):
    """Liveness of a Celery worker (its main process writes ``seen_at`` every few seconds);
    ``/readyz`` reads it, so readiness works with any broker."""

    __tablename__ = "worker_beat"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    pid: Mapped[int] = mapped_column(Integer)
    queues: Mapped[str] = mapped_column(String(500), default="")
    concurrency: Mapped[int] = mapped_column(Integer, default=1)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    #: sha256 of the token (tokens are 256-bit random, so a fast hash is enough)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: first characters of the token, to recognise it in listings
    prefix: Mapped[str] = mapped_column(String(16))
    #: admin | write | read
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    project_links: Mapped[list[TokenProject]] = relationship(
        cascade="all, delete-orphan", lazy="selectin"
    )

    @property
    def project_ids(self) -> list[int]:
        return sorted(link.project_id for link in self.project_links)


class TokenProject(Base):
    """The projects a non-admin token may see."""

    __tablename__ = "token_project"

    token_id: Mapped[int] = mapped_column(
        ForeignKey("api_token.id", ondelete="CASCADE"), primary_key=True
    )
    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class IdempotencyRecord(Base):
    """The stored response of a request sent with an ``Idempotency-Key`` header."""

    __tablename__ = "idempotency_record"
    __table_args__ = (UniqueConstraint("token_id", "key", name="uq_idempotency_token_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_token.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(200))
    #: "METHOD path" the key was first used with
    endpoint: Mapped[str] = mapped_column(String(400))
    #: sha256 of the request body, to refuse a key reused for a different request
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[Any] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Fit(Base):
    """An estimator fitted on a project's runs: parameters as JSON, CV fidelity, timings."""

    __tablename__ = "fit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), index=True
    )
    job_id: Mapped[str | None] = mapped_column(String(32), index=True)
    estimator: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: which runs: {"status", "tag", "model_params", "train_tokens", "run_ids"}
    run_filter: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: {metric: weight}: the objective the fit predicts
    target: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    #: pending | running | succeeded | failed
    status: Mapped[str] = mapped_column(String(16), default="pending")
    domains: Mapped[list[str]] = mapped_column(JSON, default=list)
    run_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    #: the fitted estimator (MixingEstimator.to_state()), reloadable exactly
    state: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    fidelity: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    timings: Mapped[dict[str, float] | None] = mapped_column(JSON)
    notes: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    #: the scale the user asked for ({model_params, train_steps | train_tokens}), or None
    target_scale: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: the scale the fit's answers are for (the runs' own, or target_scale)
    scale: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: how: {"chain": [laws with parameters and errors], "cross_scale", "extrapolated", "training"}
    scaling: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: False when parameters or held-out predictions are implausible (mixopt.mixing.trust)
    trusted: Mapped[bool | None] = mapped_column(Boolean)
    trust_reasons: Mapped[list[str] | None] = mapped_column(JSON)
    #: runs of older domain sets: {"mode": "compatible" | "current", "version": the fit's, and after
    #: the fit "by_version": {v: {"runs", "reused", "mapped", "dropped", "reasons"}}, "notes"}
    domain_versions: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: a label the user gave the fit (settable at creation and by PATCH)
    name: Mapped[str | None] = mapped_column(String(200))
    #: the fit's tags, in order; fit_tag holds one row per tag for filtering
    tags: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class FitTag(Base):
    """One row per (fit, tag): lets the fits list filter by tag on any database."""

    __tablename__ = "fit_tag"

    fit_id: Mapped[int] = mapped_column(ForeignKey("fit.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(100), primary_key=True, index=True)


class Recommendation(Base):
    """A proposed mixture: from a fit under constraints, or a baseline."""

    __tablename__ = "recommendation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), index=True
    )
    fit_id: Mapped[int | None] = mapped_column(
        ForeignKey("fit.id", ondelete="SET NULL"), index=True
    )
    job_id: Mapped[str | None] = mapped_column(String(32), index=True)
    #: estimator name, or baseline:<name>
    source: Mapped[str] = mapped_column(String(64))
    mixture: Mapped[dict[str, float]] = mapped_column(JSON)
    predicted: Mapped[float | None] = mapped_column(Float)
    interval_low: Mapped[float | None] = mapped_column(Float)
    interval_high: Mapped[float | None] = mapped_column(Float)
    binding: Mapped[list[str]] = mapped_column(JSON, default=list)
    constraints: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    target_scale: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: unconstrained optimum, explanation, fidelity of the source fit, ...
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: a label the user gave the recommendation (settable at creation and by PATCH)
    name: Mapped[str | None] = mapped_column(String(200))
    #: the recommendation's tags, in order; recommendation_tag holds one row per tag
    tags: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RecommendationTag(Base):
    """One row per (recommendation, tag): lets the recommendations list filter by tag."""

    __tablename__ = "recommendation_tag"

    recommendation_id: Mapped[int] = mapped_column(
        ForeignKey("recommendation.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(100), primary_key=True, index=True)


class OnlineSession(Base):
    """Online re-mixing of a live training run (Aioli, DoReMi, ODM) steered by the service."""

    __tablename__ = "online_session"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str | None] = mapped_column(String(200))
    algorithm: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    domains: Mapped[list[str]] = mapped_column(JSON)
    #: the mixer's state_dict(): survives restarts and reloads exactly
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: current weights {domain: weight}, their version and the step they apply from
    weights: Mapped[dict[str, float]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer, default=1)
    applies_from_step: Mapped[int] = mapped_column(Integer, default=0)
    #: {"every_seconds": int | None, "every_observations": int | None}
    schedule: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: active | paused | stopped
    status: Mapped[str] = mapped_column(String(16), default="active")
    last_remix_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class OnlineObservation(Base):
    """What the trainer reported at a step; consumed once by a re-mix (``processed``)."""

    __tablename__ = "online_observation"
    __table_args__ = (
        UniqueConstraint("session_id", "step", name="uq_online_observation_session_step"),
        Index("ix_online_observation_pending", "session_id", "processed"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(
        ForeignKey("online_session.id", ondelete="CASCADE"), index=True
    )
    step: Mapped[int] = mapped_column(Integer)
    tokens: Mapped[int | None] = mapped_column(BigInteger)
    train_losses: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    eval_losses: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    mixture: Mapped[dict[str, float] | None] = mapped_column(JSON)
    processed: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class OnlineWeights(Base):
    """Every version of a session's weights: the trajectory."""

    __tablename__ = "online_weights"
    __table_args__ = (
        UniqueConstraint("session_id", "version", name="uq_online_weights_session_version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(
        ForeignKey("online_session.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer)
    weights: Mapped[dict[str, float]] = mapped_column(JSON)
    n_observations: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Validation(Base):
    """Validation trainings: every mixture trained with the same seeds, and the paired
    comparison of their objectives and per-domain losses (``result``)."""

    __tablename__ = "validation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), index=True
    )
    job_id: Mapped[str | None] = mapped_column(String(32), index=True)
    #: pending | running | succeeded | failed | cancelled
    status: Mapped[str] = mapped_column(String(16), default="pending")
    #: [{"label", "source", "mixture", "baseline": bool, "recommendation_id"?}], resolved at
    #: creation
    mixtures: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    seeds: Mapped[list[int]] = mapped_column(JSON)
    preset: Mapped[str] = mapped_column(String(32))
    train_steps: Mapped[int] = mapped_column(Integer)
    #: trainer settings (batch_size, block_size, eval_interval, learning_rate, shape overrides)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: {metric: weight} the objective is computed from (the project's at creation)
    objective: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    #: run ids by mixture index and seed: [[run_id per seed] per mixture]
    run_ids: Mapped[list[list[int]]] = mapped_column(JSON, default=list)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuthFailure(Base):
    """Failed authentications counted per key and fixed window, shared by every API process
    (:mod:`app.services.ratelimit`). ``key`` is ``a:<client address>`` or ``c:<sha256 of the
    presented credential>`` (never the credential itself); rows of past windows are pruned."""

    __tablename__ = "auth_failure"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    #: start of the window, whole seconds since the epoch (a multiple of the window length)
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (Index("ix_auth_failure_window_start", "window_start"),)


class Expert(Base):
    """A domain expert of a project (Mixture of Data Experts, Belenki et al. 2025): a model
    trained on one domain alone (``origin`` trained) or told about by an external trainer
    (``uploaded``), and, for every validation domain, the expert's probability of each observed
    next token over the trainer's fixed evaluation windows (a float16 ``.npy`` file under
    ``<home>/experts``; :mod:`app.services.experts`)."""

    __tablename__ = "expert"
    __table_args__ = (UniqueConstraint("project_id", "domain", name="uq_expert_project_domain"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), index=True
    )
    #: the domain the expert was trained on
    domain: Mapped[str] = mapped_column(String(200))
    #: queued | running | succeeded | failed | cancelled (trained); partial | succeeded (uploaded)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    #: trained (by a worker) | uploaded (probabilities from an external trainer)
    origin: Mapped[str] = mapped_column(String(16), default="trained")
    preset: Mapped[str | None] = mapped_column(String(32))
    train_steps: Mapped[int | None] = mapped_column(Integer)
    train_tokens: Mapped[int | None] = mapped_column(BigInteger)
    seed: Mapped[int | None] = mapped_column(Integer)
    #: the evaluation windows the probabilities are over (tokens per window, number of windows)
    block_size: Mapped[int] = mapped_column(Integer)
    n_windows: Mapped[int] = mapped_column(Integer)
    #: {validation domain: {"file", "shape", "dtype", "sha256", "shard", "val_tokens"}}; ``file``
    #: is relative to the experts directory
    probs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: {validation domain: -mean log p over the stored probabilities}
    losses: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    #: training details (device, parameters, tokens/s, the trainer's own validation losses)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[str | None] = mapped_column(String(32), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
