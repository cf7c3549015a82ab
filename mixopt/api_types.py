"""Typed results of the mixopt API, shared by the client (``mixopt.client``) and the service.

This module imports only pydantic, so ``pip install mixopt`` (the client) has it without the
server. The service's own response schemas (``app/schemas``) are stricter and may carry
more fields; these models accept fields they do not know (``extra="allow"``), so a newer server
never breaks an older client. ``tests/api/test_contract.py`` checks that every field declared
here exists, with a compatible type, in the API's response schema of the same resource.

The error body and the state vocabulary are defined here once and used by both sides:

- every error answer is :class:`ErrorBody` ``{"detail": "<field>: <message>", "errors":
  [{"field", "message"}]}``;
- runs and jobs share one vocabulary of states (:data:`STATES`): a job waiting for a worker is
  ``queued`` (the database says ``pending``; filters accept both, see :func:`job_state_filter`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

#: run states, in lifecycle order
RUN_STATES = ("planned", "queued", "running", "succeeded", "failed", "cancelled")
#: job states as stored (``pending`` = waiting for a worker)
JOB_STATES = ("pending", "running", "succeeded", "failed", "cancelled")
#: the one vocabulary a filter accepts for runs and jobs alike
STATES = RUN_STATES + ("pending",)
#: a job or run that will not change any more
FINAL_STATES = ("succeeded", "failed", "cancelled")

RunState = Literal["planned", "queued", "running", "succeeded", "failed", "cancelled"]
StateFilter = Literal["planned", "queued", "pending", "running", "succeeded", "failed", "cancelled"]


def job_state_filter(state: str) -> str:
    """The stored job state for a filter value: ``queued`` and ``pending`` are the same state."""
    return "pending" if state == "queued" else state


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    # read like the dicts the client used to return: ``project["id"]``, ``run.get("seed")``
    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and (
            key in type(self).model_fields or key in (self.model_extra or {})
        )

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)


class ErrorItem(BaseModel):
    """One problem in a request: the field it concerns (``""`` when none) and what is wrong."""

    field: str = Field(description="dotted path of the offending field, e.g. `runs[3].mixture.web`")
    message: str


class ErrorBody(BaseModel):
    """The body of every 4xx/5xx answer."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "detail": "mixture: weights sum to 0.6, not 1",
                "errors": [{"field": "mixture", "message": "weights sum to 0.6, not 1"}],
            }
        }
    )

    detail: str = Field(description="one line for people; names the field")
    errors: list[ErrorItem] = Field(default_factory=list, description="every problem, for programs")


class Domain(_Model):
    name: str
    token_count: int | None = None
    token_count_measured: bool = False
    source: dict[str, Any] | None = None
    stats: dict[str, Any] | None = None


class Project(_Model):
    id: int
    name: str
    description: str | None = None
    domains: list[Domain] = Field(default_factory=list)
    objective: dict[str, float] | None = None
    constraints: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    run_count: int = 0
    #: the current version of the domain set (:meth:`MixoptClient.domain_sets`)
    domain_version: int = 1

    @property
    def domain_names(self) -> list[str]:
        return [d.name for d in self.domains]


class Run(_Model):
    id: int
    project_id: int
    name: str | None = None
    external_id: str | None = None
    mixture: dict[str, float]
    metrics: dict[str, float] = Field(default_factory=dict)
    model_params: int | None = None
    train_tokens: int | None = None
    train_steps: int | None = None
    seed: int | None = None
    tags: list[str] = Field(default_factory=list)
    status: str
    origin: str = "reported"
    details: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    job_id: str | None = None
    created_at: datetime
    updated_at: datetime
    #: the domain-set version the mixture is over
    domain_version: int = 1


class Job(_Model):
    id: str
    project_id: int | None = None
    kind: str
    state: str
    progress: float = 0.0
    message: str | None = None
    error: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    result: dict[str, Any] | None = None
    queue: str = "default"
    attempts: int = 0
    cancel_requested: bool = False
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float | None = None
    #: the X-Request-ID of the request that created the job
    request_id: str | None = None

    @property
    def done(self) -> bool:
        return self.state in FINAL_STATES


