"""Fits: an estimator fitted on a project's runs, and its predictions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from app.schemas.common import INT32, Name, NonNegFloat, Schema
from app.schemas.jobs import JobPublic
from app.schemas.limits import max_items, max_json
from app.schemas.runs import Tag

#: at most this many tags on a fit or a recommendation (as on a run)
MAX_TAGS = 50

DomainVersionsMode = Literal["compatible", "current"]


class RunFilter(Schema):
    """Which runs a fit uses (default: every succeeded run of the project)."""

    status: str = "succeeded"
    tag: str | None = None
    model_params: int | None = None
    train_tokens: int | None = None
    #: 32-bit columns: a larger number cannot match and must not reach the database
    train_steps: int | None = Field(default=None, ge=-INT32, le=INT32)
    run_ids: list[Annotated[int, Field(ge=-INT32, le=INT32)]] | None = None


class TargetScale(Schema):
    """The scale an answer is for: model size (non-embedding parameters) and budget."""

    model_params: int | None = Field(default=None, gt=0)
    train_tokens: int | None = Field(default=None, gt=0)
    train_steps: int | None = Field(default=None, gt=0)

    def given(self) -> dict[str, int] | None:
        d = {k: v for k, v in self.model_dump().items() if v is not None}
        return d or None


class FitCreate(Schema):
    #: a registered estimator (see GET /v1/estimators) or "auto"
    estimator: str = "auto"
    params: Annotated[dict[str, Any], max_json] = Field(default_factory=dict)
    #: {metric: weight}; default: the project's objective, else the mean of the metrics every run
    #: has
    target: dict[str, NonNegFloat] | None = None
    run_filter: RunFilter = Field(default_factory=RunFilter)
    cv_folds: int = Field(default=5, ge=2, le=20)
    #: the CV split's (and auto's candidates') random generators take a non-negative seed
    random_state: int = Field(default=0, ge=0)
    #: answer at this scale (through the steps/size laws when it lies beyond the runs);
    #: required when the selected runs span several model sizes or budgets
    target_scale: TargetScale | None = None
    #: runs of older domain-set versions: "compatible" brings them into the current set where
    #: valid (splits shared by tokens; runs on removed domains dropped); "current": only runs
    #: stored on the current version
    domain_versions: DomainVersionsMode = "compatible"
    #: a label for the fit, and tags to find it by (``GET .../fits?tag=``)
    name: Name | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)


class FitUpdate(Schema):
    """Change a fit's labels: ``name`` (null clears it) and ``tags`` (replaced as a whole)."""

    name: Name | None = None
    tags: list[Tag] | None = Field(default=None, max_length=MAX_TAGS)


class FitPublic(Schema):
    id: int
    project_id: int
    job_id: str | None
    estimator: str
    params: dict[str, Any]
    run_filter: dict[str, Any]
    target: dict[str, float]
    status: str
    domains: list[str]
    run_ids: list[int]
    state: dict[str, Any] | None
    fidelity: dict[str, Any] | None
    timings: dict[str, float] | None
    notes: str | None
    error: str | None
    target_scale: dict[str, Any] | None = None
    #: the scale the fit's answers are for
    scale: dict[str, Any] | None = None
    #: {"chain": the laws applied, with parameters and errors; "cross_scale": fit on the smaller,
    #: predict the largest; "extrapolated"}
    scaling: dict[str, Any] | None = None
    trusted: bool | None = None
    trust_reasons: list[str] | None = None
    #: which domain-set versions the runs came from: {"mode", "version" (the fit's), and once fitted
    #: "by_version": {v: {"runs", "reused", "mapped", "dropped", "reasons"}}, totals, "notes"}
    domain_versions: dict[str, Any] | None = None
    name: str | None = None
    tags: list[str] = Field(default_factory=list)
    created_at: datetime
    finished_at: datetime | None


class FitsPublic(Schema):
    data: list[FitPublic]
    count: int


class FitAccepted(Schema):
    fit: FitPublic
    job: JobPublic
    job_url: str


class PredictRequest(Schema):
    mixtures: Annotated[list[dict[str, NonNegFloat]], max_items("max_predict_mixtures")] = Field(
        min_length=1
    )
    normalize: bool = False
    #: default: the fit's scale; another scale needs a fit made for it (BiMix: any step)
    target_scale: TargetScale | None = None


class PredictResponse(Schema):
    fit_id: int
    targets: list[str]
    #: per mixture, per target
    predictions: list[list[float]]
    objective: list[float]
    std: list[float] | None = None
    #: the scale these numbers are for, and how they were obtained
    scale: dict[str, Any] | None = None
    chain: list[dict[str, Any]] | None = None
    trusted: bool | None = None
