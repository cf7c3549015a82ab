"""Hierarchical domains: group paths, group-total constraints, projection and hierarchical draws.

Teams organise data as sources split into topics and quality buckets; olmix names them
``source:topic[:quality]`` and mixes them as nested mixtures (a share per source, then a
share per topic inside the source). Here a domain belongs to a *group path* ``web/news``:
declared (``group_of[domain]``) or parsed from a ``source:topic:quality`` name (the path is
every prefix but the leaf: ``web:news:high`` belongs to ``web`` and ``web/news``).

A group constraint bounds the total weight of the group's leaves::

    g_min <= sum_{i in G} w_i <= g_max        (g_min = g_max: a fixed group total)

The feasible set ``{lo <= w <= hi, sum w = 1, group slabs}`` is convex; :func:`project`
computes the Euclidean projection onto it by Dykstra's alternating projections (Boyle and
Dykstra 1986; the sets are the box-simplex of :func:`project_box_simplex` and one slab per
group), then verifies feasibility; :func:`check_feasible` decides feasibility exactly with a
linear programme and names the group that makes it empty.

:func:`hierarchical_dirichlet` draws swarm mixtures group first, then within the group
(olmix's nested mixes): the top-level shares from ``Dirichlet(s * prior_top)``, each group's
internal shares from ``Dirichlet(s * prior_within)``, recursively.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linprog

from mixopt.mixing.simplex import InfeasibleConstraintsError, project_box_simplex

#: separators of a hierarchical domain name (olmix ``source:topic:quality``)
NAME_SEPARATOR = ":"
PATH_SEPARATOR = "/"
FEAS_TOL = 1e-7


def leaf_path(domain: str, declared: str | None = None) -> list[str]:
    """The group path segments of ``domain`` (without the leaf itself).

    ``declared`` (``"web/news"``) wins; otherwise a ``source:topic:quality`` name gives
    ``["web", "news"]``; a flat name gives ``[]``.
    """
    if declared:
        return [s for s in str(declared).strip(PATH_SEPARATOR).split(PATH_SEPARATOR) if s]
    parts = [s for s in str(domain).split(NAME_SEPARATOR)]
    if len(parts) < 2 or any(not s for s in parts):
        return []
    return parts[:-1]


def groups_of(
    domains: Sequence[str], group_of: Mapping[str, str | None] | None = None
) -> dict[str, list[str]]:
    """``{group path: [member domains in the caller's order]}`` for every group any domain
    belongs to (each prefix of each domain's path)."""
    group_of = dict(group_of or {})
    out: dict[str, list[str]] = {}
    for d in domains:
        segs = leaf_path(d, group_of.get(d))
        for k in range(1, len(segs) + 1):
            out.setdefault(PATH_SEPARATOR.join(segs[:k]), []).append(str(d))
    return out


def group_totals(
    mixture: Mapping[str, float], group_of: Mapping[str, str | None] | None = None
) -> dict[str, float]:
    """Total weight of each group of ``mixture`` (``{domain: weight}``)."""
    members = groups_of(list(mixture), group_of)
    return {g: float(sum(float(mixture[d]) for d in ds)) for g, ds in sorted(members.items())}


@dataclass
class GroupSystem:
    """Group constraints resolved against a domain order: ``A`` (groups x K, 0/1), bounds."""

    names: list[str]
    A: np.ndarray
    gmin: np.ndarray
    gmax: np.ndarray

    def __bool__(self) -> bool:
        return bool(self.names)

    def totals(self, W: Any) -> np.ndarray:
        return np.atleast_2d(np.asarray(W, dtype=float)) @ self.A.T

    def violation(self, W: Any) -> np.ndarray:
        """Largest violation of any group bound, per row."""
        T = self.totals(W)
        if T.shape[1] == 0:
            return np.zeros(T.shape[0])
        return np.maximum(np.maximum(self.gmin - T, T - self.gmax), 0.0).max(axis=1)


def resolve(
    groups: Mapping[str, Any] | None,
    domains: Sequence[str],
    group_of: Mapping[str, str | None] | None = None,
) -> GroupSystem:
    """Resolve ``groups`` (``{path: {"min", "max"} | {"fixed"}}``) against ``domains``.

    Raises ``ValueError`` naming ``groups.<path>`` for an unknown group or bad bounds.
    """
    domains = [str(d) for d in domains]
    members = groups_of(domains, group_of)
    names, rows, lo, hi = [], [], [], []
    for g, spec in (groups or {}).items():
        g = str(g).strip(PATH_SEPARATOR)
        if g not in members:
            raise ValueError(
                f"groups.{g}: unknown group; the domains' groups are {sorted(members)}"
            )
        spec = dict(spec or {})
        if spec.get("fixed") is not None:
            a = b = float(spec["fixed"])
        else:
            a = float(spec["min"]) if spec.get("min") is not None else 0.0
            b = float(spec["max"]) if spec.get("max") is not None else 1.0
        if not (np.isfinite(a) and np.isfinite(b)) or a < 0 or b > 1 or a > b + 1e-12:
            raise ValueError(f"groups.{g}: need 0 <= min <= max <= 1, got min={a:g}, max={b:g}")
        names.append(g)
        rows.append([1.0 if d in members[g] else 0.0 for d in domains])
        lo.append(a)
        hi.append(b)
    K = len(domains)
    return GroupSystem(
        names, np.array(rows, dtype=float).reshape(len(names), K), np.array(lo), np.array(hi)
    )


def check_feasible(lo: np.ndarray, hi: np.ndarray, system: GroupSystem) -> None:
    """Raise :class:`~mixopt.mixing.simplex.InfeasibleConstraintsError` when no mixture
    satisfies the box, the simplex and the group bounds (exact: a linear programme)."""
    if not system:
        return
    K = lo.size
    for j, g in enumerate(system.names):
        m = system.A[j] > 0
        if lo[m].sum() > system.gmax[j] + FEAS_TOL:
            raise InfeasibleConstraintsError(
                f"groups.{g}: its domains' lower bounds sum to {lo[m].sum():.4g} > the group's max "
                f"{system.gmax[j]:.4g}"
            )
        if hi[m].sum() < system.gmin[j] - FEAS_TOL:
            raise InfeasibleConstraintsError(
                f"groups.{g}: its domains' upper bounds and caps sum to {hi[m].sum():.4g} < the "
                f"group's min {system.gmin[j]:.4g}"
            )
    A_ub = np.vstack([system.A, -system.A])
    b_ub = np.concatenate([system.gmax, -system.gmin])
    res = linprog(
        np.zeros(K),
        A_ub=A_ub,
        b_ub=b_ub,
        A_eq=np.ones((1, K)),
        b_eq=[1.0],
        bounds=list(zip(lo, hi, strict=True)),
        method="highs",
    )
    if res.status != 0:
        raise InfeasibleConstraintsError(
            f"groups {system.names}: no mixture satisfies the group totals together with the "
            "per-domain bounds and caps (check nested groups and their siblings)"
        )


def _nodes(system: GroupSystem, K: int) -> dict:
    """The laminar tree of the constrained groups: each node's direct leaves, children and
    bounds (the root is the simplex, total exactly 1)."""
    sets = [frozenset(np.flatnonzero(system.A[j] > 0).tolist()) for j in range(len(system.names))]
    # a parent is the smallest strictly larger set containing the node
    # (groups are path prefixes: laminar)
    order = sorted(range(len(sets)), key=lambda j: -len(sets[j]))
    root = {"leaves": set(range(K)), "kids": [], "a": 1.0, "b": 1.0}
    made: list[tuple[frozenset, dict]] = [(frozenset(range(K)), root)]
    for j in order:
        # the smallest enclosing node; among equal sets the one made last (the deeper path)
        _, _, parent = min(
            ((len(st), -i, n) for i, (st, n) in enumerate(made) if sets[j] <= st),
            key=lambda c: (c[0], c[1]),
        )
        node = {
            "leaves": set(sets[j]),
            "kids": [],
            "a": float(system.gmin[j]),
            "b": float(system.gmax[j]),
        }
        parent["kids"].append(node)
        parent["leaves"] -= sets[j]
        made.append((sets[j], node))

    def freeze(n: dict) -> dict:
        n["leaves"] = np.array(sorted(n["leaves"]), dtype=int)
        for k in n["kids"]:
            freeze(k)
        return n

    return freeze(root)


def project(
    W: Any, lo: np.ndarray, hi: np.ndarray, system: GroupSystem | None, iters: int = 60
) -> np.ndarray:
    """Euclidean projection of ``W`` (one mixture or rows) onto box-simplex and group totals.

    The groups are path prefixes, so they nest (a laminar family) and the KKT conditions of
    ``min |x - w|^2`` read ``x_i = clip(w_i - tau_root - sum_{G ni i} mu_G, lo_i, hi_i)``
    with ``mu_G`` non-zero only when ``G``'s total sits at a bound. Bottom-up, a group's total
    as a function of the shift it receives is ``S_G(tau) = clip(U_G(tau), g_min, g_max)``,
    ``U_G(tau) = sum_{own leaves} clip(w_i - tau, lo_i, hi_i) + sum_{children} S_C(tau)``
    (non-increasing); top-down, each group's own shift is found by bisection so that its
    total is its clipped total. Vectorised over rows; exact up to the bisection (``iters``).
    """
    X = np.atleast_2d(np.asarray(W, dtype=float))
    one = np.asarray(W).ndim == 1
    if not system:
        out = project_box_simplex(X, lo, hi)
        return out[0] if one else out
    lo = np.asarray(lo, dtype=float)
    hi = np.asarray(hi, dtype=float)
    root = _nodes(system, X.shape[1])
    t_min, t_max = float(X.min() - hi.max()) - 1.0, float(X.max() - lo.min()) + 1.0
    out = np.empty_like(X)

    def solve(node: dict, tau_in: np.ndarray | None) -> None:
        if tau_in is None:
            target = np.full(X.shape[0], node["a"])
            tau = np.zeros(X.shape[0])
            need = np.ones(X.shape[0], dtype=bool)
        else:
            u = _U_rows(node, tau_in, X, lo, hi)
            target = np.clip(u, node["a"], node["b"])
            need = (u > node["b"]) | (u < node["a"])
            tau = tau_in.copy()
        if need.any():
            a = np.full(int(need.sum()), t_min)
            b = np.full(int(need.sum()), t_max)
            tg = target[need]
            sub = X[need]
            for _ in range(int(iters)):
                m = 0.5 * (a + b)
                big = _U_rows(node, m, sub, lo, hi) > tg  # total too large: shift up
                a = np.where(big, m, a)
                b = np.where(big, b, m)
            tau[need] = 0.5 * (a + b)
        li = node["leaves"]
        if li.size:
            out[:, li] = np.clip(X[:, li] - tau[:, None], lo[li], hi[li])
        for k in node["kids"]:
            solve(k, tau)

    solve(root, None)
    return out[0] if one else out


def _U_rows(
    node: dict, tau: np.ndarray, X: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    li = node["leaves"]
    tot = (
        np.clip(X[:, li] - tau[:, None], lo[li], hi[li]).sum(axis=1)
        if li.size
        else np.zeros(tau.size)
    )
    for k in node["kids"]:
        tot = tot + np.clip(_U_rows(k, tau, X, lo, hi), k["a"], k["b"])
    return tot


def scipy_constraints(
    system: GroupSystem, free: np.ndarray, base: np.ndarray
) -> list[dict[str, Any]]:
    """SLSQP inequality constraints of the group bounds on the free coordinates ``x``
    (the full mixture is ``base`` with ``x`` at ``free``)."""
    out = []
    for j in range(len(system.names)):
        a = system.A[j]
        af, off = a[free], float(a @ base)
        gmin, gmax = float(system.gmin[j]), float(system.gmax[j])
        out.append(
            {
                "type": "ineq",
                "fun": lambda x, af=af, off=off, g=gmin: af @ x + off - g,
                "jac": lambda x, af=af: af,
            }
        )
        out.append(
            {
                "type": "ineq",
                "fun": lambda x, af=af, off=off, g=gmax: g - af @ x - off,
                "jac": lambda x, af=af: -af,
            }
        )
    return out


def binding(w: Any, system: GroupSystem | None, tol: float = 1e-6) -> list[str]:
    """``group:<path>`` (fixed total), ``group_max:<path>`` or ``group_min:<path>`` active at
    ``w``."""
    if not system:
        return []
    t = system.totals(w)[0]
    out = []
    for j, g in enumerate(system.names):
        if np.isclose(system.gmin[j], system.gmax[j]):
            out.append(f"group:{g}")
        elif system.gmax[j] < 1 and t[j] >= system.gmax[j] - tol:
            out.append(f"group_max:{g}")
        elif system.gmin[j] > 0 and t[j] <= system.gmin[j] + tol:
            out.append(f"group_min:{g}")
    return out


def _tree(domains: list[str], group_of: Mapping[str, str | None] | None) -> dict:
    """Nested dict ``{segment: subtree}`` with leaves as ``{"__leaf__": index}``."""
    root: dict = {}
    for i, d in enumerate(domains):
        node = root
        for s in leaf_path(d, (group_of or {}).get(d)):
            node = node.setdefault(("group", s), {})
        node[("leaf", i)] = None
    return root


def hierarchical_dirichlet(
    count: int,
    prior: Any,
    domains: Sequence[str],
    group_of: Mapping[str, str | None] | None = None,
    strengths: Sequence[float] | np.ndarray = (1.0,),
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """``count`` mixtures drawn group first, then within each group (olmix's nested mixes).

    At every node of the group tree the children's shares are drawn from
    ``Dirichlet(s * q)``, ``q`` the children's prior mass renormalised and ``s`` one of
    ``strengths`` picked per draw (RegMix's strength grid); a leaf's weight is the product
    of the shares on its path. Flat domains are children of the root.
    """
    rng = rng or np.random.default_rng(0)
    domains = [str(d) for d in domains]
    p = np.clip(np.asarray(prior, dtype=float).ravel(), 0.0, None)
    if p.size != len(domains) or p.sum() <= 0:
        raise ValueError("prior must have one non-negative entry per domain with a positive sum")
    p = p / p.sum()
    tree = _tree(domains, group_of)
    out = np.zeros((int(count), len(domains)))
    s = np.asarray(strengths, dtype=float)[rng.integers(0, len(strengths), int(count))]

    def leaves(node: dict) -> list[int]:
        idx: list[int] = []
        for (kind, key), sub in node.items():
            idx += [key] if kind == "leaf" else leaves(sub)
        return idx

    def walk(node: dict, share: np.ndarray) -> None:
        kids = list(node.items())
        mass = np.array([p[k[1]] if k[0] == "leaf" else p[leaves(sub)].sum() for k, sub in kids])
        q = np.maximum(mass / max(mass.sum(), 1e-300), 1e-6)
        if len(kids) == 1:
            shares = np.ones((share.size, 1))
        else:
            shares = np.vstack([rng.dirichlet(si * q) for si in s])
        for c, ((kind, key), sub) in enumerate(kids):
            w = share * shares[:, c]
            if kind == "leaf":
                out[:, key] = w
            else:
                walk(sub, w)

    walk(tree, np.ones(int(count)))
    return out / out.sum(axis=1, keepdims=True)


def feasible_projection(
    lo: np.ndarray, hi: np.ndarray, system: GroupSystem | None
) -> Callable[[np.ndarray], np.ndarray]:
    """The projection onto the feasible set as a function of the mixtures: box-simplex
    (:func:`~mixopt.mixing.simplex.project_box_simplex`), plus the group totals when
    ``system`` has groups (:func:`project`)."""
    if not system:
        return lambda W: project_box_simplex(W, lo, hi)
    return lambda W: project(W, lo, hi, system)
