"""Mixture of Data Experts (MDE): the loss of a mixture approximated from per-domain experts.

Belenki, Agarwal, Shi, Toutanova 2025, "Optimizing Pre-Training Data Mixtures with Mixtures of
Data Experts" (arXiv:2502.15950; Fig. 1 and Sec. 3). One expert ``E_i`` is trained per training
domain ``i`` with the swarm's budget. The model trained on the mixture ``w`` is approximated by
the ensemble whose next-token probability is ``p_MDE(x_t | x_<t) = sum_i w_i p_i(x_t | x_<t)``,
and its loss on validation domain ``j`` by::

    MDE_j(w) = -(1 / T_j) sum_t log( sum_i w_i p_i(t) )                                   (MDE)

over the ``T_j`` observed tokens of ``j`` (positions: :mod:`mixopt.training.experts`). Computed
for any ``w`` from the experts' stored probabilities, with no new network evaluation.

Estimators (registered; each needs the experts' probabilities, an :class:`ExpertProbs`):

* ``mde``: the approximation alone, calibrated to the runs by a per-target affine map
  ``L_j(w) = a_j + b_j MDE_j(w)`` (least squares; ``b_j >= 0`` by default: a larger
  approximated loss never predicts a smaller one). The paper reports MDE alone as a
  competitive estimator; the affine map absorbs the ensemble's systematic gap to a trained
  model (an ensemble of experts is not one model trained on the mixture).
* ``mde_linear``, ``mde_gp``, ``mde_lgbm``: the paper's regressors (Linear, MTGP, GBM) with the
  MDE losses as features beside the mixture weights: ``L_j = f_j([w, MDE(w)])``. Three names,
  not one estimator with a ``regressor`` parameter, because ``auto`` and the CV / transfer
  tables judge estimators by name: each regressor is a candidate of its own.
  ``mde_linear`` is ridge regression on standardised features with the penalty chosen by
  leave-one-out CV (at 8-40 runs the paper's unpenalised linear model on ``K + 1`` or more
  features interpolates the runs); ``mde_gp`` the project's GP (``gp``, ARD Matern 5/2, one
  per target, its input warp chosen by marginal likelihood); ``mde_lgbm`` RegMix's LightGBM
  (``regmix_lgbm``, the paper's GBM).

Handing the experts in: the fit context ``experts=ExpertProbs(...)`` (the pipeline and
``auto`` forward it to every candidate), or :meth:`MDEEstimator.attach_experts` /
:func:`attach_experts` before ``fit``/``predict``. The fitted state is JSON and records the
expert set's :attr:`ExpertProbs.content_hash`; after ``from_state`` the same set must be
attached again (a missing set raises :class:`MissingExpertsError`, a different one
:class:`ExpertsMismatchError`; both are ``ValueError``, a 422 in the service).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, Self

import numpy as np

from mixopt.mixing.base import MixingEstimator, ParamSpec, register
from mixopt.mixing.gp import GaussianProcessMixing
from mixopt.mixing.objective import objective_vector
from mixopt.mixing.regmix import RegMixLGBM

#: bounds on an expert set (every size has a limit)
MAX_EXPERTS = 256
MAX_VAL_DOMAINS = 256
MAX_TOKENS_PER_DOMAIN = 50_000_000
#: the working block of :func:`mde_losses`: mixtures x tokens per block, float32 (1 MiB)
BLOCK_ELEMENTS = 1 << 18


class MissingExpertsError(ValueError):
    """An MDE estimator was fitted or used without the experts' probabilities."""


class ExpertsMismatchError(ValueError):
    """The attached experts are not the set the fit was made with (or do not match its domains)."""


def _field_error(field: str, msg: str) -> ValueError:
    return ValueError(f"{field}: {msg}")


