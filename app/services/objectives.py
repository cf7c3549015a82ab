"""Objective weights (``{metric: weight}``): one check and one normalisation for every place
that takes them (projects, staged phases, fits' targets, validations)."""

from __future__ import annotations

from app.services.errors import Invalid

ZERO = "objective weights must not all be zero"


def check_weights(
    weights: dict[str, float] | None,
    field: str = "objective",
    message: str = ZERO,
    *,
    empty_ok: bool = True,
) -> None:
    """422 naming ``field`` when given weights sum to zero or less; None, and ``{}`` when
    ``empty_ok``, mean "no objective given" and pass."""
    if weights is None or (empty_ok and not weights):
        return
    if sum(weights.values()) <= 0:
        raise Invalid(message, field=field)


def normalised(
    weights: dict[str, float], field: str = "objective", message: str = ZERO
) -> dict[str, float]:
    """``weights`` divided by their sum (checked by :func:`check_weights`)."""
    check_weights(weights, field, message)
    total = sum(weights.values())
    return {k: v / total for k, v in weights.items()}
