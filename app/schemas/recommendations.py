"""Recommendations: a mixture recommended from a fit, under constraints; and the baselines."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import Field, model_validator

from app.schemas.common import FiniteFloat, Name, NonNegFloat, Schema
from app.schemas.fits import MAX_TAGS, DomainVersionsMode, TargetScale
from app.schemas.limits import max_json
from app.schemas.projects import ConstraintsSpec
from app.schemas.runs import Tag


class ReferenceSpec(Schema):
    """A baseline to beat: exactly one of a baseline's name (``natural``, ``uniform``, ...), a
    stored recommendation or an explicit mixture. Every objective metric of the recommended
    mixture is then predicted no worse than the reference's (within ``tolerance``, in loss units)."""  # noqa: E501 (OpenAPI schema description: frozen text)

    baseline: str | None = Field(default=None, min_length=1, max_length=100)
    recommendation_id: int | None = Field(default=None, ge=1, le=2**63 - 1)
    mixture: dict[str, NonNegFloat] | None = None
    tolerance: NonNegFloat = 0.0

    @model_validator(mode="after")
    def _one(self) -> ReferenceSpec:
        given = [
            k for k in ("baseline", "recommendation_id", "mixture") if getattr(self, k) is not None
        ]
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
    #: the optimiser's random generator takes a non-negative seed
    random_state: int = Field(default=0, ge=0)
    #: recommend even from a fit marked untrusted (otherwise 409)
    allow_untrusted: bool = False
    #: keep each weight at most this much above the largest weight a run gave that domain
    trust_region: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)
    #: accept a weight beyond the runs' support (more than 3x the largest weight a run gave that
    #: domain + 0.02); otherwise such a recommendation is refused (the job fails, naming it)
    allow_extrapolation: bool = False
    #: recommend the average of the n_boot bootstrap refits' argmins (needs n_boot >= 2); null:
    #: the default (robust for smooth estimators when n_boot >= 2, see README)
    robust: bool | None = None
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
    #: a label for the recommendation, and tags to find it by (``GET .../recommendations?tag=``)
    name: Name | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)


class RecommendationUpdate(Schema):
    """Change a recommendation's labels: ``name`` (null clears it) and ``tags`` (replaced)."""

    name: Name | None = None
    tags: list[Tag] | None = Field(default=None, max_length=MAX_TAGS)


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
    name: str | None = None
    tags: list[str] = Field(default_factory=list)
    created_at: datetime


class RecommendationsPublic(Schema):
    data: list[RecommendationPublic]
    count: int


class BaselinesPublic(Schema):
    domains: list[str]
    mixtures: dict[str, dict[str, float]]
    unavailable: dict[str, str]
    #: hierarchical domains: each baseline's group totals, and the baselines breaking a group bound
    group_totals: dict[str, dict[str, float]] = Field(default_factory=dict)
    violates_groups: dict[str, bool] = Field(default_factory=dict)