class ExpertProbs:
    """The experts' probabilities of the observed next tokens of each validation domain.

    Parameters
    ----------
    experts : the expert domains, in the order of the arrays' rows (one expert per training
        domain; a mixture's weights are matched to them by name).
    probs : ``{val_domain: array (K, T_j)}``, row ``i`` the expert ``experts[i]``'s
        probability of each of the ``T_j`` observed tokens (float16 or float32; finite, in
        ``(0, 1]``). ``T_j`` may differ between validation domains.

    Errors name the field, e.g. ``probs[code]: 3 values are 0 ...``. :attr:`content_hash` is a
    sha256 over the names, the shapes, the dtypes and the bytes.
    """

    def __init__(self, experts: Sequence[str], probs: Mapping[str, Any]) -> None:
        experts = [str(e) for e in experts]
        if not experts:
            raise _field_error("experts", "no expert domains")
        if len(experts) > MAX_EXPERTS:
            raise _field_error("experts", f"{len(experts)} experts, at most {MAX_EXPERTS}")
        if len(set(experts)) != len(experts):
            raise _field_error("experts", f"duplicate expert domains in {experts}")
        if not isinstance(probs, Mapping) or not probs:
            raise _field_error("probs", "give one array per validation domain")
        if len(probs) > MAX_VAL_DOMAINS:
            raise _field_error(
                "probs", f"{len(probs)} validation domains, at most {MAX_VAL_DOMAINS}"
            )
        self.experts: list[str] = experts
        self.val_domains: list[str] = [str(v) for v in probs]
        self.arrays: dict[str, np.ndarray] = {
            str(v): _check_array(f"probs[{v}]", a, len(experts)) for v, a in probs.items()
        }
        self._f32: dict[str, np.ndarray] = {}
        self.content_hash: str = self._hash()

    @classmethod
    def from_pairs(
        cls,
        pairs: Mapping[tuple[str, str], Any],
        experts: Sequence[str] | None = None,
        val_domains: Sequence[str] | None = None,
    ) -> ExpertProbs:
        """From ``{(expert_domain, val_domain): 1-D array}`` (what
        :func:`mixopt.training.experts.train_experts` returns); every pair must be present."""
        experts = list(experts) if experts is not None else list(dict.fromkeys(e for e, _ in pairs))
        vals = (
            list(val_domains)
            if val_domains is not None
            else list(dict.fromkeys(v for _, v in pairs))
        )
        missing = [f"({e}, {v})" for e in experts for v in vals if (e, v) not in pairs]
        if missing:
            raise _field_error("probs", f"missing expert/validation pairs {missing[:10]}")
        out = {}
        for v in vals:
            rows = [np.asarray(pairs[(e, v)]) for e in experts]
            for e, r in zip(experts, rows, strict=True):
                if r.ndim != 1:
                    raise _field_error(f"probs[{e}, {v}]", f"must be 1-D, got shape {r.shape}")
            lengths = {r.shape[0] for r in rows}
            if len(lengths) != 1:
                raise _field_error(
                    f"probs[*, {v}]",
                    f"the experts' arrays differ in length ({sorted(lengths)}): they must score "
                    "the same tokens",
                )
            out[v] = np.stack(rows)
        return cls(experts, out)

    def _hash(self) -> str:
        h = hashlib.sha256()
        h.update(repr((self.experts, self.val_domains)).encode())
        for v in self.val_domains:
            a = self.arrays[v]
            h.update(f"{v}|{a.dtype.str}|{a.shape}".encode())
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    def padded32(self, val_domain: str) -> np.ndarray:
        """The ``(K, T_j)`` array as contiguous float32, padded with probability-1 tokens (log 0)
        to a multiple of :data:`GROUP` tokens (converted once, kept)."""
        if val_domain not in self._f32:
            a = self.arrays[val_domain]
            pad = (-a.shape[1]) % GROUP
            P = np.ones((a.shape[0], a.shape[1] + pad), dtype=np.float32)
            P[:, : a.shape[1]] = a
            self._f32[val_domain] = P
        return self._f32[val_domain]

    def n_tokens(self) -> dict[str, int]:
        return {v: int(a.shape[1]) for v, a in self.arrays.items()}

    def summary(self) -> dict[str, Any]:
        """JSON description: experts, validation domains, token counts and hash."""
        return {
            "experts": list(self.experts),
            "val_domains": list(self.val_domains),
            "n_tokens": self.n_tokens(),
            "hash": self.content_hash,
        }

    def expert_losses(self) -> np.ndarray:
        """``(K, J)``: each expert's own loss on each validation domain (the one-hot MDE)."""
        return mde_losses(self, np.eye(len(self.experts)))


