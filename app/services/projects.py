"""Projects and their domains."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.schemas.projects import ConstraintsSpec, DomainSpec, ProjectCreate, ProjectUpdate
from app.core.config import get_settings
from app.services import domain_sets, sources
from app.services import tokens as token_service
from app.services.errors import Conflict, Invalid, NotFound
from app.store.models import ApiToken, Domain, Project, Run, TokenProject


def get_project(session: Session, token: ApiToken, project_id: int, *, write: bool = False) -> Project:
    """The project if this token may see it; 404 otherwise (ids of others do not leak)."""
    project = session.get(Project, project_id)
    if project is None or not token_service.can_see(token, project_id):
        raise NotFound(f"project {project_id} not found")
    if write:
        token_service.require_write(token)
    return project


def list_projects(session: Session, token: ApiToken, *, offset: int = 0, limit: int = 100) -> tuple[list[Project], int]:
    q = select(Project)
    if not token_service.is_admin(token):
        q = q.join(TokenProject, TokenProject.project_id == Project.id).where(TokenProject.token_id == token.id)
    count = session.scalar(select(func.count()).select_from(q.subquery())) or 0
    rows = list(session.scalars(q.order_by(Project.id).offset(offset).limit(limit)))
    return rows, count


def run_counts(session: Session, project_ids: list[int]) -> dict[int, int]:
    if not project_ids:
        return {}
    rows = session.execute(
        select(Run.project_id, func.count()).where(Run.project_id.in_(project_ids)).group_by(Run.project_id)
    )
    return {pid: n for pid, n in rows}


def check_domain_count(n: int, field: str = "domains") -> None:
    """A project holds at most ``MIXOPT_MAX_DOMAINS`` domains, whichever path adds them."""
    limit = get_settings().max_domains
    if n > limit:
        raise Invalid(f"a project may have at most {limit} domains (MIXOPT_MAX_DOMAINS), got {n}", field=field)


def _check_domains(domains: list[DomainSpec], token: ApiToken | None = None) -> None:
    check_domain_count(len(domains))
    seen: set[str] = set()
    for i, d in enumerate(domains):
        if d.name in seen:
            raise Invalid(f"domain {d.name!r} is listed twice", field=f"domains[{i}].name")
        seen.add(d.name)
        if d.source is not None:
            sources.check_source(d.source.model_dump(), field=f"domains[{i}].source",
                                 admin=token is not None and token_service.is_admin(token))


def declared_groups(domains) -> dict[str, str]:
    """``{domain: declared group path}`` of domain rows or specs that declare one."""
    return {d.name: g for d in domains if (g := getattr(d, "group", None) or getattr(d, "group_path", None))}


def _check_groups(constraints: ConstraintsSpec, names: list[str], group_of: dict[str, str] | None) -> None:
    if not constraints.groups:
        return
    from mixopt.mixing import hierarchy

    known = hierarchy.groups_of(names, group_of)
    for path in constraints.groups:
        if path.strip("/") not in known:
            raise Invalid(f"unknown group {path!r}; the domains' groups are {sorted(known)} (declare a domain's "
                          "group, or name domains source:topic[:quality])", field=f"constraints.groups.{path}")
    bounds = {d: (b.min, b.max) for d, b in constraints.bounds.items()}
    lo = {d: constraints.fixed.get(d, bounds.get(d, (0.0, 1.0))[0]) for d in names}
    hi = {d: constraints.fixed.get(d, bounds.get(d, (0.0, 1.0))[1]) for d in names}
    for path, g in constraints.groups.items():
        members = known[path.strip("/")]
        gmin, gmax = (g.fixed, g.fixed) if g.fixed is not None else (g.min, g.max)
        if sum(lo[d] for d in members) > gmax + 1e-9:
            raise Invalid(f"the minimums and fixed weights of {members} sum to more than the group's total {gmax:g}",
                          field=f"constraints.groups.{path}")
        if sum(hi[d] for d in members) < gmin - 1e-9:
            raise Invalid(f"the maximums and fixed weights of {members} sum to less than the group's total {gmin:g}",
                          field=f"constraints.groups.{path}")


def _check_constraints(constraints: ConstraintsSpec, names: list[str], group_of: dict[str, str] | None = None) -> None:
    _check_groups(constraints, names, group_of)
    known = set(names)
    for field in ("bounds", "fixed", "max_epochs_per_domain"):
        for name in getattr(constraints, field):
            if name not in known:
                raise Invalid(f"unknown domain {name!r}; the project's domains are {names}",
                              field=f"constraints.{field}.{name}")
    fixed_total = sum(constraints.fixed.values())
    if fixed_total > 1 + 1e-9:
        raise Invalid(f"fixed weights sum to {fixed_total:.6g} > 1", field="constraints.fixed")
    lower = sum(b.min for b in constraints.bounds.values())
    if names and lower > 1 + 1e-9:
        raise Invalid(f"per-domain minimums sum to {lower:.6g} > 1", field="constraints.bounds")
    for name, w in constraints.fixed.items():
        b = constraints.bounds.get(name)
        if b and not (b.min - 1e-12 <= w <= b.max + 1e-12):
            raise Invalid(f"fixed weight {w} is outside its bounds [{b.min}, {b.max}]",
                          field=f"constraints.fixed.{name}")


def _objective_ok(objective: dict[str, float] | None) -> None:
    if objective is not None and objective and sum(objective.values()) <= 0:
        raise Invalid("objective weights must not all be zero", field="objective")


def create_project(session: Session, token: ApiToken, data: ProjectCreate) -> Project:
    token_service.require_write(token)
    _check_domains(data.domains, token)
    _check_constraints(data.constraints, [d.name for d in data.domains], declared_groups(data.domains))
    _objective_ok(data.objective)
    project = Project(
        name=data.name, description=data.description, objective=data.objective or None,
        constraints=data.constraints.model_dump(),
    )
    project.domains = [_domain_row(i, d) for i, d in enumerate(data.domains)]
    project.domain_version = 1
    session.add(project)
    session.flush()
    domain_sets.ensure_history(session, project)
    token_service.grant(session, token, project.id)
    session.commit()
    return project


def _domain_row(position: int, spec: DomainSpec) -> Domain:
    return Domain(position=position, name=spec.name, token_count=spec.token_count,
                  source=spec.source.model_dump() if spec.source else None,
                  trainer_paths=spec.trainer_paths, documents=spec.documents, group_path=spec.group)


def used_domains(session: Session, project_id: int) -> set[str]:
    """Domains with a non-zero weight in some run of the project."""
    used: set[str] = set()
    for (mixture,) in session.execute(select(Run.mixture).where(Run.project_id == project_id)):
        used.update(k for k, v in mixture.items() if v > 0)
    return used


def update_project(session: Session, project: Project, data: ProjectUpdate, token: ApiToken | None = None) -> Project:
    """Apply a PATCH; ``token`` decides which data roots new sources may use (None: no admin-only roots)."""
    fields = data.model_fields_set
    names = [d.name for d in project.domains]
    if "domains" in fields and data.domains is not None:
        _check_domains(data.domains, token)
        new_names = [d.name for d in data.domains]
        removed = set(names) - set(new_names)
        if removed:
            still_used = removed & used_domains(session, project.id)
            if still_used:
                raise Conflict(f"domains {sorted(still_used)} have runs with non-zero weight: PATCH cannot remove "
                               f"them; retire them with POST /v1/projects/{project.id}/domain-changes "
                               f"{json.dumps({'remove': sorted(still_used)})} (a new domain-set version; the runs keep "
                               "theirs and stay readable), or split/merge them there", field="domains")
        by_name = {d.name: d for d in project.domains}
        rows = []
        for i, spec in enumerate(data.domains):
            row = by_name.get(spec.name) or Domain(name=spec.name)
            row.position = i
            if spec.token_count is not None or row.token_count is None or not row.token_count_measured:
                row.token_count = spec.token_count
                row.token_count_measured = False
            row.source = spec.source.model_dump() if spec.source else None
            row.trainer_paths, row.documents, row.group_path = spec.trainer_paths, spec.documents, spec.group
            rows.append(row)
        if set(new_names) != set(names):  # membership changed: a new version of the domain set
            added = [n for n in new_names if n not in names]
            domain_sets.bump(session, project, project.domain_version or 1, rows,
                             {"via": "patch", "add": added, "remove": sorted(removed), "split": {}, "merge": {}})
        else:
            project.domains = rows
            domain_sets.sync_current(session, project)
        names = new_names
    constraints = data.constraints if "constraints" in fields and data.constraints is not None else \
        ConstraintsSpec.model_validate(project.constraints or {})
    _check_constraints(constraints, names, declared_groups(project.domains))
    if "constraints" in fields and data.constraints is not None:
        project.constraints = data.constraints.model_dump()
    if "objective" in fields:
        _objective_ok(data.objective)
        project.objective = data.objective or None
    if "name" in fields and data.name is not None:
        project.name = data.name
    if "description" in fields:
        project.description = data.description
    session.commit()
    session.refresh(project)
    return project


def delete_project(session: Session, project: Project) -> None:
    session.delete(project)
    session.commit()


def add_domains(session: Session, project: Project, names: list[str]) -> None:
    """Append domains (used by imports into a project that has none yet)."""
    start = len(project.domains)
    check_domain_count(start + len(names), field="mixtures")
    for i, name in enumerate(names):
        project.domains.append(Domain(position=start + i, name=name))
    session.flush()
    domain_sets.sync_current(session, project)


def project_public(project: Project, run_count: int = 0) -> dict[str, Any]:
    return {
        "id": project.id, "name": project.name, "description": project.description,
        "domains": [
            {"name": d.name, "token_count": d.token_count, "source": d.source,
             "trainer_paths": d.trainer_paths, "documents": d.documents, "group": d.group_path,
             "token_count_measured": d.token_count_measured, "stats": d.stats} for d in project.domains
        ],
        "objective": project.objective,
        "constraints": project.constraints or {},
        "created_at": project.created_at, "updated_at": project.updated_at, "run_count": run_count,
        "domain_version": project.domain_version or 1,
    }
