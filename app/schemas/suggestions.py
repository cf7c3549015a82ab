"""Suggestions: the next proxy runs to train (planned runs)."""

from __future__ import annotations

from pydantic import Field

from app.schemas.common import INT32, Schema


class SuggestionCreate(Schema):
    #: runs to plan; required except for ``reuse``, whose default is olmix-sized
    #: (runs_per_dim x dimensions explored, mixopt.mixing.reuse)
    count: int | None = Field(default=None, ge=1, le=10_000)
    #: auto: a RegMix swarm first, then GP expected improvement once there are runs
    strategy: str = Field(
        default="auto", pattern="^(auto|swarm|space_filling|hierarchical|ei|reuse)$"
    )
    #: reuse: the recommendation whose mixture (on the old domain set) is frozen for the unchanged
    #: domains
    recommendation_id: int | None = Field(default=None, ge=1, le=2**63 - 1)
    temperature: float = Field(default=0.5, gt=0, le=10)
    min_weight: float = Field(default=1e-3, ge=0, lt=1)
    seed: int = Field(default=0, ge=-INT32, le=INT32 - 10_000)
    tags: list[str] = Field(default_factory=lambda: ["suggested"])
