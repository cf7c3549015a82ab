"""Suggestions: the next proxy runs to train (planned runs)."""

from __future__ import annotations

from collections import Counter

from pydantic import Field, field_validator

from app.schemas.common import INT32, Schema
from app.schemas.runs import Tag


class SuggestionCreate(Schema):
    #: runs to plan; required except for ``reuse``, whose default is olmix-sized
    #: (runs_per_dim x dimensions explored, mixopt.mixing.reuse)
    count: int | None = Field(default=None, ge=1, le=10_000)
    #: auto: a RegMix swarm first, then GP expected improvement once there are runs; rounds:
    #: the next round of a swarm in rounds by hand (mixopt.mixing.rounds: the region around the
    #: best predicted mixtures is that of round ``n_runs / count``, at least 2; needs 3 runs)
    strategy: str = Field(
        default="auto", pattern="^(auto|swarm|space_filling|hierarchical|ei|reuse|rounds)$"
    )
    #: reuse: the recommendation whose mixture (on the old domain set) is frozen for the unchanged
    #: domains
    recommendation_id: int | None = Field(default=None, ge=1, le=2**63 - 1)
    temperature: float = Field(default=0.5, gt=0, le=10)
    min_weight: float = Field(default=1e-3, ge=0, lt=1)
    #: the design's random generator takes a non-negative seed
    seed: int = Field(default=0, ge=0, le=INT32 - 10_000)
    #: tags of the planned runs (each once: a run carries a tag at most once)
    tags: list[Tag] = Field(
        default_factory=lambda: ["suggested"], json_schema_extra={"uniqueItems": True}
    )

    @field_validator("tags")
    @classmethod
    def _distinct_tags(cls, tags: list[str]) -> list[str]:
        repeated = sorted(t for t, n in Counter(tags).items() if n > 1)
        if repeated:
            raise ValueError(f"tags must be distinct; repeated: {repeated}")
        return tags
