"""The sampler a trainer plugs in so that a callback can change its mixture while it trains.

:class:`MixtureSampler` draws indices into the concatenation of per-domain datasets (the
order of ``torch.utils.data.ConcatDataset(datasets)``): each draw first picks a domain, then
the next index of that domain's shuffled order (reshuffled on every pass over the domain).
The domain of draw ``n`` after a change of weights is the one with the largest deficit
``w_i * (n + 1) - c_i`` (``c_i``: draws of domain ``i`` since the change), ties to the first:
the systematic (smooth weighted round-robin) allocation, so the realised shares of any ``n``
draws are within ``1 / n`` of the weights -- random multinomial draws would be within about
``2 sqrt(w (1 - w) / n)`` only (0.022 at ``w = 0.5``, ``n = 2000``). ``set_weights`` takes
effect at the next draw; :attr:`segments` records each mixture with the draws made under it.

It is a plain iterable of indices, which ``torch.utils.data.DataLoader(sampler=...)`` accepts
for a map-style dataset; :func:`mixture_dataset` wraps it as a ``torch`` ``IterableDataset``
of the items themselves (HF ``Trainer``'s ``train_dataset``, Lightning's dataloader). Use
``num_workers=0`` (the default) for the change of weights to reach the sampler at once: a
worker process holds a copy.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from typing import Any


def normalise(weights: Mapping[str, float], domains: Sequence[str]) -> dict[str, float]:
    """``weights`` over ``domains`` (omitted domains 0), finite, non-negative, summing to 1;
    a ``ValueError`` naming the problem otherwise."""
    unknown = sorted(set(weights) - set(domains))
    if unknown:
        raise ValueError(f"weights: unknown domains {unknown}; the sampler has {list(domains)}")
    values = {d: float(weights.get(d, 0.0)) for d in domains}
    bad = {d: v for d, v in values.items() if not (v >= 0.0 and v != float("inf"))}
    if bad:
        raise ValueError(f"weights: must be finite and non-negative, got {bad}")
    total = sum(values.values())
    if total <= 0:
        raise ValueError("weights: must not all be zero")
    return {d: v / total for d, v in values.items()}


class MixtureSampler:
    """Indices into ``ConcatDataset(datasets)`` drawn by a mixture that may change.

    Parameters
    ----------
    sizes : mapping domain -> number of items of that domain's dataset (in concatenation order)
    weights : the starting mixture (default uniform)
    num_samples : draws per pass (``len(sampler)``); default the total size
    seed : the generator of the within-domain orders
    """

    def __init__(
        self,
        sizes: Mapping[str, int],
        weights: Mapping[str, float] | None = None,
        *,
        num_samples: int | None = None,
        seed: int = 0,
    ) -> None:
        if len(sizes) < 1:
            raise ValueError("sizes: at least one domain")
        empty = [d for d, n in sizes.items() if int(n) <= 0]
        if empty:
            raise ValueError(f"sizes: domains without items {empty}")
        self.domains = list(sizes)
        self.sizes = {d: int(n) for d, n in sizes.items()}
        self.offsets: dict[str, int] = {}
        start = 0
        for d in self.domains:
            self.offsets[d] = start
            start += self.sizes[d]
        self.num_samples = int(num_samples) if num_samples is not None else start
        if self.num_samples <= 0:
            raise ValueError("num_samples: must be > 0")
        self._rng = random.Random(seed)
        self._orders: dict[str, list[int]] = {d: [] for d in self.domains}
        self._lock = threading.Lock()
        #: [{"weights": {...}, "counts": {...}}]: each mixture and the draws made under it
        self.segments: list[dict[str, Any]] = []
        self._start_segment(normalise(weights or dict.fromkeys(self.domains, 1.0), self.domains))

    # -- weights -------------------------------------------------------------------------
    @property
    def weights(self) -> dict[str, float]:
        return dict(self.segments[-1]["weights"])

    def set_weights(self, weights: Mapping[str, float]) -> bool:
        """Switch to ``weights`` from the next draw; False (nothing changes) when equal."""
        new = normalise(weights, self.domains)
        with self._lock:
            if new == self.segments[-1]["weights"]:
                return False
            self._start_segment(new)
            return True

    def _start_segment(self, weights: dict[str, float]) -> None:
        self.segments.append({"weights": weights, "counts": dict.fromkeys(self.domains, 0)})

    # -- draws ---------------------------------------------------------------------------
    def next_domain(self) -> str:
        with self._lock:
            seg = self.segments[-1]
            w, c = seg["weights"], seg["counts"]
            n = sum(c.values()) + 1
            domain = max(self.domains, key=lambda d: w[d] * n - c[d])
            c[domain] += 1
            return domain

    def next_index(self) -> tuple[str, int]:
        """The next draw: its domain and its index in the concatenation."""
        domain = self.next_domain()
        order = self._orders[domain]
        if not order:
            order.extend(range(self.sizes[domain]))
            self._rng.shuffle(order)
        return domain, self.offsets[domain] + order.pop()

    def __iter__(self) -> Iterator[int]:
        for _ in range(self.num_samples):
            yield self.next_index()[1]

    def __len__(self) -> int:
        return self.num_samples

    def realised_shares(self, segment: int = -1) -> dict[str, float]:
        """The share of each domain among the draws of one segment (default the current)."""
        counts = self.segments[segment]["counts"]
        total = sum(counts.values())
        return {d: (n / total if total else 0.0) for d, n in counts.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"segments": self.segments, "rng": self._rng.getstate(), "orders": self._orders}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.segments = [dict(s) for s in state["segments"]]
        self._rng.setstate(state["rng"])
        self._orders = {d: list(o) for d, o in state["orders"].items()}


@cache
def _iterable_class() -> type:
    from mixopt.extras import require

    require("train", "mixture_dataset")
    import torch.utils.data

    class MixtureIterable(torch.utils.data.IterableDataset):
        """The items of per-domain datasets in the order a :class:`MixtureSampler` draws."""

        def __init__(
            self,
            datasets: Mapping[str, Sequence[Any]],
            sampler: MixtureSampler,
            with_domain: str | None,
            length: int | None,
        ) -> None:
            self.datasets = dict(datasets)
            self.sampler = sampler
            self.with_domain = with_domain
            self.length = length
            self._index = {d: i for i, d in enumerate(sampler.domains)}

        def __iter__(self) -> Iterator[Any]:
            n = 0
            while self.length is None or n < self.length:
                domain, index = self.sampler.next_index()
                item = self.datasets[domain][index - self.sampler.offsets[domain]]
                if self.with_domain is not None:
                    item = {**item, self.with_domain: self._index[domain]}
                n += 1
                yield item

        def __len__(self) -> int:
            if self.length is None:
                raise TypeError("an endless mixture_dataset has no length")
            return self.length

    return MixtureIterable


def mixture_dataset(
    datasets: Mapping[str, Sequence[Any]],
    weights: Mapping[str, float] | None = None,
    *,
    sampler: MixtureSampler | None = None,
    with_domain: str | None = None,
    length: int | None = None,
    seed: int = 0,
) -> Any:
    """A ``torch.utils.data.IterableDataset`` over per-domain datasets (each indexable, with a
    length) in the order of a :class:`MixtureSampler` (built here from their sizes unless
    given): endless unless ``length`` is given (train by steps: HF ``max_steps``, Lightning
    ``max_steps``). ``with_domain="domain"`` adds each item's domain index (in ``datasets``'
    order) under that key, for per-domain training losses (items must then be dicts).
    The sampler is the dataset's ``.sampler``."""
    if sampler is None:
        sampler = MixtureSampler({d: len(ds) for d, ds in datasets.items()}, weights, seed=seed)
    if list(datasets) != sampler.domains:
        raise ValueError(f"datasets: domains {list(datasets)} differ from the sampler's")
    return _iterable_class()(datasets, sampler, with_domain, length)
