"""Versioned domain sets: every change of a project's domain set (add, remove, split, merge)
makes a new version and keeps the old ones readable; runs record the version their mixture is
over, and fits bring runs of older versions into their own set where that is valid
(:func:`mixopt.mixing.reuse.map_mixtures`), saying how many were reused, mapped and dropped."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, cast

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from app.schemas.domains import DomainChanges
from app.schemas.projects import DomainSpec
from app.services import sources
from app.services import tokens as token_service
from app.services.constraints import check_constraints, trim_constraints
from app.services.domain_rules import check_domain_count, declared_groups, domain_row
from app.services.errors import Conflict, Invalid
from app.store.models import Domain, DomainSet, Project, Run

#: ``domain_versions`` of a fit: every compatible run (mapped into the fit's set), or only the
#: runs stored on the fit's own version
MODES = ("compatible", "current")


def snapshot(project: Project) -> list[dict[str, Any]]:
    return [
        {"name": d.name, "token_count": d.token_count, "group": d.group_path}
        for d in project.domains
    ]


def _row(session: Session, project_id: int, version: int) -> DomainSet | None:
    return session.scalar(
        select(DomainSet).where(DomainSet.project_id == project_id, DomainSet.version == version)
    )


def ensure_history(session: Session, project: Project, via: str = "created") -> DomainSet:
    """The record of the project's current version (created from its domains when missing)."""
    row = _row(session, project.id, project.domain_version or 1)
    if row is None:
        row = DomainSet(
            project_id=project.id,
            version=project.domain_version or 1,
            domains=snapshot(project),
            changes={"via": via},
        )
        session.add(row)
        session.flush()
    return row


def sync_current(session: Session, project: Project) -> None:
    """Refresh the current version's record after an edit that keeps the set's membership
    (re-ordering, token counts, groups) or fills a project that had no domains."""
    ensure_history(session, project).domains = snapshot(project)


def bump(
    session: Session, project: Project, expected: int, rows: list[Domain], changes: dict[str, Any]
) -> DomainSet:
    """Make version ``expected + 1`` with ``rows`` as the domains. The version moves by a
    conditional UPDATE, so of two concurrent changes made against the same version one wins
    and the other is a 409 (on SQLite and PostgreSQL alike)."""
    sync_current(session, project)  # the outgoing version keeps its last known token counts
    moved = session.execute(
        update(Project)
        .where(Project.id == project.id, Project.domain_version == expected)
        .values(domain_version=expected + 1)
        .execution_options(synchronize_session=False)
    )
    if cast(CursorResult, moved).rowcount != 1:
        session.rollback()
        raise Conflict(
            f"the domain set of project {project.id} changed while this change was made "
            f"(it is no longer version {expected}); "
            f"read GET /v1/projects/{project.id}/domain-sets and retry",
            field="base_version",
        )
    project.domain_version = expected + 1
    for i, r in enumerate(rows):
        r.position = i
    project.domains = rows
    session.flush()
    row = DomainSet(
        project_id=project.id, version=expected + 1, domains=snapshot(project), changes=changes
    )
    session.add(row)
    session.flush()
    return row


def _name(part: str | DomainSpec) -> str:
    return part if isinstance(part, str) else part.name


def _claim(touched: dict[str, str], name: str, field: str) -> None:
    if name in touched:
        raise Invalid(
            f"domain {name!r} is already changed by {touched[name]}; one change per domain",
            field=field,
        )
    touched[name] = field


def _check_base_version(project: Project, data: DomainChanges) -> int:
    """The project's current version; a 409 when ``base_version`` names another one."""
    current = project.domain_version or 1
    if data.base_version is not None and data.base_version != current:
        raise Conflict(
            f"the domain set is at version {current}, not {data.base_version}: another change came "
            f"first; read GET /v1/projects/{project.id}/domain-sets and retry",
            field="base_version",
        )
    return current


def _unknown(name: str, names: list[str], field: str) -> Invalid:
    return Invalid(f"unknown domain {name!r}; the project's domains are {names}", field=field)


