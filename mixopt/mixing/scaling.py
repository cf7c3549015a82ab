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

Both laws minimise the reference's objective (``utils.py::power_law_share_alpha``): a summed
Huber loss (``delta = 0.05`` for steps, ``0.08`` for sizes, as in ``run.sh`` / ``sizelaw.py``)
with ``E > 0`` and ``B > 0`` (stored as ``exp(log_c)`` and ``k^alpha``); the exponent is
*shared* between the curves fitted together. The reference ties it across the validation
targets of one run (steps law, ``tie_alpha="valid"``) and across all mixtures (size law,
``"all"``); the pipeline (:mod:`mixopt.mixing.nested`) also ties the steps exponent across the
runs of one model size (issue 23: on the Data Mixing Laws runs, a curve fitted up to 30k steps
alone over-predicted the drop to 90k-100k; tied across the runs of its size the steps law's
error at 3x its fitted steps fell from 1.98% to 0.66% pooled over 3Mix and 5Mix,
``bench/transfer.py``).

The fit is a variable projection instead of the reference's multi-start L-BFGS (issue 23:
the same optimum, found globally in one dimension, thousands of times faster): ``L`` is
linear in ``(E, B)`` for a fixed exponent, so the exponent is profiled on a log grid over
``EXPONENT_RANGE`` (each curve's ``E``, ``B`` by least squares, reweighted to the Huber loss)
and refined between the best grid point's neighbours.

The reference's ``valid_split`` (``law.py::fit_scaling_laws``) chose among its multi-start
refinements by their error on held-out points (the last 5 checkpoints, the largest size);
with a global fit there is nothing to choose, so the held-out points measure the law instead:
``heldout_mae`` is the error on them of a fit without them (the law's honest extrapolation
error), and the returned law is fitted on every point.

Weakly informative priors on the exponents (issue 23): where the data cannot pin an exponent
(two model sizes: any size exponent fits two points exactly), the fit is the maximum a
posteriori one under a log-normal prior, ``log alpha ~ N(log mu, sd^2)``, added to the Huber
loss as ``sigma^2 * 0.5 * z^2`` (the Huber loss is ``sigma^2`` times a Gaussian negative
log-likelihood for residuals of scale ``sigma``). ``sigma`` is the unpenalised fit's residual
sd when the points outnumber the parameters (the data then weigh as much as they can);
``PRIOR_NOISE`` (0.01 nats, the order of the seed-to-seed spread of a final loss at these
scales) when they do not (the prior then decides alone). Both centres follow one rule: the
geometric mean of the two published exponents of the same term, Kaplan et al. 2020 ("Scaling
laws for neural language models", Eq. 1.1/5.6) and Hoffmann et al. 2022 ("Training
compute-optimal LLMs", Approach 3), with ``sd`` half their log-distance so both lie at one
sd: size ``sqrt(0.076 x 0.34) = 0.16``, ``sd = 0.75``; steps (data) ``sqrt(0.28 x 0.76) =
0.46``, ``sd = 0.5``. (A centre at Hoffmann's 0.34 alone was tried first: pooled over the
leave-largest-out cases the GP's mean error was the same, but the two-size case, where the
prior decides, moved from 1.05% to 2.03%: ``bench/transfer.py``.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

#: reference grids, as offsets of log_k from log(max x) (see module docstring)
STEPS_LOG_K_OFFSETS = np.linspace(15.0, 23.0, 11) - np.log(30000 * 4096 * 256)
STEPS_EXPONENT_GRID = np.linspace(0.65, 0.9, 10)
STEPS_DELTA = 0.05
SIZE_LOG_K_OFFSETS = np.linspace(15.0, 25.0, 20) - np.log(302311424)
SIZE_EXPONENT_GRID = np.linspace(0.3, 0.8, 10)
SIZE_DELTA = 0.08
DRAWS_PER_CELL = 50
#: log-normal exponent priors (centre, sd of log): module docstring for the sources
SIZE_EXPONENT_PRIOR = (0.16, 0.75)
STEPS_EXPONENT_PRIOR = (0.46, 0.5)
#: residual scale (nats) that weighs a prior against the Huber loss (module docstring)
PRIOR_NOISE = 0.01


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


#: exponents profiled (log-spaced), then refined between the best grid point's neighbours
EXPONENT_RANGE = (0.01, 3.0)
PROFILE_GRID = 160
#: entries of one profiling tensor (exponents x points x curves): bounds the memory
PROFILE_CHUNK = 1_000_000
#: iteratively reweighted passes that turn the least-squares profile into the Huber fit
HUBER_PASSES = 2
#: floor of E and B (they are stored as logs)
_TINY = 1e-12


def _profile_ls(
    z: np.ndarray, Y: np.ndarray, W: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted least squares of ``y = E + b z`` per curve for stacked exponents.

    ``z`` (G, n, m) basis values, ``Y`` (n, m), ``W`` (n, m) weights (0: missing). Returns
    ``E``, ``b`` (G, m), both >= 0 (a negative one is set to ~0 and the other refitted), and
    the weighted residual sum of squares per exponent and curve (G, m).
    """
    sw = W.sum(axis=0)[None, :]
    zm = (W * z).sum(axis=1) / sw
    ym = (W * Y).sum(axis=0)[None, :] / sw
    dz = z - zm[:, None, :]
    szz = (W * dz * dz).sum(axis=1)
    szy = (W * dz * (Y[None] - ym[:, None, :])).sum(axis=1)
    b = np.where(szz > 0, szy / np.where(szz > 0, szz, 1.0), 0.0)
    E = ym - b * zm
    neg_b = b < _TINY
    b = np.where(neg_b, _TINY, b)
    E = np.where(neg_b, ym, E)
    neg_e = E < _TINY  # E >= 0: through the origin
    b0 = (W * z * Y[None]).sum(axis=1) / np.maximum((W * z * z).sum(axis=1), 1e-300)
    b = np.where(neg_e, np.maximum(b0, _TINY), b)
    E = np.where(neg_e, _TINY, E)
    r = Y[None] - E[:, None, :] - b[:, None, :] * z
    return E, b, (W * r * r).sum(axis=1)


def _huber_weights(r: np.ndarray, delta: float, mask: np.ndarray) -> np.ndarray:
    a = np.abs(r)
    return np.where(mask, np.where(a <= delta, 1.0, delta / np.maximum(a, 1e-300)), 0.0)


def _prior_penalty(
    alpha: np.ndarray, prior: tuple[float, float] | None, noise: float = PRIOR_NOISE
) -> np.ndarray:
    if prior is None:
        return np.zeros_like(alpha)
    mu, sd = prior
    return noise**2 * 0.5 * ((np.log(alpha) - np.log(mu)) / sd) ** 2


def _fit_profile(
    u: np.ndarray,
    Y: np.ndarray,
    mask: np.ndarray,
    *,
    delta: float,
    shared: bool,
    prior: tuple[float, float] | None,
    noise: float = PRIOR_NOISE,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Exponent(s) by profiling: for each exponent on a log grid, ``E`` and ``B`` per curve by
    (Huber-reweighted) least squares; the exponent minimising ``0.5 * RSS + prior`` (summed over
    curves when shared), refined by a bounded scalar search between its grid neighbours.
    ``u = x / max x`` (n, m). Returns ``E``, ``b`` (coefficient of ``u^-alpha``), ``alpha``
    (m,) and the objective."""
    Yf = np.where(mask, Y, 0.0)
    lu = np.log(np.where(mask, u, 1.0))
    grid = np.exp(np.linspace(np.log(EXPONENT_RANGE[0]), np.log(EXPONENT_RANGE[1]), PROFILE_GRID))
    W = mask.astype(float)

    def at(alphas: np.ndarray, W: np.ndarray):
        # exponents in chunks: the (exponents x points x curves) tensors stay under ~1M entries
        step = max(1, PROFILE_CHUNK // max(1, Yf.size))
        parts = [
            _profile_ls(np.exp(-alphas[i : i + step, None, None] * lu[None]), Yf, W)
            for i in range(0, alphas.size, step)
        ]
        return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))

    for _ in range(HUBER_PASSES + 1):
        E, b, rss = at(grid, W)
        obj = 0.5 * rss + _prior_penalty(grid, prior, noise)[:, None]
        if shared:
            g = int(np.argmin(obj.sum(axis=1)))
            lo, hi = grid[max(g - 1, 0)], grid[min(g + 1, grid.size - 1)]

            def f1(la: float, W: np.ndarray = W) -> float:
                E1, b1, r1 = at(np.array([np.exp(la)]), W)
                return float(
                    0.5 * r1.sum() + _prior_penalty(np.array([np.exp(la)]), prior, noise)[0]
                )

            best = minimize_scalar(f1, bounds=(np.log(lo), np.log(hi)), method="bounded")
            alpha = np.full(Y.shape[1], float(np.exp(best.x)))
        else:
            alpha = grid[np.argmin(obj, axis=0)]
        E1, b1, _ = _profile_ls(np.exp(-alpha[None, None, :] * lu[None]), Yf, W)
        E, b = E1[0], b1[0]
        r = Yf - E[None] - b[None] * np.exp(-alpha[None, :] * lu)
        W = _huber_weights(r, delta, mask)
    r = np.where(mask, Yf - E[None] - b[None] * np.exp(-alpha[None, :] * lu), 0.0)
    pen = _prior_penalty(alpha[:1] if shared else alpha, prior, noise).sum()
    f = float(_huber(r, delta).sum() + pen)
    return E, b, alpha, f


def _residual_noise(
    u: np.ndarray, Y: np.ndarray, mask: np.ndarray, delta: float, shared: bool
) -> float:
    """The residual sd that weighs the prior: estimated from the unpenalised fit's residuals
    (``RSS / dof``) when the points outnumber the parameters; ``PRIOR_NOISE`` when they do not
    (then the data leave the exponent free and the prior alone decides it)."""
    m = Y.shape[1]
    dof = int(mask.sum()) - 2 * m - (1 if shared else m)
    if dof <= 0:
        return PRIOR_NOISE
    _, _, _, f = _fit_profile(u, Y, mask, delta=delta, shared=shared, prior=None)
    return float(max(np.sqrt(2.0 * f / dof), 1e-6))


def fit_power_law(
    x: Any,
    Y: Any,
    *,
    delta: float,
    log_k_offsets: np.ndarray | None = None,
    exponent_grid: np.ndarray | None = None,
    share_exponent: bool = True,
    draws_per_cell: int = DRAWS_PER_CELL,
    n_refine: int = 16,
    holdout: int = 0,
    random_state: int | None = 0,
    exponent_prior: tuple[float, float] | None = None,
) -> PowerLawFit:
    """Fit of ``y = E + B / x^alpha`` to one or several curves (``E, B >= 0``).

    ``y`` is linear in ``(E, B)`` once ``alpha`` is fixed, so ``alpha`` is profiled (variable
    projection): on a log grid over ``EXPONENT_RANGE`` each curve's ``E``, ``B`` come from least
    squares reweighted to the Huber loss (``HUBER_PASSES``), and the exponent minimising the
    Huber loss plus the prior (summed over curves when shared) is refined by a bounded scalar
    search. This finds the global optimum of the reference's objective in one dimension instead
    of its multi-start L-BFGS (the reference's start grids ``log_k_offsets``/
    ``exponent_grid``/``draws_per_cell``/``n_refine`` are accepted and unused; it is
    deterministic, so ``random_state`` is unused too).

    Parameters
    ----------
    x : (n,) or (n, m) positive abscissae (steps, tokens or parameters).
    Y : (n,) or (n, m) losses; NaN entries are ignored (curves observed at different x).
    delta : Huber threshold (reference: 0.05 steps law, 0.08 size law).
    share_exponent : one ``alpha`` for all curves (the reference's ``tie_alpha``).
    holdout : the largest ``holdout`` abscissae (per curve) are left out of a first fit whose
        error on them is ``heldout_mae`` (the law's honest extrapolation error; reference
        ``valid_split``); kept only when at least 2 points per curve remain. The returned law
        is then fitted on every point.
    exponent_prior : ``(centre, sd of log)`` of a log-normal prior on the exponent(s) (module
        docstring); ``None``: no prior.
    """
    del log_k_offsets, exponent_grid, draws_per_cell, n_refine, random_state
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
    m = Y.shape[1]
    xmax = np.array([X[mask[:, j], j].max() for j in range(m)])
    u = X / xmax[None, :]
    held = np.zeros_like(mask)
    if holdout > 0:
        lx = np.log(X)
        for j in range(m):
            rows = np.flatnonzero(mask[:, j])
            order = rows[np.argsort(lx[rows, j])]
            if order.size - holdout >= 2:
                held[order[-holdout:], j] = True
    kw: dict[str, Any] = {"delta": delta, "shared": share_exponent, "prior": exponent_prior}
    if exponent_prior is not None:
        kw["noise"] = _residual_noise(u, Y, mask, delta, share_exponent)
    heldout_mae = float("nan")
    if held.any():
        fm = mask & ~held
        xm = np.array([X[fm[:, j], j].max() for j in range(m)])
        E, b, alpha, _ = _fit_profile(X / xm[None, :], Y, fm, **kw)
        pred = E[None] + b[None] * (X / xm[None, :]) ** (-alpha[None, :])
        heldout_mae = float(np.mean(np.abs(pred - np.where(mask, Y, 0.0))[held]))
    E, b, alpha, f = _fit_profile(u, Y, mask, **kw)
    # back to the reference parameterisation: B = b * xmax^alpha = k^alpha
    log_k = np.log(np.maximum(b, _TINY)) / alpha + np.log(xmax)
    return PowerLawFit(
        np.log(np.maximum(E, _TINY)), log_k, alpha.astype(float), f, heldout_mae, int(held.sum())
    )


def fit_steps_law(
    steps: Any,
    losses: Any,
    *,
    delta: float = STEPS_DELTA,
    share_exponent: bool = True,
    exponent_prior: tuple[float, float] | None = STEPS_EXPONENT_PRIOR,
    **kw: Any,
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
        exponent_prior=exponent_prior,
        **kw,
    )


def fit_size_law(
    params: Any,
    losses: Any,
    *,
    delta: float = SIZE_DELTA,
    share_exponent: bool = True,
    exponent_prior: tuple[float, float] | None = SIZE_EXPONENT_PRIOR,
    **kw: Any,
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
        exponent_prior=exponent_prior,
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