class Fit(_Model):
    id: int
    project_id: int
    job_id: str | None = None
    estimator: str
    params: dict[str, Any] = Field(default_factory=dict)
    target: dict[str, float] = Field(default_factory=dict)
    status: str
    domains: list[str] = Field(default_factory=list)
    run_ids: list[int] = Field(default_factory=list)
    state: dict[str, Any] | None = None
    fidelity: dict[str, Any] | None = None
    timings: dict[str, float] | None = None
    notes: str | None = None
    error: str | None = None
    #: runs by domain-set version: reused, mapped into the fit's set, dropped (and why)
    domain_versions: dict[str, Any] | None = None
    name: str | None = None
    tags: list[str] = Field(default_factory=list)
    created_at: datetime
    finished_at: datetime | None = None


class DomainSet(_Model):
    """One version of a project's domain set: its domains, what changed, how many runs it holds."""

    version: int
    current: bool = False
    domains: list[dict[str, Any]] = Field(default_factory=list)
    changes: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    run_count: int = 0

    @property
    def domain_names(self) -> list[str]:
        return [d["name"] for d in self.domains]


class DomainSets(_Model):
    """Every version (``data``), the current one, and each domain's ``history``."""

    data: list[DomainSet]
    count: int
    current_version: int
    history: list[dict[str, Any]] = Field(default_factory=list)


class Recommendation(_Model):
    id: int
    project_id: int
    fit_id: int | None = None
    job_id: str | None = None
    source: str
    mixture: dict[str, float]
    predicted: float | None = None
    interval_low: float | None = None
    interval_high: float | None = None
    binding: list[str] = Field(default_factory=list)
    constraints: dict[str, Any] = Field(default_factory=dict)
    target_scale: dict[str, Any] = Field(default_factory=dict)
    details: dict[str, Any] = Field(default_factory=dict)
    name: str | None = None
    tags: list[str] = Field(default_factory=list)
    created_at: datetime


class OnlineSession(_Model):
    id: int
    project_id: int
    name: str | None = None
    algorithm: str
    params: dict[str, Any] = Field(default_factory=dict)
    domains: list[str] = Field(default_factory=list)
    weights: dict[str, float] = Field(default_factory=dict)
    version: int = 0
    applies_from_step: int = 0
    schedule: dict[str, Any] = Field(default_factory=dict)
    status: str
    last_remix_at: datetime | None = None
    error: str | None = None
    created_at: datetime
    pending_observations: int = 0


class Weights(_Model):
    session_id: int
    algorithm: str
    version: int
    step: int
    weights: dict[str, float]
    mixture_for_step: dict[str, float] | None = None
    needs_eval: bool | None = None
    plan: dict[str, Any] | None = None
    final_weights: dict[str, float] = Field(default_factory=dict)


class Token(_Model):
    id: int
    name: str
    prefix: str
    role: str
    project_ids: list[int] = Field(default_factory=list)
    created_at: datetime
    revoked_at: datetime | None = None
    #: only in the answer that created it
    token: str | None = None


class JobAccepted(_Model):
    """A 202 answer: the job to poll (``job_url``); a fit also returns the fit row."""

    job: Job
    job_url: str
    fit: Fit | None = None


class SwarmAccepted(_Model):
    tag: str
    run_ids: list[int]
    jobs: list[Job]
    #: strategy rounds: the job that plans every round after the first
    rounds_job: Job | None = None


T = TypeVar("T")


class Page(_Model, Generic[T]):
    """One page of a list: ``data`` and the total ``count``; runs also give ``next_cursor``."""

    data: list[T]
    count: int
    next_cursor: str | None = None


#: the API's response schema (app/schemas) each model mirrors, for the contract test
MIRRORS = {
    Project: "ProjectPublic",
    Domain: "DomainPublic",
    Run: "RunPublic",
    Job: "JobPublic",
    Fit: "FitPublic",
    Recommendation: "RecommendationPublic",
    OnlineSession: "OnlineSessionPublic",
    Weights: "WeightsPublic",
    Token: "TokenCreated",
    SwarmAccepted: "SwarmAccepted",
    DomainSet: "DomainSetPublic",
    DomainSets: "DomainSetsPublic",
}