class _ChangeCheck:
    """Validation of one set of changes: every old domain is changed at most once (``touched``)
    and every new name is introduced once (``taken``: new names -> the field that introduces
    them)."""

    def __init__(self, project: Project, admin: bool) -> None:
        self.by_name = {d.name: d for d in project.domains}
        self.names = list(self.by_name)
        self.admin = admin
        self.touched: dict[str, str] = {}
        self.taken: dict[str, str] = {}

    def new_name(self, name: str, field: str) -> None:
        if name in self.by_name:
            raise Invalid(f"{name!r} is already a domain of the project", field=field)
        if name in self.taken:
            raise Invalid(f"{name!r} is also introduced by {self.taken[name]}", field=field)
        self.taken[name] = field

    def removals(self, remove: list[str]) -> None:
        for i, n in enumerate(remove):
            if n not in self.by_name:
                raise _unknown(n, self.names, f"remove[{i}]")
            _claim(self.touched, n, f"remove[{i}]")

    def splits(self, split: dict[str, list[str | DomainSpec]]) -> None:
        for old, parts in split.items():
            if old not in self.by_name:
                raise _unknown(old, self.names, f"split.{old}")
            _claim(self.touched, old, f"split.{old}")
            if not parts:
                raise Invalid(f"split of {old!r} has no parts", field=f"split.{old}")
            for j, part in enumerate(parts):
                self.new_name(_name(part), f"split.{old}[{j}]")
                if isinstance(part, DomainSpec) and part.source is not None:
                    sources.check_source(
                        part.source.model_dump(), field=f"split.{old}[{j}].source", admin=self.admin
                    )

    def merges(self, merge: dict[str, list[str]]) -> None:
        for target, merged in merge.items():
            if len(merged) < 2:
                raise Invalid(
                    f"a merge needs at least two domains, got {merged}", field=f"merge.{target}"
                )
            for j, part_name in enumerate(merged):
                if part_name not in self.by_name:
                    raise _unknown(part_name, self.names, f"merge.{target}[{j}]")
                _claim(self.touched, part_name, f"merge.{target}[{j}]")
            self.new_name(target, f"merge.{target}")

    def additions(self, add: list[DomainSpec]) -> None:
        for i, spec in enumerate(add):
            self.new_name(spec.name, f"add[{i}].name")
            if spec.source is not None:
                sources.check_source(
                    spec.source.model_dump(), field=f"add[{i}].source", admin=self.admin
                )


def _split_rows(d: Domain, parts: list[str | DomainSpec], admin: bool) -> list[Domain]:
    """The new domains of a split; a part given by name keeps the old domain's group."""
    return [
        domain_row(
            0,
            part if isinstance(part, DomainSpec) else DomainSpec(name=part, group=d.group_path),
            admin,
        )
        for part in parts
    ]


def _merged_row(target: str, merged: list[str], by_name: dict[str, Domain]) -> Domain:
    """The domain a merge makes: the parts' token count summed when every part has one, their
    group when they share one."""
    merging = [by_name[p] for p in merged]
    counts = [p.token_count for p in merging]
    known = [c for c in counts if c is not None]
    if len(known) == len(counts) and sum(known) > 2**63 - 1:
        raise Invalid(
            f"the token counts of {merged} sum past the 64-bit range",
            field=f"merge.{target}",
        )
    groups = {p.group_path for p in merging}
    return Domain(
        name=target,
        token_count=sum(known) if len(known) == len(counts) else None,
        group_path=groups.pop() if len(groups) == 1 else None,
    )


def _new_rows(
    project: Project, data: DomainChanges, by_name: dict[str, Domain], admin: bool
) -> list[Domain]:
    """The domains of the new version, in order: a split's parts and a merge's target take the
    place of the old domain (of the first merged one), added domains come last; ``admin``: an
    admin token registers the new sources."""
    removed = set(data.remove)
    first_part = {parts[0]: target for target, parts in data.merge.items()}
    merged_parts = {p for parts in data.merge.values() for p in parts}
    rows: list[Domain] = []
    for d in project.domains:
        if d.name in removed or (d.name in merged_parts and d.name not in first_part):
            continue
        if d.name in data.split:
            rows += _split_rows(d, data.split[d.name], admin)
        elif d.name in first_part:
            target = first_part[d.name]
            rows.append(_merged_row(target, data.merge[target], by_name))
        else:
            rows.append(d)
    rows += [domain_row(0, spec, admin) for spec in data.add]
    return rows


def _objective_warnings(project: Project, gone: list[str]) -> list[str]:
    return [
        f"the objective's metric {m!r} is about {d!r}, which left the domain set"
        for m in (project.objective or {})
        for d in gone
        if m == d or m.endswith(f"/{d}")
    ]


