"""olmix's fit config (``olmix fit --config``: allenai/olmix ``olmix/fit/config.py``,
``FitConfig``) read as a mixopt project file (``mixopt project create NAME -f olmix_fit.yaml``).

What maps onto a project:

``priors.token_counts``
    the domains, in order, with their token counts (``priors.relative_sizes`` must name the same
    domains; mixopt's natural prior is the token counts' shares).
``constraints``
    olmix keeps a mixture when ``weight x target_tokens <= token_count x repetition_factor``
    for every domain (``olmix/fit/utils.py``), and only when ``enabled``: with ``enabled: true``,
    ``target_tokens`` -> ``constraints.target_tokens`` and ``repetition_factor`` ->
    ``constraints.max_epochs`` (the same inequality); with ``enabled: false`` no epoch cap, and
    ``target_tokens``, when given, is still the budget.
``filtering.obj_weights``
    the objective (``{metric: weight}``, fraction strings such as ``7/52.0`` read as olmix
    does); without it, the ``eval`` metrics less ``filtering.drop_metrics``, equally weighted.

What belongs to a fit, not a project (``swarm``, ``regression``, ``proposer``, ``eval``
beyond its metric names) is accepted and returned as notes saying where it goes in mixopt. A
key olmix's ``FitConfig`` does not have is a ``ValueError`` naming every such key (the CLI's
exit code 2), as is a value olmix itself would refuse.
"""

from __future__ import annotations

from typing import Any

#: olmix's FitConfig: section -> its keys (olmix/fit/config.py)
SECTIONS: dict[str, set[str]] = {
    "swarm": {"ratios", "metrics"},
    "priors": {"relative_sizes", "token_counts"},
    "eval": {"type", "tasks"},
    "regression": {"type", "seed", "n_test", "train_split", "aggregate_task_families"},
    "proposer": {"type", "temperature", "kl_reg", "fit_only", "make_worst_mix"},
    "constraints": {"enabled", "target_tokens", "repetition_factor"},
    "filtering": {"drop_metrics", "obj_weights"},
}
#: olmix's ConstraintsConfig.repetition_factor default
REPETITION_FACTOR = 4.0


def is_olmix_fit_config(data: Any) -> bool:
    """An olmix fit config has ``priors`` (required by ``FitConfig``); a mixopt project file
    has ``domains`` and no olmix section."""
    return isinstance(data, dict) and "priors" in data and "domains" not in data


def _fraction(value: Any, where: str) -> float:
    """A weight as olmix reads ``filtering.obj_weights``: a number or ``"a/b"``."""
    if isinstance(value, str) and "/" in value:
        num, _, den = value.partition("/")
        try:
            return float(num.strip()) / float(den.strip())
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"{where}: {value!r} is not a number or a fraction") from None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {value!r} is not a number") from None


def unknown_keys(data: dict[str, Any]) -> list[str]:
    """The keys of ``data`` that olmix's ``FitConfig`` does not have, dotted."""
    out = [k for k in data if k not in SECTIONS]
    for section, keys in SECTIONS.items():
        value = data.get(section)
        if isinstance(value, dict):
            out += [f"{section}.{k}" for k in value if k not in keys]
    return out


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"olmix fit config: {name} must be a mapping")
    return value


def _domains(priors: dict[str, Any]) -> list[dict[str, Any]]:
    counts = priors.get("token_counts")
    if not isinstance(counts, dict) or not counts:
        raise ValueError("olmix fit config: priors.token_counts must map each domain to its tokens")
    sizes = priors.get("relative_sizes")
    if not isinstance(sizes, dict) or set(sizes) != set(counts):
        raise ValueError(
            "olmix fit config: priors.relative_sizes must name the domains of priors.token_counts"
        )
    domains = []
    for name, tokens in counts.items():
        if isinstance(tokens, bool) or not isinstance(tokens, (int, float)) or tokens < 0:
            raise ValueError(f"olmix fit config: priors.token_counts.{name} must be a count")
        domains.append({"name": str(name), "token_count": int(tokens)})
    return domains


def _constraints(section: dict[str, Any]) -> dict[str, Any]:
    enabled = section.get("enabled", False)
    if not isinstance(enabled, bool):
        raise ValueError("olmix fit config: constraints.enabled must be true or false")
    target = section.get("target_tokens")
    if enabled and target is None:
        # what olmix fit answers: "constraints.enabled requires constraints.target_tokens"
        raise ValueError("olmix fit config: constraints.enabled requires constraints.target_tokens")
    out: dict[str, Any] = {}
    if target is not None:
        out["target_tokens"] = int(_fraction(target, "constraints.target_tokens"))
    if enabled:
        factor = section.get("repetition_factor", REPETITION_FACTOR)
        out["max_epochs"] = _fraction(factor, "constraints.repetition_factor")
    return out


def _objective(data: dict[str, Any]) -> dict[str, float] | None:
    filtering = _section(data, "filtering")
    weights = filtering.get("obj_weights") or {}
    drop = set(filtering.get("drop_metrics") or [])
    if weights:
        return {
            str(m): _fraction(w, f"filtering.obj_weights.{m}")
            for m, w in weights.items()
            if m not in drop
        }
    tasks = _section(data, "eval").get("tasks")
    names: list[str] = []
    if isinstance(tasks, dict):
        for family in tasks.values():
            names += list(family.values()) if isinstance(family, dict) else list(family or [])
    if names:
        return {str(m): 1.0 for m in names if m not in drop}
    if drop:
        raise ValueError(
            "olmix fit config: filtering.drop_metrics without eval.tasks or "
            "filtering.obj_weights leaves mixopt no objective to drop them from: give the "
            "metrics to keep (eval.tasks or filtering.obj_weights)"
        )
    return None


def project_from_olmix_fit(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``(project spec, notes)`` from an olmix fit config (module docstring): the spec has
    ``domains``, ``constraints`` and, when the config says, ``objective``; the notes say
    where the fit settings go. ``ValueError`` naming unknown keys or unusable values."""
    unknown = unknown_keys(data)
    if unknown:
        raise ValueError(
            f"olmix fit config: unknown key(s) {unknown}; olmix's FitConfig has {sorted(SECTIONS)}"
        )
    spec: dict[str, Any] = {
        "domains": _domains(_section(data, "priors")),
        "constraints": _constraints(_section(data, "constraints")),
    }
    objective = _objective(data)
    if objective:
        spec["objective"] = objective
    notes = []
    swarm = _section(data, "swarm")
    if swarm:
        notes.append(
            f"swarm: import the runs with `mixopt runs import PROJECT {swarm.get('ratios')} "
            f"{swarm.get('metrics')} --model-params N --train-tokens N`"
        )
    for section in ("regression", "proposer"):
        if _section(data, section):
            notes.append(f"{section}: a fit setting, not a project's (choose it at `mixopt fit`)")
    return spec, notes
