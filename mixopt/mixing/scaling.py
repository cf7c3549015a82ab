"""The nested scaling-law pipeline of the data mixing laws paper (Ye et al. 2024, ICLR 2025,
Sec. 4 "nested use of scaling laws", Eq. (5); reference code ``yegcjs/mixinglaws``,
``pipeline/steplaw.py``, ``pipeline/sizelaw.py``, ``pipeline/utils.py``).

1. **Steps law** per run (per mixture and model size), on its loss curve::

       L(S) = E + B / S^beta

   extrapolated to the target number of steps.
2. **Model-size law** per mixture across model sizes ``N`` (non-embedding parameters)::

       L(N) = E + A / N^alpha

   extrapolated to the target size.
3. The extrapolated losses, one row per mixture, then feed the mixing law
   (:class:`mixopt.mixing.mixing_law.MixingLaw`).

Both laws are fitted as the reference does (``utils.py::power_law_share_alpha``): the
parameterisation ``exp(log_c) + exp(alpha * (log_k - log x))`` keeps ``E = exp(log_c) > 0``
and ``B = k^alpha > 0``; the exponent is *shared* between the curves fitted together (the
reference's ``tie_alpha``: per mixture across validation targets for the steps law,
``"valid"`` in ``run.sh``; across all mixtures and targets for the size law, ``"all"``); the
loss is a summed Huber loss (``delta = 0.05`` for steps, ``0.08`` for sizes, as in ``run.sh``
/ ``sizelaw.py``) minimised by L-BFGS from many starts (reference grids: steps law
``log_k`` in 11 values x ``alpha`` in ``linspace(0.65, 0.9, 10)`` x 50 draws; size law
``log_k`` in 20 values x ``alpha`` in ``linspace(0.3, 0.8, 10)`` x 50 draws). Here every start
is screened cheaply (vectorised Huber value), and the best ``n_refine`` (16) are refined with
SciPy's L-BFGS-B and analytic gradients. The reference's ``log_k`` grids are in absolute
token / parameter units; they are re-expressed relative to the largest ``x`` of the fit so
the grids do not depend on whether steps or tokens are used.

Selection on held-out points, as the reference does (``law.py::fit_scaling_laws`` with
``valid_split``): the refinements are fitted without the ``holdout`` largest ``x`` (steps law:
the last 5 checkpoints, ``valid_split=5``; size law: the largest size, ``valid_split=1``), and
the one with the smallest held-out error is kept, not the one with the smallest training loss
(an extrapolating law is chosen for how it extrapolates). The reference stops there; here the
kept solution is then refined once more on all points (warm start, so it stays in the basin
chosen on held-out points; the last checkpoints are the most informative for extrapolation).
``heldout_mae`` reports the chosen refinement's error on the held-out points before that last
refit: the law's honest extrapolation error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize

#: reference grids, as offsets of log_k from log(max x) (see module docstring)
STEPS_LOG_K_OFFSETS = np.linspace(15.0, 23.0, 11) - np.log(30000 * 4096 * 256)
STEPS_EXPONENT_GRID = np.linspace(0.65, 0.9, 10)
STEPS_DELTA = 0.05
SIZE_LOG_K_OFFSETS = np.linspace(15.0, 25.0, 20) - np.log(302311424)
SIZE_EXPONENT_GRID = np.linspace(0.3, 0.8, 10)
SIZE_DELTA = 0.08
DRAWS_PER_CELL = 50


@dataclass
class PowerLawFit:
    """Fitted ``L(x) = E + B / x^alpha`` for ``n_curves`` curves (``alpha`` maybe shared).

    Stored as the reference parameterisation ``(log_c, log_k, alpha)``: ``E = exp(log_c)``,
    ``B = exp(alpha * log_k)``.
    """

    log_c: np.ndarray
    log_k: np.ndarray
    alpha: np.ndarray  # (n_curves,), equal entries when shared
    huber: float = float("nan")
    #: mean absolute error on the held-out largest-x points of the selected fit (NaN: none)
    heldout_mae: float = float("nan")
    n_heldout: int = 0

    @property
    def E(self) -> np.ndarray:
        return np.exp(self.log_c)

    @property
    def B(self) -> np.ndarray:
        return np.exp(self.alpha * self.log_k)

    def predict(self, x: Any) -> np.ndarray:
        """Losses at ``x`` (scalar or ``(n,)``): shape ``(n, n_curves)``."""
        lx = np.log(np.atleast_1d(np.asarray(x, dtype=float)))[:, None]
        return np.exp(self.log_c)[None, :] + np.exp(
            self.alpha[None, :] * (self.log_k[None, :] - lx)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "log_c": self.log_c.tolist(),
            "log_k": self.log_k.tolist(),
            "alpha": self.alpha.tolist(),
            "E": self.E.tolist(),
            "B": self.B.tolist(),
            "huber": self.huber,
            "heldout_mae": self.heldout_mae,
            "n_heldout": self.n_heldout,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PowerLawFit:
        nan = float("nan")
        return cls(
            np.asarray(d["log_c"], float),
            np.asarray(d["log_k"], float),
            np.asarray(d["alpha"], float),
            float(d["huber"]) if d.get("huber") is not None else nan,
            float(d["heldout_mae"]) if d.get("heldout_mae") is not None else nan,
            int(d.get("n_heldout") or 0),
        )


def _huber(r: np.ndarray, delta: float) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r**2, delta * (a - 0.5 * delta))


def _unpack(theta: np.ndarray, m: int, shared: bool):
    log_c, log_k = theta[:m], theta[m : 2 * m]
    alpha = np.full(m, theta[-1]) if shared else theta[2 * m :]
    return log_c, log_k, alpha


def _objective(theta, lx, Y, mask, delta, shared):
    m = Y.shape[1]
    log_c, log_k, alpha = _unpack(theta, m, shared)
    d = log_k[None, :] - lx  # (n, m)
    P = np.exp(np.clip(alpha[None, :] * d, -700, 700))
    c = np.exp(log_c)
    r = np.where(mask, c[None, :] + P - Y, 0.0)
    psi = np.clip(r, -delta, delta)
    f = float(_huber(r, delta).sum())
    g_c = psi.sum(axis=0) * c
    g_k = (psi * P).sum(axis=0) * alpha
    g_a = (psi * P * d).sum(axis=0)
    g = np.concatenate([g_c, g_k, [g_a.sum()] if shared else g_a])
    return f, g


def fit_power_law(
    x: Any,
    Y: Any,
    *,
    delta: float,
    log_k_offsets: np.ndarray,
    exponent_grid: np.ndarray,
    share_exponent: bool = True,
    draws_per_cell: int = DRAWS_PER_CELL,
    n_refine: int = 16,
    holdout: int = 0,
    random_state: int | None = 0,
) -> PowerLawFit:
    """Robust multi-start fit of ``y = E + B / x^alpha`` to one or several curves.

    Parameters
    ----------
    x : (n,) or (n, m) positive abscissae (steps, tokens or parameters).
    Y : (n,) or (n, m) losses; NaN entries are ignored (curves observed at different x).
    delta : Huber threshold (reference: 0.05 steps law, 0.08 size law).
    log_k_offsets, exponent_grid : start grids (see module docstring).
    share_exponent : one ``alpha`` for all curves (the reference's ``tie_alpha``).
    draws_per_cell : random jitters per grid cell (reference: 50).
    n_refine : screened starts refined with L-BFGS-B.
    holdout : the largest ``holdout`` abscissae (rows, ``x`` sorted) are left out of the
        refinements and choose between them (reference ``valid_split``); kept only when at
        least 2 points per curve remain for fitting.
    """
    Y = np.asarray(Y, dtype=float)
    if Y.ndim == 1:
        Y = Y[:, None]
    x = np.asarray(x, dtype=float)
    X = np.broadcast_to(x[:, None] if x.ndim == 1 else x, Y.shape)
    if np.any(X <= 0):
        raise ValueError("power-law abscissae must be > 0")
    mask = np.isfinite(Y)
    if np.any(mask.sum(axis=0) < 2):
        raise ValueError("each curve needs at least 2 finite points")
    Yf = np.where(mask, Y, 0.0)
    lx = np.log(X)
    n, m = Y.shape
    rng = np.random.default_rng(random_state)
    # -- reference starts: log_c = log(min y) + 1 + U(0,1); log_k = grid + U(-.5,.5); alpha grid
    cells = np.array([(o, a) for o in log_k_offsets for a in exponent_grid])
    # keep the screening tensor (starts x points x curves) under ~4M entries: with many curves
    # (a joint size law over all mixtures) fewer jittered draws per grid cell are screened
    draws = int(max(1, min(draws_per_cell, 4_000_000 // (len(cells) * n * m))))
    S = len(cells) * draws
    cell = np.repeat(np.arange(len(cells)), draws)
    ymin = np.array([Y[mask[:, j], j].min() for j in range(m)])
    lxmax = np.array([lx[mask[:, j], j].max() for j in range(m)])
    log_k0 = lxmax[None, :] + cells[cell, 0][:, None] + rng.uniform(-0.5, 0.5, (S, m))
    alpha0 = np.broadcast_to(cells[cell, 1][:, None], (S, m))
    # screening: the reference's c start lies above the data, so profile c per start instead
    # (the Huber-optimal constant is near the median residual; clip to stay positive).
    P = np.exp(alpha0[:, None, :] * (log_k0[:, None, :] - lx[None, :, :]))  # (S, n, m)
    resid = np.where(mask[None], Yf[None] - P, np.nan)
    c0 = np.clip(np.nanmedian(resid, axis=1), 1e-3 * ymin[None, :], None)  # (S, m)
    log_c0 = np.log(c0)
    pred = c0[:, None, :] + P
    score = np.where(mask[None], _huber(pred - Yf[None], delta), 0.0).sum(axis=(1, 2))
    best = np.argsort(score)[: max(1, n_refine)]
    # held-out rows: the `holdout` largest abscissae (per curve, among its finite points)
    held = np.zeros_like(mask)
    if holdout > 0:
        for j in range(m):
            rows = np.flatnonzero(mask[:, j])
            order = rows[np.argsort(lx[rows, j])]
            if order.size - holdout >= 2:
                held[order[-holdout:], j] = True
    fit_mask = mask & ~held
    opts = {"maxiter": 2000, "ftol": 1e-14, "gtol": 1e-10}
    best_key, best_theta = (np.inf, np.inf), None
    for s in best:
        a0 = [alpha0[s, 0]] if share_exponent else alpha0[s]
        theta0 = np.concatenate([log_c0[s], log_k0[s], a0])
        bounds = [(None, None)] * (2 * m) + [(1e-4, 5.0)] * len(a0)
        r = minimize(
            _objective,
            theta0,
            args=(lx, Yf, fit_mask, delta, share_exponent),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options=opts,
        )
        if not np.all(np.isfinite(r.x)):
            continue
        if held.any():
            lc, lk, al = _unpack(r.x, m, share_exponent)
            pred = np.exp(lc)[None, :] + np.exp(
                np.clip(al[None, :] * (lk[None, :] - lx), -700, 700)
            )
            key = (float(np.mean(np.abs(pred - Yf)[held])), float(r.fun))
        else:
            key = (float(r.fun), float(r.fun))
        if key < best_key:
            best_key, best_theta = key, r.x
    assert best_theta is not None
    heldout_mae = best_key[0] if held.any() else float("nan")
    f_final = best_key[1]
    if held.any():  # warm-started refit on every point, in the basin chosen on held-out points
        bounds = [(None, None)] * (2 * m) + [(1e-4, 5.0)] * (1 if share_exponent else m)
        r = minimize(
            _objective,
            best_theta,
            args=(lx, Yf, mask, delta, share_exponent),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options=opts,
        )
        if np.all(np.isfinite(r.x)):
            best_theta, f_final = r.x, float(r.fun)
    log_c, log_k, alpha = _unpack(best_theta, m, share_exponent)
    return PowerLawFit(
        log_c.copy(), log_k.copy(), alpha.copy(), f_final, heldout_mae, int(held.sum())
    )


def fit_steps_law(
    steps: Any, losses: Any, *, delta: float = STEPS_DELTA, share_exponent: bool = True, **kw: Any
) -> PowerLawFit:
    """Steps law ``L(S) = E + B / S^beta`` (Ye et al. 2024, Eq. 5; ``steplaw.py``).

    ``losses`` is ``(n_points,)`` or ``(n_points, n_targets)``; with several targets the
    exponent is shared (the reference's ``tie_alpha="valid"``).
    """
    return fit_power_law(
        steps,
        losses,
        delta=delta,
        log_k_offsets=STEPS_LOG_K_OFFSETS,
        exponent_grid=STEPS_EXPONENT_GRID,
        share_exponent=share_exponent,
        **kw,
    )


def fit_size_law(
    params: Any, losses: Any, *, delta: float = SIZE_DELTA, share_exponent: bool = True, **kw: Any
) -> PowerLawFit:
    """Model-size law ``L(N) = E + A / N^alpha`` (Ye et al. 2024, Eq. 5; ``sizelaw.py``).

    ``params`` are non-embedding parameter counts; ``losses`` ``(n_sizes,)`` or
    ``(n_sizes, n_curves)`` (NaN where a curve lacks a size); the exponent is shared across
    curves by default (the reference's ``tie_alpha="all"``).
    """
    return fit_power_law(
        params,
        losses,
        delta=delta,
        log_k_offsets=SIZE_LOG_K_OFFSETS,
        exponent_grid=SIZE_EXPONENT_GRID,
        share_exponent=share_exponent,
        **kw,
    )


@dataclass
class ExtrapolatedMixtures:
    """Output of :func:`extrapolate_runs`: one row per distinct mixture.

    ``X`` ``(n_mixtures, n_domains)``; ``Y`` ``(n_mixtures, n_targets)`` predicted losses at
    ``(target_steps, target_params)``; ``targets`` the column names; ``steps_laws`` maps
    ``(mixture_index, params)`` to the fitted steps law; ``size_law`` the joint size law.
    """

    X: np.ndarray
    Y: np.ndarray
    targets: list[Any]
    steps_laws: dict[tuple[int, float], PowerLawFit] = field(default_factory=dict)
    size_law: PowerLawFit | None = None


def _get(run: Any, key: str, default: Any = None) -> Any:
    if isinstance(run, Mapping):
        return run.get(key, default)
    return getattr(run, key, default)


def _curve_arrays(
    curve: Sequence[tuple[float, Any]], targets: list[Any]
) -> tuple[np.ndarray, np.ndarray]:
    steps, rows = [], []
    for step, losses in curve:
        steps.append(float(step))
        if isinstance(losses, Mapping):
            rows.append([float(losses.get(t, np.nan)) for t in targets])
        else:
            rows.append([float(v) for v in np.atleast_1d(losses)])
    return np.asarray(steps), np.asarray(rows, dtype=float)


def extrapolate_runs(
    runs: Sequence[Any],
    target_steps: float,
    target_params: float | None = None,
    *,
    targets: Sequence[Any] | None = None,
    fit_from: float = 1.0 / 3.0,
    steps_delta: float = STEPS_DELTA,
    size_delta: float = SIZE_DELTA,
    share_size_exponent: bool = True,
    random_state: int | None = 0,
) -> ExtrapolatedMixtures:
    """Predict, per mixture, the losses at ``(target_steps, target_params)``.

    Parameters
    ----------
    runs : sequence of mappings (or objects) with ``mixture`` (K weights), ``curve`` (list of
        ``(step, losses)``, ``losses`` a ``{target: loss}`` mapping or a sequence in
        ``targets`` order) and optionally ``params`` (non-embedding parameter count).
    target_steps : steps to extrapolate each run's curve to (steps law, Eq. 5).
    target_params : model size to extrapolate to (size law). ``None``: all runs must share
        one size, and the steps-law predictions are returned directly.
    targets : target names; default: the keys of the first curve point.
    fit_from : fit each steps law on curve points with ``step >= fit_from * last step``
        (the reference fits steps 10k-30k of 30k, i.e. the last two thirds).
    steps_delta, size_delta : Huber thresholds (reference 0.05 / 0.08).
    share_size_exponent : one size exponent for all mixtures and targets (reference "all").

    Returns
    -------
    ExtrapolatedMixtures
        ``X``/``Y`` ready for ``MixingLaw().fit(X, Y)``.

    Notes
    -----
    Runs with the same mixture and size (e.g. several seeds) are fitted separately and their
    predictions averaged.
    """
    if not runs:
        raise ValueError("no runs given")
    if targets is None:
        first = _get(runs[0], "curve")[0][1]
        if not isinstance(first, Mapping):
            raise ValueError("targets must be given when curve losses are sequences")
        targets = list(first)
    targets = list(targets)
    keys: dict[tuple[float, ...], int] = {}
    mixtures: list[np.ndarray] = []
    preds: dict[tuple[int, float], list[np.ndarray]] = {}
    laws: dict[tuple[int, float], PowerLawFit] = {}
    for run in runs:
        mix = np.asarray(_get(run, "mixture"), dtype=float)
        key = tuple(np.round(mix, 9))
        if key not in keys:
            keys[key] = len(mixtures)
            mixtures.append(mix)
        mi = keys[key]
        size = float(_get(run, "params", 0.0) or 0.0)
        steps, L = _curve_arrays(_get(run, "curve"), targets)
        keep = (steps >= fit_from * steps.max()) & (steps > 0)
        law = fit_steps_law(steps[keep], L[keep], delta=steps_delta, random_state=random_state)
        laws[(mi, size)] = law
        preds.setdefault((mi, size), []).append(law.predict(target_steps)[0])
    sizes = sorted({s for (_, s) in preds})
    n_mix, m = len(mixtures), len(targets)
    at_steps = np.full((len(sizes), n_mix, m), np.nan)
    for (mi, s), ps in preds.items():
        at_steps[sizes.index(s), mi] = np.mean(ps, axis=0)
    size_law = None
    if target_params is None:
        if len(sizes) != 1:
            raise ValueError(f"runs have {len(sizes)} model sizes; give target_params")
        Y = at_steps[0]
    elif len(sizes) == 1:
        if sizes[0] != float(target_params):
            raise ValueError("one model size only: cannot extrapolate to another target_params")
        Y = at_steps[0]
    else:
        if sizes[0] <= 0:
            raise ValueError("every run needs 'params' (non-embedding parameters) for the size law")
        flat = at_steps.reshape(len(sizes), n_mix * m)
        if share_size_exponent:
            size_law = fit_size_law(
                np.asarray(sizes), flat, delta=size_delta, random_state=random_state
            )
            Y = size_law.predict(target_params)[0].reshape(n_mix, m)
        else:
            Y = np.empty((n_mix, m))
            for j in range(n_mix):
                f = fit_size_law(
                    np.asarray(sizes),
                    at_steps[:, j, :],
                    delta=size_delta,
                    random_state=random_state,
                )
                Y[j] = f.predict(target_params)[0]
    return ExtrapolatedMixtures(np.vstack(mixtures), Y, targets, laws, size_law)