def apply_changes(session: Session, project: Project, data: DomainChanges, token=None) -> DomainSet:
    """Validate ``data`` against the current set (422 naming the field), then make the new
    version."""
    if not (data.add or data.remove or data.split or data.merge):
        raise Invalid("give at least one of add, remove, split or merge", field="add")
    current = _check_base_version(project, data)
    admin = token is not None and token_service.is_admin(token)
    check = _ChangeCheck(project, admin)
    check.removals(data.remove)
    check.splits(data.split)
    check.merges(data.merge)
    check.additions(data.add)

    rows = _new_rows(project, data, check.by_name, admin)
    if not rows:
        raise Invalid(
            "these changes would remove every domain; a project keeps at least one", field="remove"
        )
    check_domain_count(len(rows), field="add")
    new_names = [r.name for r in rows]
    trimmed, dropped = trim_constraints(project, new_names, declared_groups(rows))
    check_constraints(trimmed, new_names, declared_groups(rows))
    gone = sorted(set(check.names) - set(new_names))
    changes = {
        "via": "domain-changes",
        "add": [s.name for s in data.add],
        "remove": list(data.remove),
        "split": {k: [_name(p) for p in v] for k, v in data.split.items()},
        "merge": {k: list(v) for k, v in data.merge.items()},
        "constraints_dropped": dropped,
        "warnings": _objective_warnings(project, gone),
    }
    project.constraints = trimmed.model_dump()
    row = bump(session, project, current, rows, changes)
    session.commit()
    session.refresh(row)
    return row


def retired(session: Session, project: Project) -> dict[str, int]:
    """Names of domains that left the set: ``{name: the last version that had it}``."""
    current = {d.name for d in project.domains}
    out: dict[str, int] = {}
    for row in session.scalars(
        select(DomainSet).where(DomainSet.project_id == project.id).order_by(DomainSet.version)
    ):
        for d in row.domains or []:
            if d["name"] not in current:
                out[d["name"]] = row.version
    return out


def list_sets(session: Session, project: Project) -> dict[str, Any]:
    ensure_history(session, project)
    session.commit()
    rows = list(
        session.scalars(
            select(DomainSet).where(DomainSet.project_id == project.id).order_by(DomainSet.version)
        )
    )
    counts = dict(
        session.execute(
            select(Run.domain_version, func.count())
            .where(Run.project_id == project.id)
            .group_by(Run.domain_version)
        ).all()
    )
    current = project.domain_version or 1
    life: dict[str, list[int]] = {}
    for row in rows:
        for d in row.domains or []:
            life.setdefault(d["name"], [row.version, row.version])[1] = row.version
    names = {d.name for d in project.domains}
    return {
        "data": [
            {
                "version": r.version,
                "current": r.version == current,
                "domains": r.domains,
                "changes": r.changes,
                "created_at": r.created_at,
                "run_count": counts.get(r.version, 0),
            }
            for r in rows
        ],
        "count": len(rows),
        "current_version": current,
        "history": [
            {"name": n, "first_version": a, "last_version": b, "retired": n not in names}
            for n, (a, b) in life.items()
        ],
    }


def set_public(session: Session, project: Project, row: DomainSet) -> dict[str, Any]:
    n = (
        session.scalar(
            select(func.count())
            .select_from(Run)
            .where(Run.project_id == project.id, Run.domain_version == row.version)
        )
        or 0
    )
    return {
        "version": row.version,
        "current": row.version == project.domain_version,
        "domains": row.domains,
        "changes": row.changes,
        "created_at": row.created_at,
        "run_count": n,
    }


# -- runs of older versions in a fit -------------------------------------------------------
def _token_counts(project: Project, sets: dict[int, DomainSet]) -> dict[str, float]:
    """Every domain's token count: the current one, else the last a version recorded."""
    counts: dict[str, float] = {}
    for v in sorted(sets):
        for d in sets[v].domains or []:
            if d.get("token_count"):
                counts[d["name"]] = float(d["token_count"])
    counts.update({d.name: float(d.token_count) for d in project.domains if d.token_count})
    return counts


