from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from app.schemas.common import INT32, FiniteFloat, Int32, Name, NonNegFloat, Schema
from app.schemas.limits import max_json

RunStatus = Literal["planned", "queued", "running", "succeeded", "failed", "cancelled"]
RunOrigin = Literal["reported", "trained"]
#: a run tag (the tag column holds 100 characters)
Tag = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]+$")]


class RunCreate(Schema):
    #: {domain: weight}; weights finite, >= 0, summing to 1 (omitted domains are 0)
    mixture: dict[str, NonNegFloat] = Field(min_length=1)
    #: final metrics, e.g. per-domain validation losses {metric: value}
    metrics: dict[str, FiniteFloat] = Field(default_factory=dict)
    name: Name | None = None
    external_id: str | None = Field(default=None, max_length=200)
    model_params: int | None = Field(default=None, gt=0)
    train_tokens: int | None = Field(default=None, gt=0)
    train_steps: int | None = Field(default=None, gt=0, le=INT32)
    seed: Int32 | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    #: default: succeeded when metrics are given, planned otherwise
    status: RunStatus | None = None
    origin: RunOrigin = "reported"
    details: Annotated[dict[str, Any], max_json] = Field(default_factory=dict)


class RunBatchCreate(Schema):
    runs: list[RunCreate] = Field(min_length=1)


class RunUpdate(Schema):
    """Report results of a planned run, or fix its labels."""

    metrics: dict[str, FiniteFloat] | None = None
    status: RunStatus | None = None
    name: Name | None = None
    model_params: int | None = Field(default=None, gt=0)
    train_tokens: int | None = Field(default=None, gt=0)
    train_steps: int | None = Field(default=None, gt=0, le=INT32)
    seed: Int32 | None = None
    tags: list[Tag] | None = Field(default=None, max_length=50)
    error: str | None = None


class RunPublic(Schema):
    id: int
    project_id: int
    name: str | None
    external_id: str | None
    mixture: dict[str, float]
    metrics: dict[str, float]
    model_params: int | None
    train_tokens: int | None
    train_steps: int | None
    seed: int | None
    tags: list[str]
    status: str
    origin: str
    details: dict[str, Any]
    error: str | None
    job_id: str | None
    created_at: datetime
    updated_at: datetime
    #: the version of the project's domain set the mixture is over (GET .../domain-sets)
    domain_version: int = 1


class RunsCreated(Schema):
    count: int
    ids: list[int]


class RunsPage(Schema):
    data: list[RunPublic]
    count: int
    next_cursor: str | None


class CurvePointCreate(Schema):
    step: int = Field(ge=0, le=INT32)
    tokens: int | None = Field(default=None, ge=0)
    metrics: dict[str, FiniteFloat] = Field(min_length=1)


class CurvePointsCreate(Schema):
    points: list[CurvePointCreate] = Field(min_length=1, max_length=100_000)


class CurvePointPublic(Schema):
    step: int
    tokens: int | None
    metrics: dict[str, float]


class CurvePublic(Schema):
    run_id: int
    points: list[CurvePointPublic]
    added: int = 0


class ImportResult(Schema):
    format: str
    created: int
    skipped: int
    domains_created: list[str]
    metrics: list[str]
    ids: list[int]
    #: ids present in one file only, left out: {"mixtures": [...], "metrics": [...]}
    unmatched: dict[str, list[str]] = Field(default_factory=dict)
    #: non-numeric columns left out, per file
    ignored_columns: dict[str, list[str]] = Field(default_factory=dict)


class RunImport(RunCreate):
    """One run of a JSON export (``GET .../runs/export?format=json``), read back by
    ``POST .../runs/import/json``: everything a new run takes, plus its error and loss curve.
    ``id``, ``job_id`` and the timestamps belong to the source project and are ignored."""

    error: str | None = Field(default=None, max_length=100_000)
    curve: list[CurvePointCreate] = Field(default_factory=list)
    id: int | None = None
    job_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class RunsDocument(Schema):
    """The JSON export of a project's runs."""

    format: Literal["mixopt-runs"] = "mixopt-runs"
    version: Literal[1] = 1
    project: str | None = None
    #: the source project's domains, in order (a project with no domains takes them)
    domains: list[Name] = Field(default_factory=list)
    runs: list[RunImport] = Field(min_length=1)


__all__ = ["NonNegFloat", "Tag"]