def _check_array(field: str, a: Any, k: int) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype not in (np.float16, np.float32):
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        else:
            raise _field_error(field, f"dtype must be float16 or float32, got {arr.dtype}")
    if arr.ndim != 2 or arr.shape[0] != k:
        raise _field_error(
            field, f"expected shape ({k}, n_tokens) (one row per expert), got {arr.shape}"
        )
    if arr.shape[1] < 1:
        raise _field_error(field, "no tokens")
    if arr.shape[1] > MAX_TOKENS_PER_DOMAIN:
        raise _field_error(field, f"{arr.shape[1]} tokens, at most {MAX_TOKENS_PER_DOMAIN}")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise _field_error(field, f"{int(bad.sum())} values are NaN or infinite")
    if (n := int((arr <= 0).sum())) > 0:
        raise _field_error(
            field, f"{n} values are <= 0; probabilities must lie in (0, 1] (floor them at 2**-24)"
        )
    if (n := int((arr > 1).sum())) > 0:
        raise _field_error(field, f"{n} values are > 1; probabilities must lie in (0, 1]")
    return arr


def _check_mixtures(W: Any, k: int) -> np.ndarray:
    W = np.atleast_2d(np.asarray(W, dtype=float))
    if W.ndim != 2 or W.shape[1] != k:
        raise _field_error(
            "mixtures", f"expected shape (n, {k}) (one weight per expert), got {W.shape}"
        )
    if not np.all(np.isfinite(W)) or np.any(W < 0):
        raise _field_error("mixtures", "weights must be finite and >= 0")
    s = W.sum(axis=1, keepdims=True)
    if np.any(s <= 0):
        raise _field_error("mixtures", "a mixture has all weights 0")
    return W / s


def _threads() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cap = os.environ.get("OMP_NUM_THREADS", "")
    n = int(cores or 1)
    return max(1, min(n, int(cap)) if cap.isdigit() and int(cap) > 0 else n)


#: tokens multiplied together before one log: 4 in float32 (a product of four probabilities
#: >= 2**-24 is >= 2**-96, a normal float32), then 8 of those in float64 (>= 2**-768)
GROUP = 32


def _block_sums(W32: np.ndarray, P: np.ndarray, rows: slice, tb: int) -> np.ndarray:
    """``sum_t log(W32[rows] @ P)`` per mixture, block of tokens by block (cache-sized). ``P``
    is padded with ones to a multiple of :data:`GROUP` tokens (and so is ``tb``)."""
    Wr = W32[rows]
    out = np.zeros(Wr.shape[0])
    for t0 in range(0, P.shape[1], tb):
        S = Wr @ P[:, t0 : t0 + tb]  # (r, tb) float32 ensemble probabilities, >= 2**-24
        # the order of the tokens does not matter to the sum: multiply contiguous halves
        h = S.shape[1] // 2
        Q = S[:, :h] * S[:, h:]  # products of 2 (>= 2**-48) ...
        q = h // 2
        E = (Q[:, :q] * Q[:, q:]).astype(np.float64)  # ... of 4 (>= 2**-96, float32-normal)
        for _ in range(3):  # ... of 32 in float64 (>= 2**-768)
            m = E.shape[1] // 2
            E = E[:, :m] * E[:, m:]
        out += np.log(E).sum(axis=1)
    return out


_CONTROLLER: Any = None


def _blas_one_thread(work: int) -> Any:
    """Single-threaded BLAS for a large call (``work`` mixture-tokens); a small call (the
    optimiser's one mixture at a time) leaves the threads alone, as building the limit costs
    milliseconds."""
    global _CONTROLLER
    if work < 8 * BLOCK_ELEMENTS:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import ThreadpoolController  # scikit-learn's dependency
    except ImportError:  # pragma: no cover - the science extra brings it
        return contextlib.nullcontext()
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


