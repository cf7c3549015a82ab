"""Mixture constraints: bounds, fixed weights, availability caps and a KL pull to a prior.

Availability caps follow olmix (``allenai/olmix``): a domain with ``tokens_i`` tokens may be
repeated at most ``R`` times (``max_epochs``) in a run of ``target_tokens`` tokens, so::

    w_i <= tokens_i * R / target_tokens

``kl_weight`` is olmix's ``lambda`` in the proposer objective
``f(w) + lambda * KL(w || prior)`` (used by :mod:`mixopt.mixing.optimize`).

Every per-domain field accepts a ``{domain: value}`` mapping (domains not named are
unconstrained) or a list in domain order; :meth:`Constraints.feasible_bounds` resolves
everything against the caller's domain order and raises :class:`InfeasibleConstraintsError`
with the reason when no mixture can satisfy them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mixopt.mixing import hierarchy
from mixopt.mixing.simplex import InfeasibleConstraintsError, project_box_simplex

__all__ = [
    "EPOCH_TOL",
    "WEIGHT_TOL",
    "Constraints",
    "InfeasibleConstraintsError",
    "project_box_simplex",
    "resolve_per_domain",
]

TOL = 1e-9


PerDomain = Mapping[str, float | None] | Sequence[float] | None


def resolve_per_domain(value: Any, domains: list[str], default: float, name: str) -> np.ndarray:
    """A per-domain field (mapping, scalar or list in domain order) as an array over ``domains``
    (``default`` where a mapping does not name a domain); ``ValueError`` naming ``name``."""
    K = len(domains)
    if value is None:
        return np.full(K, float(default))
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(domains))
        if unknown:
            raise ValueError(f"{name}: unknown domain(s) {unknown}; known: {domains}")
        out = np.full(K, float(default))
        for d, v in value.items():
            out[domains.index(d)] = float(v)
        return out
    if np.isscalar(value):
        return np.full(K, value, dtype=float)
    arr = np.asarray(value, dtype=float).ravel()
    if arr.size != K:
        raise ValueError(f"{name}: expected {K} values (one per domain), got {arr.size}")
    return arr


@dataclass
class Constraints:
    """Constraints on a mixture ``w`` (``w_i >= 0``, ``sum_i w_i = 1``).

    Parameters
    ----------
    lower, upper : per-domain bounds (mapping or list); defaults 0 and 1.
    fixed : ``{domain: weight}`` (or list with NaN for free domains): weights that must hold
        exactly.
    token_counts : per-domain available tokens (mapping or list).
    target_tokens : tokens of the run being planned.
    max_epochs : allowed repetitions ``R``, global (float) or per domain.
    kl_weight : olmix's ``lambda`` toward the prior (0 disables).
    groups, group_of : group-total bounds and declared group paths (:mod:`mixopt.mixing.hierarchy`).
    """

    lower: PerDomain = None
    upper: PerDomain = None
    fixed: PerDomain = None
    token_counts: PerDomain = None
    target_tokens: float | None = None
    max_epochs: float | Mapping[str, float | None] | Sequence[float] | None = None
    kl_weight: float = 0.0
    #: group totals ``{path: {"min", "max"} | {"fixed"}}`` and declared paths
    #: ``{domain: "web/news"}``
    #: (:mod:`mixopt.mixing.hierarchy`; undeclared ``source:topic:quality`` names are parsed)
    groups: Mapping[str, Mapping[str, float]] | None = None
    group_of: Mapping[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    # -- (de)serialisation -----------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Constraints:
        d = dict(d or {})
        known = {k: d.pop(k) for k in list(d) if k in cls.__dataclass_fields__ and k != "extra"}
        c = cls(**known)
        c.extra = dict(d.pop("extra", {}) or {}, **d)
        return c

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for k, v in out.items():
            if isinstance(v, np.ndarray):
                out[k] = v.tolist()
            elif isinstance(v, tuple):
                out[k] = list(v)
        return out

    # -- resolution --------------------------------------------------------------------
    def caps(self, domains: list[str]) -> np.ndarray:
        """olmix availability caps ``tokens_i * R / target_tokens`` (``inf`` where undefined)."""
        K = len(domains)
        if self.token_counts is None or self.max_epochs is None or self.target_tokens is None:
            if self.token_counts is not None and (self.max_epochs is not None) != (
                self.target_tokens is not None
            ):
                raise ValueError(
                    "availability caps need token_counts, max_epochs and target_tokens together"
                )
            return np.full(K, np.inf)
        if float(self.target_tokens) <= 0:
            raise ValueError("target_tokens must be > 0")
        tokens = resolve_per_domain(self.token_counts, domains, np.inf, "token_counts")
        epochs = resolve_per_domain(self.max_epochs, domains, np.inf, "max_epochs")
        if np.any(tokens < 0) or np.any(epochs <= 0):
            raise ValueError("token_counts must be >= 0 and max_epochs > 0")
        with np.errstate(invalid="ignore"):
            c = tokens * epochs / float(self.target_tokens)
        return np.where(np.isnan(c), np.inf, c)

    def fixed_mask(self, domains: list[str]) -> tuple[np.ndarray, np.ndarray]:
        vals = resolve_per_domain(self.fixed, domains, np.nan, "fixed")
        return ~np.isnan(vals), vals

    def feasible_bounds(self, domains: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Combined ``(lo, hi)`` per domain: bounds, caps and fixed weights (``lo == hi``).

        Raises
        ------
        InfeasibleConstraintsError
            When a domain's lower bound exceeds its upper bound or cap, a fixed weight lies
            outside its bounds, the lower bounds sum to more than 1 or the upper bounds (and
            caps) to less than 1.
        """
        domains = [str(d) for d in domains]
        lo = np.clip(resolve_per_domain(self.lower, domains, 0.0, "lower"), 0.0, None)
        up = resolve_per_domain(self.upper, domains, 1.0, "upper")
        cap = self.caps(domains)
        hi = np.minimum(np.minimum(up, cap), 1.0)
        is_fixed, fv = self.fixed_mask(domains)
        problems = []
        for i, d in enumerate(domains):
            if is_fixed[i]:
                if not (lo[i] - TOL <= fv[i] <= hi[i] + TOL) or fv[i] < 0:
                    problems.append(
                        f"fixed weight of {d!r} = {fv[i]:.4g} is outside [{lo[i]:.4g}, {hi[i]:.4g}]"
                    )
                lo[i] = hi[i] = min(max(fv[i], 0.0), 1.0)
            elif lo[i] > hi[i] + TOL:
                why = (
                    "cap (tokens x max_epochs / target_tokens)" if cap[i] < up[i] else "upper bound"
                )
                problems.append(f"lower bound of {d!r} = {lo[i]:.4g} exceeds its {why} {hi[i]:.4g}")
        if problems:
            raise InfeasibleConstraintsError("; ".join(problems))
        if lo.sum() > 1 + 1e-7:
            raise InfeasibleConstraintsError(
                f"lower bounds and fixed weights sum to {lo.sum():.4g} > 1"
            )
        if hi.sum() < 1 - 1e-7:
            raise InfeasibleConstraintsError(
                f"upper bounds and availability caps sum to {hi.sum():.4g} < 1: not enough data "
                "for the budget (raise max_epochs or upper bounds, or lower target_tokens)"
            )
        return lo, hi

    def bound_sources(self, domains: list[str]) -> dict[str, np.ndarray]:
        """Which constraint each domain's upper/lower bound comes from (for reporting)."""
        domains = [str(d) for d in domains]
        up = resolve_per_domain(self.upper, domains, 1.0, "upper")
        cap = self.caps(domains)
        lower_set = np.zeros(len(domains), dtype=bool)
        if self.lower is not None:
            lower_set = resolve_per_domain(self.lower, domains, 0.0, "lower") > 0
        return {
            "cap_binds_first": cap < np.minimum(up, 1.0),
            "upper_set": up < 1.0,
            "lower_set": lower_set,
        }

    def group_system(self, domains: list[str], check: bool = True):
        """The group constraints resolved against ``domains``
        (:class:`~mixopt.mixing.hierarchy.GroupSystem`, empty without groups); ``check`` also
        proves them feasible with the bounds and caps."""
        system = hierarchy.resolve(self.groups, [str(d) for d in domains], self.group_of)
        if system and check:
            lo, hi = self.feasible_bounds(domains)
            hierarchy.check_feasible(lo, hi, system)
        return system

    def project(self, w: Any, domains: list[str]) -> np.ndarray:
        """Euclidean projection of ``w`` (one mixture or ``(n, K)``) onto the feasible set
        (bounds, caps, fixed weights and group totals)."""
        lo, hi = self.feasible_bounds(domains)
        if self.groups:
            return hierarchy.project(w, lo, hi, self.group_system(domains))
        return project_box_simplex(w, lo, hi)

    def binding(self, w: Any, domains: list[str], tol: float = 1e-6) -> list[str]:
        """Names of the constraints active at ``w``: ``fixed:``, ``cap:``, ``upper:``,
        ``lower:``."""
        w = np.asarray(w, dtype=float)
        domains = [str(d) for d in domains]
        lo, hi = self.feasible_bounds(domains)
        is_fixed, _ = self.fixed_mask(domains)
        src = self.bound_sources(domains)
        out = []
        for i, d in enumerate(domains):
            if is_fixed[i]:
                out.append(f"fixed:{d}")
            elif hi[i] < 1.0 and w[i] >= hi[i] - tol:
                out.append(f"cap:{d}" if src["cap_binds_first"][i] else f"upper:{d}")
            elif src["lower_set"][i] and w[i] <= lo[i] + tol:
                out.append(f"lower:{d}")
        if self.groups:
            out += hierarchy.binding(w, self.group_system(domains, check=False), tol)
        return out

    def satisfied(self, w: Any, domains: list[str], tol: float = 1e-6) -> bool:
        w = np.asarray(w, dtype=float)
        lo, hi = self.feasible_bounds(domains)
        ok = bool(abs(w.sum() - 1) <= tol and np.all(w >= lo - tol) and np.all(w <= hi + tol))
        if ok and self.groups:
            ok = bool(self.group_system(domains, check=False).violation(w).max() <= tol)
        return ok

    # -- epochs: one implementation of the availability questions -------------------------
    @classmethod
    def for_epochs(
        cls,
        token_counts: Mapping[str, float | None],
        target_tokens: float | None,
        max_epochs: float | None = None,
        max_epochs_per_domain: Mapping[str, float | None] | None = None,
    ) -> Constraints:
        """Constraints that answer epoch questions for a project: token counts per domain
        (None: unknown), the run's ``target_tokens`` and the caps, ``max_epochs_per_domain[d]``
        where named, else ``max_epochs`` (None: uncapped)."""
        per = dict(max_epochs_per_domain or {})
        caps = {d: (per[d] if d in per else max_epochs) for d in token_counts}
        return cls(token_counts=dict(token_counts), target_tokens=target_tokens, max_epochs=caps)

    def epoch_caps(self, domains: list[str]) -> dict[str, float | None]:
        """Each domain's epoch cap ``R_i`` (None: uncapped)."""
        caps = _optional_per_domain(self.max_epochs, domains)
        return {d: (None if np.isnan(c) else float(c)) for d, c in zip(domains, caps, strict=True)}

    def epoch_limits(self, domains: list[str]) -> dict[str, dict[str, Any]]:
        """Per domain, the weight a mixture may give it before an availability warning, at
        ``target_tokens`` (the one rule: :meth:`over_cap` and :meth:`epoch_warnings` read it,
        and the dashboard's what-if page gets it as data and only compares).

        ``max_weight``: above it the domain is repeated beyond its cap,
        ``(R_i + EPOCH_TOL) x tokens_i / target_tokens``, or ``WEIGHT_TOL`` when the domain has
        no tokens or no token count (``unavailable`` says which); None without a target or a
        cap. ``epochs_per_weight``: ``target_tokens / tokens_i`` (epochs = weight x it).
        ``cap``: ``R_i`` (None: uncapped).
        """
        tokens = _optional_per_domain(self.token_counts, domains)
        caps = self.epoch_caps(domains)
        target = float(self.target_tokens) if self.target_tokens else None
        out = {}
        for d, t in zip(domains, tokens, strict=True):
            cap = caps[d]
            lim: dict[str, Any] = {
                "cap": cap,
                "epochs_per_weight": None,
                "max_weight": None,
                "unavailable": "no token count" if np.isnan(t) else "no tokens" if t == 0 else None,
            }
            if target and lim["unavailable"]:
                lim["max_weight"] = WEIGHT_TOL
            elif target:
                lim["epochs_per_weight"] = target / float(t)
                if cap is not None:
                    lim["max_weight"] = (cap + EPOCH_TOL) * float(t) / target
            out[d] = lim
        return out

    def epochs_used(
        self, mixture: Mapping[str, float] | Sequence[float], domains: list[str]
    ) -> dict[str, float | None]:
        """Epochs of each domain a mixture implies at ``target_tokens``:
        ``w_i x target_tokens / tokens_i`` (None without a target or a positive token count)."""
        w = _mixture(mixture, domains)
        limits = self.epoch_limits(domains)
        return {
            d: (
                None
                if limits[d]["epochs_per_weight"] is None
                else float(x) * limits[d]["epochs_per_weight"]
            )
            for d, x in zip(domains, w, strict=True)
        }

    def over_cap(
        self, mixture: Mapping[str, float] | Sequence[float], domains: list[str]
    ) -> dict[str, bool]:
        """Whether each domain is repeated beyond its epoch cap (:meth:`epoch_limits`)."""
        w = _mixture(mixture, domains)
        limits = self.epoch_limits(domains)
        return {
            d: limits[d]["unavailable"] is None and _exceeds(x, limits[d])
            for d, x in zip(domains, w, strict=True)
        }

    def epoch_warnings(
        self, mixture: Mapping[str, float] | Sequence[float], domains: list[str]
    ) -> list[str]:
        """Domains a mixture uses without tokens or a token count, or repeats beyond their epoch
        cap, at ``target_tokens`` (none without a target): :meth:`epoch_limits` exceeded."""
        w = _mixture(mixture, domains)
        out = []
        for (d, lim), x in zip(self.epoch_limits(domains).items(), w, strict=True):
            if not _exceeds(x, lim):
                continue
            if lim["unavailable"] == "no token count":
                out.append(f"{d}: weight {x:.3f} but no token count (availability unknown)")
            elif lim["unavailable"] == "no tokens":
                out.append(f"{d}: weight {x:.3f} but the project has no tokens of it")
            else:
                cap, e = float(lim["cap"]), float(x) * lim["epochs_per_weight"]
                out.append(
                    f"{d}: {e:.2f} epochs at weight {x:.3f}, {e / cap:.1f}x its {cap:g}-epoch cap"
                )
        return out


def _exceeds(x: float, limit: Mapping[str, Any]) -> bool:
    return limit["max_weight"] is not None and float(x) > limit["max_weight"]


#: a weight at or below this counts as unused (availability warnings)
WEIGHT_TOL = 1e-9
#: epochs above a cap by at most this are within it
EPOCH_TOL = 1e-9


def _optional_per_domain(value: Any, domains: list[str]) -> np.ndarray:
    """A per-domain field whose entries may be None (unknown): NaN there and where unnamed."""
    if value is None:
        return np.full(len(domains), np.nan)
    if isinstance(value, Mapping):
        return np.array([np.nan if value.get(d) is None else float(value[d]) for d in domains])
    if np.isscalar(value):
        return np.full(len(domains), value, dtype=float)
    return np.array([np.nan if v is None else float(v) for v in value], dtype=float)


def _mixture(mixture: Mapping[str, float] | Sequence[float], domains: list[str]) -> np.ndarray:
    if isinstance(mixture, Mapping):
        return np.array([float(mixture.get(d, 0.0)) for d in domains])
    return np.asarray(mixture, dtype=float).ravel()


#: former private name, kept for callers outside the package
_resolve = resolve_per_domain
