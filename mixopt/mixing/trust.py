"""Should a fit be trusted? Documented checks on parameters and held-out predictions.

A fit can converge and still be useless: on the public runs the mixing law's exponents reached
|t| > 1000 and predicted up to 1.9e92 nats; LightGBM with its defaults returned a constant model
at <= 32 runs and a negative CV rank correlation at 26 runs. Such a fit is stored as succeeded
with ``trusted: false`` and the reasons, and the service refuses recommendations from it unless
asked explicitly. The checks:

* **exponents at their bound** (mixing law and ``law_gp``; bounds in
  :mod:`mixopt.mixing.mixing_law`): the data did not determine the law;
* **held-out predictions outside the observed range**: a cross-validated prediction lies
  further than ``RANGE_MARGIN`` (50%) of the observed objective range below its minimum or
  above its maximum;
* **negative rank correlation**: pooled CV Spearman < 0 (or, when reported, the cross-scale
  Spearman < 0);
* **constant model**: the predictions on the training runs do not vary
  (range < 1e-9 relative), e.g. trees that never split;
* **non-finite predictions** on the training runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

RANGE_MARGIN = 0.5
CONSTANT_RTOL = 1e-9


def _inner(est: Any) -> Any:
    """The estimator that answers (a selecting one's choice: ``final_estimator``)."""
    return est.final_estimator() if hasattr(est, "final_estimator") else est


def assess(
    estimator: Any,
    fidelity: dict | None,
    y_observed: Any,
    train_predictions: Any,
    cross_scale: dict | None = None,
) -> tuple[bool, list[str]]:
    """``(trusted, reasons)`` for a fitted estimator (see the module docstring)."""
    reasons: list[str] = []
    est = _inner(estimator)
    at_bound = getattr(est, "at_bound_", None)
    if at_bound is not None and np.any(at_bound):
        reasons.append(
            f"{int(np.sum(at_bound))} target(s) have mixing-law exponents at their bound "
            "(the runs do not determine the law)"
        )
    y = np.asarray(y_observed, dtype=float).ravel()
    p_train = np.asarray(train_predictions, dtype=float).ravel()
    if p_train.size and not np.all(np.isfinite(p_train)):
        reasons.append("non-finite predictions on the training runs")
    elif p_train.size > 1 and np.ptp(p_train) <= CONSTANT_RTOL * max(
        1.0, float(np.abs(p_train).mean())
    ):
        reasons.append("constant model: the same prediction for every run")
    if fidelity and y.size:
        lo, hi = float(y.min()), float(y.max())
        margin = RANGE_MARGIN * max(hi - lo, 1e-6 * max(1.0, abs(lo)))
        preds = np.array(
            [
                p["predicted"]
                for p in fidelity.get("predictions") or []
                if p.get("predicted") is not None
            ],
            dtype=float,
        )
        if preds.size:
            out = (preds < lo - margin) | (preds > hi + margin) | ~np.isfinite(preds)
            if out.any():
                worst = preds[out][
                    np.argmax(np.abs(np.nan_to_num(preds[out], nan=np.inf) - (lo + hi) / 2))
                ]
                reasons.append(
                    f"{int(out.sum())} held-out prediction(s) outside the observed range "
                    f"[{lo:.4g}, {hi:.4g}] by more than {RANGE_MARGIN:.0%} of it (worst "
                    f"{worst:.4g})"
                )
        rho = (fidelity.get("pooled") or {}).get("spearman")
        if rho is not None and rho < 0:
            reasons.append(f"negative cross-validated rank correlation ({rho:.3f})")
    if cross_scale and cross_scale.get("status") == "ok":
        rho = cross_scale.get("spearman")
        if rho is not None and rho < 0:
            reasons.append(f"negative cross-scale rank correlation ({rho:.3f})")
    return not reasons, reasons