def mde_losses(probs: ExpertProbs, mixtures: Any, *, n_threads: int | None = None) -> np.ndarray:
    """Equation (MDE) for every mixture and validation domain: ``(n_mixtures, n_val_domains)``.

    ``mixtures``: ``(n, K)`` weights over ``probs.experts`` (rows are normalised to sum 1).
    Vectorised: per validation domain, blocks of mixtures x tokens (``BLOCK_ELEMENTS``
    float32, cache-sized) are formed by one matrix product (single-threaded BLAS: with K
    experts the product is thin and OpenBLAS's threads only contend), multiplied together
    :data:`GROUP` tokens at a time (4 in float32, then 8 in float64: no underflow, one log per
    32 tokens instead of 32 logs) and logged; blocks of mixtures run on ``n_threads`` threads
    (default: the usable cores, at most ``OMP_NUM_THREADS``). Memory is bounded by the block
    size times the threads, whatever ``n``. Agrees with a float64 evaluation to about 1e-6
    relative (float32 ensemble sums).
    """
    W = _check_mixtures(mixtures, len(probs.experts))
    W32 = np.ascontiguousarray(W, dtype=np.float32)
    n = W.shape[0]
    out = np.empty((n, len(probs.val_domains)))
    nt = max(1, int(n_threads or _threads()))
    with _blas_one_thread(n * sum(probs.n_tokens().values())):
        for j, v in enumerate(probs.val_domains):
            P = probs.padded32(v)
            T = probs.arrays[v].shape[1]
            tb = int(min(P.shape[1], max(GROUP, (BLOCK_ELEMENTS // 64) // GROUP * GROUP)))
            r = int(max(1, BLOCK_ELEMENTS // tb))
            chunks = [slice(a, min(n, a + r)) for a in range(0, n, r)]
            if nt > 1 and len(chunks) > 1:
                with ThreadPoolExecutor(max_workers=min(nt, len(chunks))) as pool:
                    parts = list(pool.map(lambda s, P=P, tb=tb: _block_sums(W32, P, s, tb), chunks))
            else:
                parts = [_block_sums(W32, P, s, tb) for s in chunks]
            out[:, j] = -np.concatenate(parts) / T
    return out


def mde_losses_reference(probs: ExpertProbs, mixtures: Any) -> np.ndarray:
    """Equation (MDE) evaluated directly in float64, one mixture at a time (the reference of
    tests and ``bench/mde_speed.py``)."""
    W = _check_mixtures(mixtures, len(probs.experts))
    out = np.empty((W.shape[0], len(probs.val_domains)))
    for j, v in enumerate(probs.val_domains):
        P = probs.arrays[v].astype(np.float64)
        for i in range(W.shape[0]):
            out[i, j] = -np.mean(np.log(W[i] @ P))
    return out


# -- estimators ---------------------------------------------------------------------------------
def target_columns(targets: Sequence[str] | None, val_domains: Sequence[str], n: int) -> list[int]:
    """The validation domain of each target, ``-1`` when none: a target named like a validation
    domain, or whose last ``/``-separated part is one (``val_loss/code`` -> ``code``); without
    target names, ``n`` targets map in order when there are as many validation domains."""
    vals = list(val_domains)
    if targets is None:
        return list(range(n)) if n == len(vals) else [-1] * n
    out = []
    for t in targets:
        t = str(t)
        name = t if t in vals else t.rsplit("/", 1)[-1]
        out.append(vals.index(name) if name in vals else -1)
    return out


def attach_experts(estimator: Any, probs: ExpertProbs | None) -> Any:
    """Attach ``probs`` to ``estimator`` and to what it delegates to (``auto``'s kept
    estimator) when they use experts; a no-op for every other estimator. Returns it."""
    if probs is None:
        return estimator
    for est in {id(e): e for e in (estimator, _final(estimator))}.values():
        if isinstance(est, MDEEstimator):
            est.attach_experts(probs)
    return estimator


def _final(estimator: Any) -> Any:
    try:
        return estimator.final_estimator()
    except AttributeError:  # an unfitted auto has no estimator_ yet
        return estimator


def needs_experts(name_or_cls: Any) -> bool:
    """True for the estimators that need experts (``mde*``)."""
    from mixopt.mixing.base import ESTIMATORS

    cls = ESTIMATORS.get(name_or_cls) if isinstance(name_or_cls, str) else name_or_cls
    return bool(getattr(cls, "needs_experts", False))


class MDEEstimator(MixingEstimator):
    """Shared machinery of the MDE estimators: experts in, MDE features out, state, hash."""

    #: the fit needs the experts' probabilities (the service refuses with a 422 without them;
    #: ``auto`` considers these estimators only when they are attached)
    needs_experts: ClassVar[bool] = True

    _experts: ExpertProbs | None = None
    expert_hash_: str
    expert_order_: list[int]  # X column of each expert
    target_cols_: list[int]

    def attach_experts(self, probs: ExpertProbs) -> Self:
        """Use ``probs``; a fitted estimator checks they are the set it was fitted with."""
        if not isinstance(probs, ExpertProbs):
            raise TypeError("experts: expected an ExpertProbs")
        fitted = getattr(self, "expert_hash_", None)
        if fitted is not None and probs.content_hash != fitted:
            raise ExpertsMismatchError(
                f"experts: this fit was made with expert set {fitted[:12]}, the attached set is "
                f"{probs.content_hash[:12]}; attach the experts the fit was made with, or refit"
            )
        self._experts = probs
        return self

    def clone(self) -> MixingEstimator:
        """An unfitted copy that keeps the attached experts (CV folds, bootstrap refits)."""
        out = type(self)(**self.get_params())
        if getattr(self, "_experts", None) is not None:
            out._experts = self._experts
        return out

    def _probs(self, context: Mapping[str, Any] | None = None) -> ExpertProbs:
        probs = (context or {}).get("experts")
        if probs is not None:
            self.attach_experts(probs)
        probs = getattr(self, "_experts", None)
        if probs is None:
            raise MissingExpertsError(
                f"{self.name} needs the experts' next-token probabilities (one expert per "
                "domain): train or upload the project's experts, or pass experts=ExpertProbs "
                "in the fit context / attach_experts() before predicting"
            )
        return probs

    def _bind(self, X: np.ndarray, probs: ExpertProbs, context: Mapping[str, Any]) -> None:
        """Match the mixture columns to the experts by domain name, the targets to the
        validation domains."""
        domains = context.get("domains")
        K = X.shape[1]
        if domains is None:
            if K != len(probs.experts):
                raise ExpertsMismatchError(
                    f"experts: {len(probs.experts)} experts for mixtures of {K} domains"
                )
            domains = list(probs.experts)
        domains = [str(d) for d in domains]
        missing = sorted(set(domains) - set(probs.experts))
        extra = sorted(set(probs.experts) - set(domains))
        if missing or extra:
            raise ExpertsMismatchError(
                "experts: one expert per mixture domain is needed; "
                + (f"no expert for {missing}" if missing else "")
                + ("; " if missing and extra else "")
                + (f"experts of domains not in the mixture: {extra}" if extra else "")
            )
        self.expert_order_ = [domains.index(e) for e in probs.experts]
        self.expert_hash_ = probs.content_hash
        self.n_domains_ = K
        self.domains_ = domains
        t = context.get("targets")
        self.targets_ = [str(x) for x in t] if t is not None else None

    def _mde(self, X: Any) -> np.ndarray:
        """``(n, n_val_domains)`` MDE losses of mixtures given in the fit's domain order."""
        probs = self._probs()
        if probs.content_hash != self.expert_hash_:
            raise ExpertsMismatchError("experts: the attached set is not the fitted one")
        X = np.atleast_2d(np.asarray(X, dtype=float))
        if X.shape[1] != self.n_domains_:
            raise ValueError(f"X has {X.shape[1]} domains, the fit has {self.n_domains_}")
        return mde_losses(probs, X[:, self.expert_order_])

    def _feature(self, F: np.ndarray, col: int) -> np.ndarray:
        """The MDE feature of one target: its validation domain's loss, or (no matching
        validation domain) the mean over validation domains."""
        return F[:, col] if col >= 0 else F.mean(axis=1)

    def _base_state(self) -> dict[str, Any]:
        return {
            "n_domains": self.n_domains_,
            "domains": self.domains_,
            "targets": self.targets_,
            "expert_hash": self.expert_hash_,
            "expert_order": self.expert_order_,
            "target_cols": self.target_cols_,
        }

    def _load_base(self, state: dict[str, Any]) -> None:
        self.n_domains_ = int(state["n_domains"])
        self.domains_, self.targets_ = state.get("domains"), state.get("targets")
        self.expert_hash_ = str(state["expert_hash"])
        self.expert_order_ = [int(i) for i in state["expert_order"]]
        self.target_cols_ = [int(i) for i in state["target_cols"]]
        probs = getattr(self, "_experts", None)
        if probs is not None and probs.content_hash != self.expert_hash_:
            self._experts = None


def calibrate(f: np.ndarray, y: np.ndarray, nonnegative_slope: bool = True) -> tuple[float, float]:
    """``(a, b)`` of the least-squares map ``y ~ a + b f`` (``b >= 0`` when asked: a larger
    approximated loss never predicts a smaller one; ``b = 0`` is the runs' mean)."""
    var = float(np.var(f))
    slope = float(np.mean((f - f.mean()) * (y - y.mean())) / var) if var > 1e-18 else 1.0
    if nonnegative_slope:
        slope = max(0.0, slope)
    return float(y.mean() - slope * f.mean()), slope


@register("mde")
class MDECalibrated(MDEEstimator):
    """The MDE approximation alone (Belenki et al. 2025, Eq. (MDE) of :mod:`mixopt.mixing.mde`),
    calibrated per target by ``L_j(w) = a_j + b_j MDE_j(w)`` fitted by least squares on the
    runs. A target without a matching validation domain uses the mean MDE loss.

    Parameters
    ----------
    nonnegative_slope : bool, default True
        Constrain ``b_j >= 0`` (when least squares gives a negative slope, ``b_j = 0`` and the
        prediction is the runs' mean: a larger approximated loss never predicts a smaller one).

    Attributes
    ----------
    intercept_, slope_ : (n_targets,) ``a_j``, ``b_j``. target_cols_ : validation domain index
    of each target (-1: the mean). expert_hash_ : the expert set's content hash.
    """

    min_runs: ClassVar[int] = 2
    smooth: ClassVar[bool] = True
    param_specs: ClassVar[dict[str, ParamSpec]] = {
        "nonnegative_slope": ParamSpec(
            "bool",
            "constrain the calibration slope b_j >= 0 (a larger MDE loss never predicts "
            "a smaller loss)",
        ),
    }

    def __init__(self, *, nonnegative_slope: bool = True) -> None:
        self.nonnegative_slope = nonnegative_slope

    def fit(self, X: Any, Y: Any, **context: Any) -> MDECalibrated:
        X, Y = self._check_fit_input(X, Y)
        probs = self._probs(context)
        self._bind(X, probs, context)
        self.target_cols_ = target_columns(self.targets_, probs.val_domains, Y.shape[1])
        F = self._mde(X)
        a, b = np.empty(Y.shape[1]), np.empty(Y.shape[1])
        for j, col in enumerate(self.target_cols_):
            a[j], b[j] = calibrate(self._feature(F, col), Y[:, j], self.nonnegative_slope)
        self.intercept_, self.slope_ = a, b
        return self

    def predict(self, X: Any) -> np.ndarray:
        self.check_is_fitted()
        F = self._mde(X)
        cols = [self._feature(F, c) for c in self.target_cols_]
        return np.column_stack(cols) * self.slope_[None, :] + self.intercept_[None, :]

    def law_summary(self) -> dict[str, Any] | None:
        return {"intercept": self.intercept_.tolist(), "slope": self.slope_.tolist()}

    def _state(self) -> dict[str, Any]:
        return {
            **self._base_state(),
            "intercept": self.intercept_.tolist(),
            "slope": self.slope_.tolist(),
        }

    def _load(self, state: dict[str, Any]) -> None:
        self._load_base(state)
        self.intercept_ = np.asarray(state["intercept"], dtype=float)
        self.slope_ = np.asarray(state["slope"], dtype=float)


MDE_FEATURES = ("target", "all")
#: ``mde_linear``'s penalties on standardised features, chosen by leave-one-out CV per target:
#: seven decades around 1 (the scale of a standardised feature), not tuned on any data set
RIDGE_ALPHAS = np.logspace(-4, 3, 15)
_FEATURES_SPEC = ParamSpec(
    "str",
    "MDE features beside the weights: 'target' (the target's own validation domain's MDE loss: "
    "K + 1 features, for few runs) or 'all' (every validation domain's: K + J)",
    choices=MDE_FEATURES,
)
_RESIDUAL_SPEC = ParamSpec(
    "bool",
    "regress the residual of the calibrated MDE loss (a + b MDE(w), as estimator 'mde') instead "
    "of the loss: with few runs the regressor falls back to the calibrated approximation, not "
    "to the runs' mean",
)


class MDERegression(MDEEstimator):
    """Regression on ``[w, MDE(w)]`` (Belenki et al. 2025, Sec. 3-4: the MDE losses as features
    beside the mixture rates), one regressor per target; subclasses choose the regressor.

    With ``residual`` (the default) each target's regressor fits ``y - (a + b MDE(w))``, the
    residual of the per-target affine calibration of estimator ``mde``, on the same features:
    a regressor that shrinks toward zero (ridge), reverts to its mean away from the runs (GP)
    or cannot split few runs (trees) then predicts the calibrated approximation, the strongest
    single feature the paper reports, instead of the runs' average. ``residual=False`` is the
    paper's plain setup (the loss itself as the target)."""

    def __init__(self, *, mde_features: str = "target", residual: bool = True) -> None:
        self.mde_features = mde_features
        self.residual = residual

    def _design(self, X: np.ndarray, F: np.ndarray, col: int) -> np.ndarray:
        if self.mde_features not in MDE_FEATURES:
            raise ValueError(f"mde_features: must be one of {list(MDE_FEATURES)}")
        extra = F if self.mde_features == "all" else self._feature(F, col)[:, None]
        return np.hstack([X, extra])

    def _fit_one(self, Z: np.ndarray, y: np.ndarray, context: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _predict_one(self, model: Any, Z: np.ndarray) -> np.ndarray:
        return np.ravel(model.predict(Z))

    def fit(self, X: Any, Y: Any, **context: Any) -> Self:
        X, Y = self._check_fit_input(X, Y)
        probs = self._probs(context)
        self._bind(X, probs, context)
        self.target_cols_ = target_columns(self.targets_, probs.val_domains, Y.shape[1])
        F = self._mde(X)
        self.calibration_ = [
            calibrate(self._feature(F, col), Y[:, j]) if self.residual else (0.0, 0.0)
            for j, col in enumerate(self.target_cols_)
        ]
        self.models_ = [
            self._fit_one(self._design(X, F, col), Y[:, j] - self._base(F, j), {})
            for j, col in enumerate(self.target_cols_)
        ]
        return self

    def _base(self, F: np.ndarray, j: int) -> np.ndarray:
        """Target ``j``'s calibrated MDE loss (zero without ``residual``)."""
        a, b = self.calibration_[j]
        return a + b * self._feature(F, self.target_cols_[j])

    def _designs(self, X: Any) -> tuple[list[np.ndarray], np.ndarray]:
        self.check_is_fitted()
        X = np.atleast_2d(np.asarray(X, dtype=float))
        F = self._mde(X)
        bases = np.column_stack([self._base(F, j) for j in range(len(self.target_cols_))])
        return [self._design(X, F, col) for col in self.target_cols_], bases

    def predict(self, X: Any) -> np.ndarray:
        Zs, bases = self._designs(X)
        return bases + np.column_stack(
            [self._predict_one(m, Z) for m, Z in zip(self.models_, Zs, strict=True)]
        )

    def _dump_model(self, model: Any) -> Any:
        """One target's fitted regressor as JSON (subclasses whose models are objects)."""
        return model

    def _load_model(self, state: Any) -> Any:
        return state

    def _state(self) -> dict[str, Any]:
        return {
            **self._base_state(),
            "calibration": [list(c) for c in self.calibration_],
            "models": [self._dump_model(m) for m in self.models_],
        }

    def _load(self, state: dict[str, Any]) -> None:
        self._load_base(state)
        # a state stored before ``residual`` regressed the loss itself: no calibration
        cal = state.get("calibration")
        n = len(self.target_cols_)
        self.calibration_ = [(float(a), float(b)) for a, b in cal] if cal else [(0.0, 0.0)] * n
        self.models_ = [self._load_model(m) for m in state["models"]]


@register("mde_linear")
class MDELinear(MDERegression):
    """The paper's linear regressor on ``[w, MDE(w)]`` (Belenki et al. 2025), as ridge
    regression on standardised features with the penalty chosen by efficient leave-one-out CV
    (scikit-learn ``RidgeCV``; Hastie, Tibshirani, Friedman 2009, Eq. 7.52 for the LOO
    shortcut) over :data:`RIDGE_ALPHAS`: an unpenalised fit of K + 1 features interpolates
    8-16 runs.

    Parameters
    ----------
    mde_features : {"target", "all"}, default "target"
    residual : bool, default True
        Fit the residual of the calibrated MDE loss (:class:`MDERegression`): the ridge then
        shrinks toward the calibrated approximation.

    Attributes
    ----------
    models_ : per target ``{"coef", "intercept", "alpha"}`` on the raw features.
    calibration_ : per target ``(a, b)`` of the calibrated MDE loss the model corrects.
    """

    min_runs: ClassVar[int] = 3
    smooth: ClassVar[bool] = True
    param_specs: ClassVar[dict[str, ParamSpec]] = {
        "mde_features": _FEATURES_SPEC,
        "residual": _RESIDUAL_SPEC,
    }

    def __init__(self, *, mde_features: str = "target", residual: bool = True) -> None:
        super().__init__(mde_features=mde_features, residual=residual)

    def _fit_one(self, Z: np.ndarray, y: np.ndarray, context: dict[str, Any]) -> Any:
        from sklearn.linear_model import RidgeCV

        mu, sd = Z.mean(axis=0), Z.std(axis=0)
        sd = np.where(sd > 1e-12, sd, 1.0)
        r = RidgeCV(alphas=RIDGE_ALPHAS).fit((Z - mu) / sd, y)
        coef = r.coef_ / sd
        return {
            "coef": coef.tolist(),
            "intercept": float(r.intercept_ - mu @ coef),
            "alpha": float(r.alpha_),
        }

    def _predict_one(self, model: Any, Z: np.ndarray) -> np.ndarray:
        return Z @ np.asarray(model["coef"]) + float(model["intercept"])

    def law_summary(self) -> dict[str, Any] | None:
        return {"alpha": [m["alpha"] for m in self.models_]}


@register("mde_gp")
class MDEGP(MDERegression):
    """The project's GP (:class:`~mixopt.mixing.gp.GaussianProcessMixing`, ARD Matern 5/2,
    input warp by marginal likelihood) on ``[w, MDE(w)]``, one per target: the paper's
    Gaussian-process regressor (Belenki et al. 2025 use a multi-task GP; independent GPs
    here). Has a predictive std (intervals, rounds' acquisition).

    Parameters
    ----------
    mde_features : {"target", "all"}, default "target"
    residual : bool, default True
        GP on the residual of the calibrated MDE loss (:class:`MDERegression`): its mean far
        from the runs is the calibrated approximation.
    random_state : int, default 0
    """

    min_runs: ClassVar[int] = 3
    smooth: ClassVar[bool] = True
    param_specs: ClassVar[dict[str, ParamSpec]] = {
        "mde_features": _FEATURES_SPEC,
        "residual": _RESIDUAL_SPEC,
        "random_state": ParamSpec("int", "seed of the GP's optimiser", 0, 2**31 - 1),
    }

    def __init__(
        self, *, mde_features: str = "target", residual: bool = True, random_state: int = 0
    ) -> None:
        super().__init__(mde_features=mde_features, residual=residual)
        self.random_state = random_state

    def _fit_one(self, Z: np.ndarray, y: np.ndarray, context: dict[str, Any]) -> Any:
        return GaussianProcessMixing(random_state=int(self.random_state)).fit(Z, y)

    def predict(self, X: Any, return_std: bool = False):  # type: ignore[override]
        Zs, bases = self._designs(X)
        out = [m.predict(Z, return_std=True) for m, Z in zip(self.models_, Zs, strict=True)]
        mean = bases + np.column_stack([np.ravel(m) for m, _ in out])
        if not return_std:
            return mean
        return mean, np.column_stack([np.ravel(s) for _, s in out])

    def predict_std(self, X: Any) -> np.ndarray:
        return self.predict(X, return_std=True)[1]

    def predict_objective_std(self, X: Any, weights: Any = None) -> np.ndarray:
        """Std of ``sum_j w_j L_j`` (targets treated as independent)."""
        S = self.predict_std(X)
        w = objective_vector(weights, S.shape[1])
        return np.sqrt((S**2) @ (w**2))

    def _dump_model(self, model: Any) -> Any:
        return model.to_state()

    def _load_model(self, state: Any) -> Any:
        return GaussianProcessMixing.from_state(state)


@register("mde_lgbm")
class MDELGBM(MDERegression):
    """RegMix's LightGBM (:class:`~mixopt.mixing.regmix.RegMixLGBM`, the paper's GBM) on
    ``[w, MDE(w)]``, one per target.

    Parameters
    ----------
    mde_features : {"target", "all"}, default "target"
    residual : bool, default True
        Boost the residual of the calibrated MDE loss (:class:`MDERegression`).
    n_estimators : int, default 1000
        Boosting rounds (RegMix's 1000).
    random_state : int, default 42
    """

    min_runs: ClassVar[int] = 4
    smooth: ClassVar[bool] = False
    param_specs: ClassVar[dict[str, ParamSpec]] = {
        "mde_features": _FEATURES_SPEC,
        "residual": _RESIDUAL_SPEC,
        "n_estimators": ParamSpec("int", "boosting rounds (RegMix: 1000)", 1, 100_000),
        "random_state": ParamSpec("int", "seed", 0, 2**31 - 1),
    }

    def __init__(
        self,
        *,
        mde_features: str = "target",
        residual: bool = True,
        n_estimators: int = 1000,
        random_state: int = 42,
    ) -> None:
        super().__init__(mde_features=mde_features, residual=residual)
        self.n_estimators = n_estimators
        self.random_state = random_state

    def _fit_one(self, Z: np.ndarray, y: np.ndarray, context: dict[str, Any]) -> Any:
        return RegMixLGBM(
            n_estimators=int(self.n_estimators), random_state=int(self.random_state)
        ).fit(Z, y)

    def _dump_model(self, model: Any) -> Any:
        return model.to_state()

    def _load_model(self, state: Any) -> Any:
        return RegMixLGBM.from_state(state)
