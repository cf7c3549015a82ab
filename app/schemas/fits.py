from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from app.schemas.common import INT32, FiniteFloat, NonNegFloat, Schema
from app.schemas.jobs import JobPublic
from app.schemas.limits import max_items, max_json
from app.schemas.projects import ConstraintsSpec

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
    #: {metric: weight}; default: the project's objective, else the mean of the metrics every run has
    target: dict[str, NonNegFloat] | None = None
    run_filter: RunFilter = Field(default_factory=RunFilter)
    cv_folds: int = Field(default=5, ge=2, le=20)
    random_state: int = 0
    #: answer at this scale (through the steps/size laws when it lies beyond the runs);
    #: required when the selected runs span several model sizes or budgets
    target_scale: TargetScale | None = None
    #: runs of older domain-set versions: "compatible" brings them into the current set where
    #: valid (splits shared by tokens; runs on removed domains dropped); "current": only runs
    #: stored on the current version
    domain_versions: DomainVersionsMode = "compatible"


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
    mixtures: Annotated[list[dict[str, NonNegFloat]], max_items("max_predict_mixtures")] = Field(min_length=1)
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


class ReferenceSpec(Schema):
    """A baseline to beat: exactly one of a baseline's name (``natural``, ``uniform``, ...), a
    stored recommendation or an explicit mixture. Every objective metric of the recommended
    mixture is then predicted no worse than the reference's (within ``tolerance``, in loss units)."""

    baseline: str | None = Field(default=None, min_length=1, max_length=100)
    recommendation_id: int | None = Field(default=None, ge=1, le=2**63 - 1)
    mixture: dict[str, NonNegFloat] | None = None
    tolerance: NonNegFloat = 0.0

    @model_validator(mode="after")
    def _one(self) -> ReferenceSpec:
        given = [k for k in ("baseline", "recommendation_id", "mixture") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of baseline, recommendation_id or mixture")
        return self


class PhaseSpec(Schema):
    """One phase of a staged mixture: its token budget and, optionally, its own objective
    weights over the fit's metrics (default: the project's objective)."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    tokens: int = Field(gt=0, le=2**63 - 1)
    objective: dict[str, NonNegFloat] | None = None


class RecommendationCreate(Schema):
    """Recommend from an existing fit, or fit ``estimator`` first (in the same job)."""

    fit_id: int | None = None
    estimator: str | None = None
    params: Annotated[dict[str, Any], max_json] = Field(default_factory=dict)
    #: replaces the project's constraints for this recommendation
    constraints: ConstraintsSpec | None = None
    target_scale: TargetScale = Field(default_factory=TargetScale)
    n_boot: int = Field(default=20, ge=0, le=200)
    random_state: int = 0
    #: recommend even from a fit marked untrusted (otherwise 409)
    allow_untrusted: bool = False
    #: keep each weight at most this much above the largest weight a run gave that domain
    trust_region: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)
    #: trees: RegMix's simulation (samples, top-k average); refine=true adds a local refinement
    n_samples: int = Field(default=100_000, ge=1000, le=1_000_000)
    top_k: int = Field(default=128, ge=1, le=100_000)
    refine: bool = False
    #: a baseline to beat (ReferenceSpec): no objective metric predicted worse than the reference's
    reference: ReferenceSpec | None = None
    #: a staged mixture: one mixture per phase, epoch caps counted across phases (at most 8 phases)
    phases: list[PhaseSpec] | None = Field(default=None, min_length=1, max_length=8)
    #: with ``estimator``: which domain-set versions the fit's runs come from (FitCreate)
    domain_versions: DomainVersionsMode = "compatible"


class RecommendationPublic(Schema):
    id: int
    project_id: int
    fit_id: int | None
    job_id: str | None
    source: str
    mixture: dict[str, float]
    predicted: FiniteFloat | None
    interval_low: FiniteFloat | None
    interval_high: FiniteFloat | None
    binding: list[str]
    constraints: dict[str, Any]
    target_scale: dict[str, Any]
    details: dict[str, Any]
    created_at: datetime


class RecommendationsPublic(Schema):
    data: list[RecommendationPublic]
    count: int


class JobAccepted(Schema):
    job: JobPublic
    job_url: str


class SuggestionCreate(Schema):
    #: runs to plan; required except for ``reuse``, whose default is olmix-sized
    #: (runs_per_dim x dimensions explored, mixopt.mixing.reuse)
    count: int | None = Field(default=None, ge=1, le=10_000)
    #: auto: a RegMix swarm first, then GP expected improvement once there are runs
    strategy: str = Field(default="auto", pattern="^(auto|swarm|space_filling|hierarchical|ei|reuse)$")
    #: reuse: the recommendation whose mixture (on the old domain set) is frozen for the unchanged domains
    recommendation_id: int | None = Field(default=None, ge=1, le=2**63 - 1)
    temperature: float = Field(default=0.5, gt=0, le=10)
    min_weight: float = Field(default=1e-3, ge=0, lt=1)
    seed: int = Field(default=0, ge=-INT32, le=INT32 - 10_000)
    tags: list[str] = Field(default_factory=lambda: ["suggested"])


class BaselinesPublic(Schema):
    domains: list[str]
    mixtures: dict[str, dict[str, float]]
    unavailable: dict[str, str]
    #: hierarchical domains: each baseline's group totals, and the baselines breaking a group bound
    group_totals: dict[str, dict[str, float]] = Field(default_factory=dict)
    violates_groups: dict[str, bool] = Field(default_factory=dict)
