from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from app.schemas.common import INT32, FiniteFloat, Name, NonNegFloat, Schema
from app.schemas.jobs import JobAccepted
from app.schemas.limits import max_items, max_json


class Schedule(Schema):
    """When beat re-mixes: every N seconds and/or every N new observations (whichever first)."""

    every_seconds: int | None = Field(default=60, ge=1, le=INT32)
    every_observations: int | None = Field(default=None, ge=1, le=INT32)

    @model_validator(mode="after")
    def _one(self) -> Schedule:
        if self.every_seconds is None and self.every_observations is None:
            raise ValueError("set every_seconds or every_observations")
        return self


class OnlineSessionCreate(Schema):
    algorithm: Literal["aioli", "doremi", "odm"]
    params: Annotated[dict[str, Any], max_json] = Field(default_factory=dict)
    #: {domain: weight}; default uniform (Aioli from scratch) — pass a prior for warm starts
    initial_weights: dict[str, NonNegFloat] | None = None
    #: domains the session mixes (default: all of the project's, in order)
    domains: list[Name] | None = None
    schedule: Schedule = Field(default_factory=Schedule)
    #: the mixer's random generator takes a non-negative seed
    seed: int = Field(default=0, ge=0)
    name: Name | None = None


class OnlineSessionUpdate(Schema):
    status: Literal["active", "paused", "stopped"] | None = None
    schedule: Schedule | None = None


class OnlineSessionPublic(Schema):
    id: int
    project_id: int
    name: str | None
    algorithm: str
    params: dict[str, Any]
    domains: list[str]
    weights: dict[str, float]
    version: int
    applies_from_step: int
    schedule: dict[str, Any]
    status: str
    last_remix_at: datetime | None
    error: str | None
    created_at: datetime
    pending_observations: int = 0


class OnlineSessionsPublic(Schema):
    data: list[OnlineSessionPublic]
    count: int


class Observation(Schema):
    step: int = Field(ge=0, le=INT32)
    tokens: int | None = Field(default=None, ge=0)
    train_losses: dict[str, FiniteFloat] = Field(default_factory=dict)
    eval_losses: dict[str, FiniteFloat] = Field(default_factory=dict)
    #: the mixture the trainer used for the steps before this one (Aioli sweeps need it)
    mixture: dict[str, NonNegFloat] | None = None

    @model_validator(mode="after")
    def _some_loss(self) -> Observation:
        if not self.train_losses and not self.eval_losses:
            raise ValueError("an observation needs train_losses or eval_losses")
        return self


class ObservationsCreate(Schema):
    observations: Annotated[list[Observation], max_items("max_observations")] = Field(min_length=1)


class ObservationsAccepted(Schema):
    accepted: int
    duplicates: int
    pending: int


class WeightsPublic(Schema):
    session_id: int
    algorithm: str
    version: int
    #: the step these weights apply from
    step: int
    weights: dict[str, float]
    #: with ?step=N: the mixture to train step N on (Aioli's LearnParams sweeps differ from weights)
    mixture_for_step: dict[str, float] | None = None
    #: with ?step=N: whether the mixer needs eval_losses reported at step N
    needs_eval: bool | None = None
    #: with ?step=N: the mixer's plan {step, weights, phase, valid_until, eval_at}
    #: (see mixopt/online/PROTOCOL.md: Aioli's sweeps are scheduled, so a trainer can follow them)
    plan: dict[str, Any] | None = None
    #: the mixture the algorithm recommends at the end (DoReMi: the average over steps)
    final_weights: dict[str, float]


class HistoryPoint(Schema):
    version: int
    step: int
    weights: dict[str, float]
    n_observations: int
    created_at: datetime


class ObservationPublic(Schema):
    step: int
    tokens: int | None
    train_losses: dict[str, float]
    eval_losses: dict[str, float]
    processed: bool


class HistoryPublic(Schema):
    session_id: int
    weights: list[HistoryPoint]
    observations: list[ObservationPublic]


class RemixAccepted(JobAccepted):
    """The 202 of "re-mix now": the session, and the remix job to poll (``job``, ``job_url``)."""

    session_id: int
    queued: bool = True
