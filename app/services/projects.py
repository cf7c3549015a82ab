"""Projects and their domains."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.schemas.projects import ConstraintsSpec, ProjectCreate, ProjectUpdate
from app.services import domains as domain_service
from app.services import tokens as token_service
from app.services.constraints import check_constraints
from app.services.domain_rules import (
    check_domain_count,
    check_domains,
    declared_groups,
    domain_row,
    is_admin,
)
from app.services.errors import Conflict, NotFound
from app.services.objectives import check_weights
from app.store.models import ApiToken, Domain, Project, Run, TokenProject


def get_project(
    session: Session, token: ApiToken, project_id: int, *, write: bool = False
) -> Project:
    """The project if this token may see it; 404 otherwise (ids of others do not leak)."""
    project = session.get(Project, project_id)
    if project is None or not token_service.can_see(token, project_id):
        raise NotFound(f"project {project_id} not found")
    if write:
        token_service.require_write(token)
    return project


def list_projects(
    session: Session, token: ApiToken, *, offset: int = 0, limit: int = 100
) -> tuple[list[Project], int]:
    q = select(Project)
    if not token_service.is_admin(token):
        q = q.join(TokenProject, TokenProject.project_id == Project.id).where(
            TokenProject.token_id == token.id
        )
    count = session.scalar(select(func.count()).select_from(q.subquery())) or 0
    rows = list(session.scalars(q.order_by(Project.id).offset(offset).limit(limit)))
    return rows, count


def run_counts(session: Session, project_ids: list[int]) -> dict[int, int]:
    if not project_ids:
        return {}
    rows = session.execute(
        select(Run.project_id, func.count())
        .where(Run.project_id.in_(project_ids))
        .group_by(Run.project_id)
    )
    return {pid: n for pid, n in rows}


def create_project(session: Session, token: ApiToken, data: ProjectCreate) -> Project:
    token_service.require_write(token)
    check_domains(data.domains, token)
    check_constraints(
        data.constraints, [d.name for d in data.domains], declared_groups(data.domains)
    )
    check_weights(data.objective)
    project = Project(
        name=data.name,
        description=data.description,
        objective=data.objective or None,
        constraints=data.constraints.model_dump(),
    )
    admin = is_admin(token)
    project.domains = [domain_row(i, d, admin) for i, d in enumerate(data.domains)]
    project.domain_version = 1
    session.add(project)
    session.flush()
    domain_service.ensure_history(session, project)
    token_service.grant(session, token, project.id)
    session.commit()
    return project


def used_domains(session: Session, project_id: int) -> set[str]:
    """Domains with a non-zero weight in some run of the project."""
    used: set[str] = set()
    for (mixture,) in session.execute(select(Run.mixture).where(Run.project_id == project_id)):
        used.update(k for k, v in mixture.items() if v > 0)
    return used


def update_project(
    session: Session, project: Project, data: ProjectUpdate, token: ApiToken | None = None
) -> Project:
    """Apply a PATCH; ``token`` decides which data roots new sources may use (None: no
    admin-only roots)."""
    fields = data.model_fields_set
    names = [d.name for d in project.domains]
    if "domains" in fields and data.domains is not None:
        check_domains(data.domains, token)
        admin = is_admin(token)
        new_names = [d.name for d in data.domains]
        removed = set(names) - set(new_names)
        if removed:
            still_used = removed & used_domains(session, project.id)
            if still_used:
                raise Conflict(
                    f"domains {sorted(still_used)} have runs with non-zero weight: "
                    "PATCH cannot remove "
                    f"them; retire them with POST /v1/projects/{project.id}/domain-changes "
                    f"{json.dumps({'remove': sorted(still_used)})} "
                    "(a new domain-set version; the runs keep "
                    "theirs and stay readable), or split/merge them there",
                    field="domains",
                )
        by_name = {d.name: d for d in project.domains}
        rows = []
        for i, spec in enumerate(data.domains):
            row = by_name.get(spec.name) or Domain(name=spec.name)
            row.position = i
            if (
                spec.token_count is not None
                or row.token_count is None
                or not row.token_count_measured
            ):
                row.token_count = spec.token_count
                row.token_count_measured = False
            row.source = spec.source.model_dump() if spec.source else None
            # the roots ingestion reads the source with: the token that (re-)registered it
            row.source_admin = admin and spec.source is not None
            paths = spec.trainer_paths
            row.trainer_paths = None if paths is None else {str(k): v for k, v in paths.items()}
            row.documents, row.group_path = spec.documents, spec.group
            rows.append(row)
        if set(new_names) != set(names):  # membership changed: a new version of the domain set
            added = [n for n in new_names if n not in names]
            domain_service.bump(
                session,
                project,
                project.domain_version or 1,
                rows,
                {"via": "patch", "add": added, "remove": sorted(removed), "split": {}, "merge": {}},
            )
        else:
            project.domains = rows
            domain_service.sync_current(session, project)
        names = new_names
    constraints = (
        data.constraints
        if "constraints" in fields and data.constraints is not None
        else ConstraintsSpec.model_validate(project.constraints or {})
    )
    check_constraints(constraints, names, declared_groups(project.domains))
    if "constraints" in fields and data.constraints is not None:
        project.constraints = data.constraints.model_dump()
    if "objective" in fields:
        check_weights(data.objective)
        project.objective = data.objective or None
    if "name" in fields and data.name is not None:
        project.name = data.name
    if "description" in fields:
        project.description = data.description
    session.commit()
    session.refresh(project)
    return project


def delete_project(session: Session, project: Project) -> None:
    from app.services.experts import remove_project_files  # lazy: a leaf of the services

    pid = project.id
    session.delete(project)
    session.commit()
    remove_project_files(pid)  # the experts' probability files (their rows went with it)


def add_domains(session: Session, project: Project, names: list[str]) -> None:
    """Append domains (used by imports into a project that has none yet)."""
    start = len(project.domains)
    check_domain_count(start + len(names), field="mixtures")
    for i, name in enumerate(names):
        project.domains.append(Domain(position=start + i, name=name))
    session.flush()
    domain_service.sync_current(session, project)


def project_public(project: Project, run_count: int = 0) -> dict[str, Any]:
    return {
        "id": project.id,
        "name": project.name,
        "description": project.description,
        "domains": [
            {
                "name": d.name,
                "token_count": d.token_count,
                "source": d.source,
                "trainer_paths": d.trainer_paths,
                "documents": d.documents,
                "group": d.group_path,
                "token_count_measured": d.token_count_measured,
                "stats": d.stats,
            }
            for d in project.domains
        ],
        "objective": project.objective,
        "constraints": project.constraints or {},
        "created_at": project.created_at,
        "updated_at": project.updated_at,
        "run_count": run_count,
        "domain_version": project.domain_version or 1,
    }
