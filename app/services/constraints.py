"""A project's constraints: checked against its domains (422 naming the field) and translated
into the science's :class:`mixopt.mixing.constraints.Constraints` dict.

Used by projects, domain-set changes, recommendations, suggestions, swarms and baselines; it
imports none of them.
"""

from __future__ import annotations

from typing import Any

from app.schemas.projects import ConstraintsSpec
from app.services.domain_rules import declared_groups
from app.services.errors import Invalid
from app.store.models import Project


def check_groups(
    constraints: ConstraintsSpec, names: list[str], group_of: dict[str, str] | None
) -> None:
    """Group bounds name known groups and can be met by the members' own bounds."""
    if not constraints.groups:
        return
    from mixopt.mixing import hierarchy  # lazy: mixopt.mixing loads every estimator (~1.5 s)

    known = hierarchy.groups_of(names, group_of)
    for path in constraints.groups:
        if path.strip("/") not in known:
            raise Invalid(
                f"unknown group {path!r}; the domains' groups are {sorted(known)} (declare a "
                "domain's group, or name domains source:topic[:quality])",
                field=f"constraints.groups.{path}",
            )
    bounds = {d: (b.min, b.max) for d, b in constraints.bounds.items()}
    lo = {d: constraints.fixed.get(d, bounds.get(d, (0.0, 1.0))[0]) for d in names}
    hi = {d: constraints.fixed.get(d, bounds.get(d, (0.0, 1.0))[1]) for d in names}
    for path, g in constraints.groups.items():
        members = known[path.strip("/")]
        gmin, gmax = (g.fixed, g.fixed) if g.fixed is not None else (g.min, g.max)
        if sum(lo[d] for d in members) > gmax + 1e-9:
            raise Invalid(
                f"the minimums and fixed weights of {members} sum to more than the group's "
                f"total {gmax:g}",
                field=f"constraints.groups.{path}",
            )
        if sum(hi[d] for d in members) < gmin - 1e-9:
            raise Invalid(
                f"the maximums and fixed weights of {members} sum to less than the group's "
                f"total {gmin:g}",
                field=f"constraints.groups.{path}",
            )


def check_constraints(
    constraints: ConstraintsSpec, names: list[str], group_of: dict[str, str] | None = None
) -> None:
    """Constraints name only the project's domains and are satisfiable on their face."""
    check_groups(constraints, names, group_of)
    known = set(names)
    for field in ("bounds", "fixed", "max_epochs_per_domain"):
        for name in getattr(constraints, field):
            if name not in known:
                raise Invalid(
                    f"unknown domain {name!r}; the project's domains are {names}",
                    field=f"constraints.{field}.{name}",
                )
    fixed_total = sum(constraints.fixed.values())
    if fixed_total > 1 + 1e-9:
        raise Invalid(f"fixed weights sum to {fixed_total:.6g} > 1", field="constraints.fixed")
    lower = sum(b.min for b in constraints.bounds.values())
    if names and lower > 1 + 1e-9:
        raise Invalid(f"per-domain minimums sum to {lower:.6g} > 1", field="constraints.bounds")
    for name, w in constraints.fixed.items():
        b = constraints.bounds.get(name)
        if b and not (b.min - 1e-12 <= w <= b.max + 1e-12):
            raise Invalid(
                f"fixed weight {w} is outside its bounds [{b.min}, {b.max}]",
                field=f"constraints.fixed.{name}",
            )


def trim_constraints(
    project: Project, names: list[str], group_of: dict[str, str]
) -> tuple[ConstraintsSpec, list[str]]:
    """The project's constraints without the entries on domains (and groups) that left the set."""
    from mixopt.mixing import hierarchy  # lazy: mixopt.mixing loads every estimator (~1.5 s)

    spec = ConstraintsSpec.model_validate(project.constraints or {})
    dropped: list[str] = []
    keep = set(names)
    for field in ("bounds", "fixed", "max_epochs_per_domain"):
        entries = getattr(spec, field)
        for d in [d for d in entries if d not in keep]:
            dropped.append(f"constraints.{field}.{d}")
            del entries[d]
    known = hierarchy.groups_of(names, group_of)
    for path in [p for p in spec.groups if p.strip("/") not in known]:
        dropped.append(f"constraints.groups.{path}")
        del spec.groups[path]
    return spec, dropped


