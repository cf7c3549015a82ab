from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from app.schemas.common import INT32, Name, Schema


class TokenCreate(Schema):
    name: Name
    #: admin: everything; write/read: only the listed projects (and projects it creates)
    role: Literal["admin", "write", "read"] = "write"
    project_ids: list[Annotated[int, Field(ge=1, le=INT32)]] = Field(default_factory=list)


class TokenPublic(Schema):
    id: int
    name: str
    prefix: str
    role: str
    project_ids: list[int]
    created_at: datetime
    revoked_at: datetime | None


class TokenCreated(TokenPublic):
    #: the token itself: shown once, stored only as a hash
    token: str


class TokensPublic(Schema):
    data: list[TokenPublic]
    count: int
