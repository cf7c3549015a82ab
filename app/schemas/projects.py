from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, model_validator

from app.schemas.common import Name, NonNegFloat, PositiveFloat, Schema


class DataSource(Schema):
    """Where a domain's text lives (a local directory, file or glob)."""

    path: str = Field(min_length=1, max_length=2000)
    format: Literal["auto", "txt", "jsonl", "parquet"] = "auto"
    text_field: str = "text"
    #: a Hugging Face ``tokenizers`` JSON file (``mixopt train-tokenizer``); default byte-level
    tokenizer: str | None = Field(default=None, max_length=2000)


#: export formats whose trainers read paths of their own (see app.services.exports)
TrainerPathFormat = Literal[
    "olmo-core", "megatron", "megatron:valid", "megatron:test", "hf", "levanter"
]


class DomainSpec(Schema):
    name: Name
    token_count: int | None = Field(default=None, ge=0)
    source: DataSource | None = None
    #: what each trainer reads, keyed by export format, e.g. {"olmo-core": ["s3://.../part-0.npy"],
    #: "megatron": ["/data/web_text_document"]}; the raw text stays in ``source``
    trainer_paths: (
        dict[TrainerPathFormat, list[Annotated[str, Field(min_length=1, max_length=2000)]]] | None
    ) = None
    #: number of documents (turns token shares into per-example probabilities for HF datasets)
    documents: int | None = Field(default=None, ge=1)
    #: group path ("web/news/high"); omitted: parsed from a ``source:topic:quality`` name
    group: str | None = Field(
        default=None, min_length=1, max_length=500, pattern=r"^/?[^/\s:][^/:]*(/[^/\s:][^/:]*)*/?$"
    )


class DomainPublic(DomainSpec):
    token_count_measured: bool = False
    #: measured at ingestion: token and byte counts, per-variant entropies (nats)
    stats: dict | None = None


class Bounds(Schema):
    min: NonNegFloat = 0.0
    max: NonNegFloat = 1.0

    @model_validator(mode="after")
    def _ordered(self) -> Bounds:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.max > 1:
            raise ValueError(f"max ({self.max}) is greater than 1")
        return self


class GroupBounds(Schema):
    """Bounds on a group's total weight; ``fixed`` sets the total exactly."""

    min: NonNegFloat = 0.0
    max: NonNegFloat = 1.0
    fixed: NonNegFloat | None = None

    @model_validator(mode="after")
    def _ordered(self) -> GroupBounds:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.max > 1 or (self.fixed is not None and self.fixed > 1):
            raise ValueError("a group's total is at most 1")
        return self


class ConstraintsSpec(Schema):
    """Constraints a recommended mixture must satisfy.

    ``bounds``: per-domain min/max weight. ``fixed``: weights that must not change.
    ``target_tokens`` with ``max_epochs`` (global) or ``max_epochs_per_domain`` cap each
    weight at ``tokens_i * epochs_i / target_tokens`` (olmix). ``kl_weight``: strength of the
    KL(w || prior) penalty toward the natural mixture in recommendations (0 = none).
    """

    bounds: dict[str, Bounds] = Field(default_factory=dict)
    fixed: dict[str, NonNegFloat] = Field(default_factory=dict)
    target_tokens: int | None = Field(default=None, gt=0)
    max_epochs: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    max_epochs_per_domain: dict[str, PositiveFloat] = Field(default_factory=dict)
    kl_weight: NonNegFloat = 0.0
    #: group totals by group path: {"web": {"min": 0.2, "max": 0.5}, "code": {"fixed": 0.3}}
    groups: dict[str, GroupBounds] = Field(default_factory=dict)
    #: read by the trainer exports (OLMo-core, HF); never guessed when absent
    sequence_length: int | None = Field(default=None, gt=0, le=2**31 - 1)
    global_batch_tokens: int | None = Field(default=None, gt=0, le=2**63 - 1)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)


class ProjectCreate(Schema):
    name: Name
    description: str | None = Field(default=None, max_length=10_000)
    #: at most MIXOPT_MAX_DOMAINS (checked by the service)
    domains: list[DomainSpec] = Field(default_factory=list)
    #: {evaluation metric: weight}; omitted = mean of all per-domain validation losses
    objective: dict[str, NonNegFloat] | None = None
    constraints: ConstraintsSpec = Field(default_factory=ConstraintsSpec)


class ProjectUpdate(Schema):
    name: Name | None = None
    description: str | None = Field(default=None, max_length=10_000)
    domains: list[DomainSpec] | None = None
    objective: dict[str, NonNegFloat] | None = None
    constraints: ConstraintsSpec | None = None


class ProjectPublic(Schema):
    id: int
    name: str
    description: str | None
    domains: list[DomainPublic]
    objective: dict[str, float] | None
    constraints: ConstraintsSpec
    created_at: datetime
    updated_at: datetime
    run_count: int = 0
    #: the current version of the domain set (GET .../domain-sets lists every version)
    domain_version: int = 1


class ProjectsPublic(Schema):
    data: list[ProjectPublic]
    count: int
