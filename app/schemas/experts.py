"""Domain experts (Mixture of Data Experts): training them, uploading their probabilities."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, Field, model_validator

from app.core.config import get_settings
from app.schemas.common import INT32, Name, Schema
from app.schemas.jobs import JobPublic
from app.schemas.limits import max_value, queue_name


class ExpertsCreate(Schema):
    """Train one expert per domain (a one-hot mixture) on the workers.

    ``swarm`` takes the preset, budget, seed and trainer settings of a trained swarm (its tag),
    so the experts are trained like the swarm's runs (the Mixture of Data Experts setup); any
    field given here overrides the swarm's. Without ``swarm``, exactly one of ``train_steps`` or
    ``train_tokens`` is required.
    """

    #: the domains to train an expert on (default: every domain of the project)
    domains: list[Name] | None = Field(default=None, min_length=1, max_length=1000)
    #: the tag of a trained swarm whose settings the experts take
    swarm: Name | None = None
    preset: str | None = None
    #: at most MIXOPT_MAX_TRAIN_STEPS
    train_steps: Annotated[int | None, max_value("max_train_steps")] = Field(
        default=None, gt=0, le=INT32
    )
    train_tokens: int | None = Field(default=None, gt=0, le=2**62)
    seed: int | None = Field(default=None, ge=0, le=INT32)
    batch_size: int | None = Field(default=None, ge=1, le=4096)
    block_size: int | None = Field(default=None, ge=8, le=8192)
    eval_interval: int | None = Field(default=None, ge=1, le=INT32)
    learning_rate: float | None = Field(default=None, gt=0, le=1)
    #: an existing expert of a requested domain is trained again (its files replaced); without
    #: it, such a domain is a 409
    replace: bool = False
    #: Celery queue of the training job: one of MIXOPT_QUEUES
    queue: Annotated[str, AfterValidator(queue_name)] = Field(
        default="gpu", pattern=r"^[A-Za-z0-9_.-]{1,64}$"
    )

    @model_validator(mode="after")
    def _budget(self) -> ExpertsCreate:
        if self.train_steps is not None and self.train_tokens is not None:
            raise ValueError("give at most one of train_steps or train_tokens")
        if self.swarm is None and self.train_steps is None and self.train_tokens is None:
            raise ValueError("give train_steps or train_tokens (or a swarm to take them from)")
        per_step = (self.batch_size or 16) * (self.block_size or 128)
        if per_step > get_settings().max_tokens_per_step:
            raise ValueError(
                f"batch_size x block_size = {per_step} tokens per step; at most "
                f"{get_settings().max_tokens_per_step} (MIXOPT_MAX_TOKENS_PER_STEP)"
            )
        return self


class ExpertProbsFile(Schema):
    """One stored probability array: the expert's probability of every observed next token of a
    validation domain, over the trainer's fixed evaluation windows."""

    shape: list[int]
    dtype: str
    #: sha256 of the stored ``.npy`` file
    sha256: str
    #: content hash of the validation shard the tokens come from (the ingested shard directory)
    shard: str | None
    #: tokens in the validation split the windows were cut from
    val_tokens: int


class ExpertPublic(Schema):
    id: int
    project_id: int
    domain: str
    status: str
    origin: str
    preset: str | None
    train_steps: int | None
    train_tokens: int | None
    seed: int | None
    block_size: int
    n_windows: int
    #: per validation domain
    probs: dict[str, ExpertProbsFile]
    #: per validation domain: -mean log p over the stored probabilities (nats per token)
    losses: dict[str, float]
    #: validation domains of the project without probabilities yet
    missing: list[str]
    details: dict[str, Any]
    error: str | None
    job_id: str | None
    created_at: datetime
    updated_at: datetime


class ExpertsPublic(Schema):
    """The experts' table: one row per expert, its loss on each validation domain."""

    data: list[ExpertPublic]
    count: int
    #: the project's domains, in order (the columns of ``losses``)
    domains: list[str]


class ExpertsAccepted(Schema):
    experts: list[ExpertPublic]
    job: JobPublic
    job_url: str
