"""A project's domains: the changes that make a new domain-set version, every version's record,
and the 202 answer of an ingestion."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import Field

from app.schemas.common import INT32, Name, Schema
from app.schemas.jobs import JobPublic
from app.schemas.limits import max_items
from app.schemas.projects import DomainSpec


class DomainChanges(Schema):
    """One change of a project's domain set; it makes a new version (the old one stays readable).

    ``add``: new domains (appended). ``remove``: domains to retire; runs that used them keep
    their mixture on the old version. ``split {"web": ["web_news", "web_blog"]}``: one domain
    into parts (names, or domain specs with token counts), in its place. ``merge {"books":
    ["pg19", "books3"]}``: several domains into one, at the first part's place (its token count
    is the parts' sum). ``base_version``: the version these changes were made against; another
    change in between is a 409 (omitted: the current version).
    """

    add: list[DomainSpec] = Field(default_factory=list, max_length=10_000)
    remove: list[Name] = Field(default_factory=list, max_length=10_000)
    #: each at most MIXOPT_MAX_DOMAINS entries (and parts), like the project's domain list
    split: Annotated[
        dict[Name, Annotated[list[Name | DomainSpec], max_items("max_domains")]],
        max_items("max_domains"),
    ] = Field(default_factory=dict)
    merge: Annotated[
        dict[Name, Annotated[list[Name], max_items("max_domains")]], max_items("max_domains")
    ] = Field(default_factory=dict)
    base_version: int | None = Field(default=None, ge=1, le=INT32)


class DomainSetDomain(Schema):
    name: str
    token_count: int | None = None
    group: str | None = None


class DomainSetPublic(Schema):
    version: int
    #: the project's current version
    current: bool
    domains: list[DomainSetDomain]
    #: what made this version from the previous one: {"add", "remove", "split", "merge", "via"} and
    #: ``constraints_dropped`` (constraint entries on domains that left the set)
    changes: dict[str, Any]
    created_at: datetime
    #: runs stored on this version
    run_count: int = 0


class DomainHistory(Schema):
    """A domain's life across versions; ``retired`` when the current version lacks it."""

    name: str
    first_version: int
    last_version: int
    retired: bool


class DomainSetsPublic(Schema):
    data: list[DomainSetPublic]
    count: int
    current_version: int
    history: list[DomainHistory]


class IngestAccepted(Schema):
    job: JobPublic
    job_url: str