def map_runs(
    session: Session,
    project: Project,
    runs: list[Run],
    *,
    version: int,
    domains: list[str],
    mode: str = "compatible",
) -> tuple[list[list[float] | None], dict[str, Any]]:
    """Each run's mixture over ``domains`` (the set of ``version``), or None when it cannot be
    brought there; and the report a fit stores: per version, how many runs were reused
    (weights carried over), mapped (a split or merge changed them) and dropped, with why."""
    from mixopt.mixing.reuse import map_mixtures  # lazy: mixopt.mixing loads every estimator

    sets = {
        r.version: r
        for r in session.scalars(select(DomainSet).where(DomainSet.project_id == project.id))
    }
    counts = _token_counts(project, sets)
    out: list[list[float] | None] = [None] * len(runs)
    groups: dict[int, list[int]] = defaultdict(list)
    for i, r in enumerate(runs):
        groups[int(r.domain_version or 1)].append(i)
    by_version: dict[str, Any] = {}
    notes: list[str] = []
    for v in sorted(groups):
        idx = groups[v]
        status: list[str] = ["reused"] * len(idx)
        reasons: list[str | None] = [None] * len(idx)
        if v == version:
            X = np.array([[runs[i].mixture.get(d, 0.0) for d in domains] for i in idx], dtype=float)
        elif mode == "current":
            status = ["dropped"] * len(idx)
            reasons = ["domain_versions is current"] * len(idx)
        elif v > version:
            status = ["dropped"] * len(idx)
            reasons = [f"stored on domain-set version {v}, newer than the fit's ({version})"] * len(
                idx
            )
        elif any(t not in sets for t in range(v, version + 1)):
            missing = [t for t in range(v, version + 1) if t not in sets]
            status = ["dropped"] * len(idx)
            reasons = [f"no record of domain-set version(s) {missing}"] * len(idx)
        else:
            names = [d["name"] for d in sets[v].domains]
            X = np.array([[runs[i].mixture.get(d, 0.0) for d in names] for i in idx], dtype=float)
            X = X.reshape(len(idx), len(names))
            for t in range(v + 1, version + 1):
                ch = sets[t].changes or {}
                nxt = [d["name"] for d in sets[t].domains]
                m = map_mixtures(
                    X,
                    names,
                    nxt,
                    splits=ch.get("split"),
                    merges=ch.get("merge"),
                    token_counts=counts,
                )
                for k, s in enumerate(m["status"]):
                    if status[k] == "dropped":
                        continue
                    if s == "dropped":
                        status[k], reasons[k] = "dropped", f"version {t}: {m['reasons'][k]}"
                    elif s == "mapped":
                        status[k] = "mapped"
                notes += [
                    f"version {t}: {n}" for n in m["notes"] if not n.endswith("old runs dropped")
                ]
                X, names = np.nan_to_num(m["X"]), nxt
            order = [names.index(d) if d in names else None for d in domains]
            X = np.array(
                [[row[j] if j is not None else 0.0 for j in order] for row in X], dtype=float
            )
        for k, i in enumerate(idx):
            if status[k] != "dropped":
                out[i] = [float(x) for x in X[k]]
        c = Counter(status)
        by_version[str(v)] = {
            "runs": len(idx),
            "reused": c["reused"],
            "mapped": c["mapped"],
            "dropped": c["dropped"],
            "reasons": dict(Counter(r for r in reasons if r)),
        }
    totals = {
        k: sum(b[k] for b in by_version.values()) for k in ("runs", "reused", "mapped", "dropped")
    }
    return out, {
        "mode": mode,
        "version": version,
        "by_version": by_version,
        **totals,
        "notes": list(dict.fromkeys(notes)),
    }


def summary(report: dict[str, Any]) -> str | None:
    """One line for a fit's notes (None when every run was on the fit's own version)."""
    older = {
        v: b for v, b in report.get("by_version", {}).items() if int(v) != report.get("version")
    }
    if not older:
        return None
    parts = []
    for v, b in sorted(older.items(), key=lambda kv: int(kv[0])):
        why = "; ".join(f"{n} {r}" for r, n in b["reasons"].items())
        parts.append(
            f"version {v}: {b['runs']} runs, {b['reused']} reused, {b['mapped']} mapped, "
            f"{b['dropped']} dropped" + (f" ({why})" if why else "")
        )
    return f"domain sets (fit on version {report['version']}, {report['mode']}): " + "; ".join(
        parts
    )
