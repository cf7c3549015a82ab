"""Validation trainings: train several mixtures with the same seeds and compare them, paired."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, Field, model_validator

from app.schemas.common import Name, NonNegFloat, Schema
from app.schemas.jobs import JobPublic
from app.schemas.limits import queue_name

#: limits on one validation (a 422 names the field): it is a check before a big training, not a
#: swarm
MAX_MIXTURES = 12
MAX_SEEDS = 10
MAX_RUNS = 64
MAX_TRAIN_STEPS = 20_000


class ValidationMixture(Schema):
    """One mixture to train: exactly one of ``recommendation_id``, ``baseline`` or ``mixture``."""

    recommendation_id: int | None = Field(default=None, ge=1)
    #: natural, uniform (or stratified), temperature, unimax, entropy (conditional) or
    #: entropy_<variant>
    baseline: str | None = Field(default=None, pattern=r"^[a-z_]{1,40}$")
    mixture: dict[str, NonNegFloat] | None = None
    #: shown in the comparison (default: "recommendation <id>", the baseline's name, "mixture <i>")
    label: Name | None = None
    #: compare every other mixture against this one (default: true for baselines)
    reference: bool | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ValidationMixture:
        given = [
            k for k in ("recommendation_id", "baseline", "mixture") if getattr(self, k) is not None
        ]
        if len(given) != 1:
            raise ValueError("give exactly one of recommendation_id, baseline or mixture")
        return self


class ValidationCreate(Schema):
    mixtures: list[ValidationMixture] = Field(min_length=2, max_length=MAX_MIXTURES)
    preset: str = "tiny"
    train_steps: int = Field(default=300, ge=1, le=MAX_TRAIN_STEPS)
    #: every mixture trains once per seed (same initialisation and batches: common random numbers)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1, max_length=MAX_SEEDS)
    batch_size: int = Field(default=16, ge=1, le=4096)
    block_size: int = Field(default=128, ge=8, le=8192)
    eval_interval: int = Field(default=50, ge=1)
    learning_rate: float | None = Field(default=None, gt=0, le=1)
    #: shape overrides of the preset (e.g. a wider model to check the mixture at ~4x parameters)
    n_layer: int | None = Field(default=None, ge=1, le=64)
    n_head: int | None = Field(default=None, ge=1, le=64)
    n_embd: int | None = Field(default=None, ge=8, le=8192)
    #: Celery queue of the validation's job and its helper jobs: one of MIXOPT_QUEUES (a queue no
    #: worker consumes would leave them pending forever)
    queue: Annotated[str, AfterValidator(queue_name)] = Field(
        default="gpu", pattern=r"^[A-Za-z0-9_.-]{1,64}$"
    )

    @model_validator(mode="after")
    def _limits(self) -> ValidationCreate:
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds: must be distinct")
        if any(not 0 <= s <= 2**31 - 1 for s in self.seeds):
            raise ValueError("seeds: must be in [0, 2^31 - 1]")
        runs = len(self.mixtures) * len(self.seeds)
        if runs > MAX_RUNS:
            raise ValueError(f"mixtures x seeds: {runs} runs, at most {MAX_RUNS} in one validation")
        return self


class MixtureSummary(Schema):
    label: str
    source: str
    mixture: dict[str, float]
    reference: bool
    run_ids: list[int]
    #: objective per seed (in the order of ``seeds``)
    objective: list[float]
    mean: float
    std: float
    #: per domain: {"mean", "std", "values"}
    domains: dict[str, dict[str, Any]]


class PairedDifference(Schema):
    """``label`` minus ``reference``, seed by seed (negative: lower loss than the reference)."""

    label: str
    reference: str
    differences: list[float]
    mean: float
    std: float
    #: Student t interval of the mean difference (None with one seed)
    interval_low: float | None
    interval_high: float | None
    confidence: float
    #: seeds on which ``label`` has the lower objective
    wins: int
    seeds: int
    #: per domain: mean paired difference
    domains: dict[str, float]


class ValidationResult(Schema):
    objective: dict[str, float]
    seeds: list[int]
    mixtures: list[MixtureSummary]
    comparisons: list[PairedDifference]
    n_params: int | None = None
    notes: list[str] = Field(default_factory=list)


class ValidationPublic(Schema):
    id: int
    project_id: int
    job_id: str | None
    status: str
    mixtures: list[dict[str, Any]]
    seeds: list[int]
    preset: str
    train_steps: int
    settings: dict[str, Any]
    objective: dict[str, float]
    run_ids: list[list[int]]
    result: ValidationResult | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None


class ValidationsPublic(Schema):
    data: list[ValidationPublic]
    count: int


class ValidationAccepted(Schema):
    validation: ValidationPublic
    job: JobPublic
    job_url: str