def check_epoch_caps(spec: ConstraintsSpec, project: Project) -> None:
    """Epoch caps (olmix: w_i <= tokens_i x epochs / target_tokens) need target_tokens and a token
    count for every domain: say so at the door, not in the job."""
    field = (
        "constraints.max_epochs"
        if spec.max_epochs is not None
        else "constraints.max_epochs_per_domain"
    )
    if spec.max_epochs is None and not spec.max_epochs_per_domain:
        check_target_tokens(spec.model_dump(), project)
        return
    if not spec.target_tokens:
        raise Invalid(
            "epoch caps are tokens_i x epochs / target_tokens: set constraints.target_tokens too",
            field="constraints.target_tokens",
        )
    missing = [d.name for d in project.domains if not d.token_count]
    if missing:
        raise Invalid(
            f"epoch caps need a token count for every domain; {missing} have none (declare "
            "token_count, or run POST .../domains/ingest on their sources)",
            field=field,
        )


def check_target_tokens(spec: dict[str, Any], project: Project) -> None:
    """``target_tokens`` without an epoch cap, once every domain has a token count: the
    science's availability caps need the three together (:meth:`Constraints.caps
    <mixopt.mixing.constraints.Constraints.caps>` refuses the pair), so a job designing or
    optimising mixtures would fail; a 422 at the request instead. Without every token count the
    translation leaves ``target_tokens`` out and nothing fails."""
    spec = spec or {}
    if not spec.get("target_tokens") or spec.get("max_epochs") is not None:
        return
    if spec.get("max_epochs_per_domain"):
        return
    if project.domains and all(d.token_count for d in project.domains):
        raise Invalid(
            "target_tokens caps weights (tokens_i x max_epochs / target_tokens) only with "
            "max_epochs: set constraints.max_epochs (or max_epochs_per_domain), or remove "
            "constraints.target_tokens",
            field="constraints.max_epochs",
        )


def effective_constraints(project: Project, override: ConstraintsSpec | None) -> dict[str, Any]:
    """The request's constraints (else the project's), checked, as a dict."""
    spec = (
        override
        if override is not None
        else ConstraintsSpec.model_validate(project.constraints or {})
    )
    check_constraints(spec, [d.name for d in project.domains], declared_groups(project.domains))
    check_epoch_caps(spec, project)
    return spec.model_dump()


def epochs_per_domain(spec: dict[str, Any], domains: list[str]) -> float | dict[str, float] | None:
    """The repetition cap: per domain (``max_epochs_per_domain``, default ``max_epochs``, else
    unbounded), one number (``max_epochs``), or None. Each domain's cap is the science's answer
    (:meth:`mixopt.mixing.constraints.Constraints.epoch_caps`)."""
    per = spec.get("max_epochs_per_domain") or {}
    default = spec.get("max_epochs")
    if not per:
        return None if default is None else float(default)
    from mixopt.mixing.constraints import Constraints  # lazy: mixopt.mixing loads every estimator

    caps = Constraints.for_epochs(dict.fromkeys(domains), None, default, per).epoch_caps(domains)
    return {d: float("inf") if c is None else c for d, c in caps.items()}


def science_constraints(
    spec: dict[str, Any],
    domains: list[str],
    token_counts: list[int | None] | None,
    group_of: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Translate the API's constraints (``ConstraintsSpec`` as a dict) into the science's
    :class:`mixopt.mixing.constraints.Constraints` dict (per-domain lower/upper, fixed,
    token counts, target tokens, epochs per domain, KL weight)."""
    spec = ConstraintsSpec.model_validate(spec or {}).model_dump()
    bounds = spec.get("bounds") or {}
    epochs = epochs_per_domain(spec, domains)
    counts = None
    known = [float(c) for c in token_counts or () if c]
    if token_counts and len(known) == len(token_counts):
        counts = dict(zip(domains, known, strict=True))
    elif epochs is not None and spec.get("target_tokens"):
        raise Invalid(
            "max_epochs with target_tokens needs a token count for every domain",
            field="constraints",
        )
    groups = {
        g: {k: v for k, v in b.items() if v is not None}
        for g, b in (spec.get("groups") or {}).items()
    }
    return {
        "lower": {d: b["min"] for d, b in bounds.items()} or None,
        "upper": {d: b["max"] for d, b in bounds.items()} or None,
        "fixed": dict(spec.get("fixed") or {}) or None,
        "token_counts": counts,
        "target_tokens": spec.get("target_tokens") if counts is not None else None,
        "max_epochs": epochs if counts is not None and spec.get("target_tokens") else None,
        "kl_weight": float(spec.get("kl_weight") or 0.0),
        "groups": groups or None,
        "group_of": dict(group_of or {}) or None,
    }


def project_constraints(project: Project, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """``science_constraints`` of ``spec`` (default: the project's) over the project's domains,
    token counts and declared groups."""
    return science_constraints(
        project.constraints or {} if spec is None else spec,
        [d.name for d in project.domains],
        [d.token_count for d in project.domains],
        declared_groups(project.domains),
    )
