"""Rules about a project's domains that both projects and domain-set versions apply.

A lower module: it imports neither :mod:`app.services.projects` nor
:mod:`app.services.domains`, so those two no longer import each other.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from app.core.config import get_settings
from app.schemas.projects import DomainSpec
from app.services import sources
from app.services import tokens as token_service
from app.services.errors import Invalid
from app.store.models import ApiToken, Domain


def check_domain_count(n: int, field: str = "domains") -> None:
    """A project holds at most ``MIXOPT_MAX_DOMAINS`` domains, whichever path adds them."""
    limit = get_settings().max_domains
    if n > limit:
        raise Invalid(
            f"a project may have at most {limit} domains (MIXOPT_MAX_DOMAINS), got {n}", field=field
        )


def check_domains(domains: list[DomainSpec], token: ApiToken | None = None) -> None:
    """Count, distinct names and data sources the token may use (422 naming the field)."""
    check_domain_count(len(domains))
    seen: set[str] = set()
    for i, d in enumerate(domains):
        if d.name in seen:
            raise Invalid(f"domain {d.name!r} is listed twice", field=f"domains[{i}].name")
        seen.add(d.name)
        if d.source is not None:
            sources.check_source(
                d.source.model_dump(), field=f"domains[{i}].source", admin=is_admin(token)
            )


def is_admin(token: ApiToken | None) -> bool:
    """Whether ``token`` registers sources as an admin (None: no token, not an admin)."""
    return token is not None and token_service.is_admin(token)


def declared_groups(domains: Iterable[Any]) -> dict[str, str]:
    """``{domain: declared group path}`` of domain rows or specs that declare one."""
    return {
        d.name: g
        for d in domains
        if (g := getattr(d, "group", None) or getattr(d, "group_path", None))
    }


def domain_row(position: int, spec: DomainSpec, admin: bool = False) -> Domain:
    """A new domain row from its spec; ``admin``: an admin token registers its source (ingestion
    then reads it with the admin-only roots too)."""
    return Domain(
        position=position,
        name=spec.name,
        token_count=spec.token_count,
        source=spec.source.model_dump() if spec.source else None,
        source_admin=admin and spec.source is not None,
        trainer_paths=spec.trainer_paths,
        documents=spec.documents,
        group_path=spec.group,
    )


def natural_prior(token_counts: list[int | None]) -> np.ndarray | None:
    """The natural (token-proportional) mixture, or None when a domain has no token count."""
    if not all(token_counts):
        return None
    c = np.array(token_counts, dtype=float)
    return c / c.sum()
