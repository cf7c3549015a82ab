"""MDE speed: :func:`mixopt.mixing.mde.mde_losses` on 10,000 mixtures x 7 validation domains x
100k tokens x 7 experts (issue 25, item 2: "in seconds on 2 cores"), against the naive float64
reference (:func:`~mixopt.mixing.mde.mde_losses_reference`, one mixture at a time) timed in
the same run on ``--ref-mixtures`` of them and scaled per mixture; the two agree to the printed
relative error. Memory: the peak of numpy allocations during the call (``tracemalloc``) beside
the size of one (mixtures x tokens) float32 matrix, which an unchunked implementation needs.

    .venv/bin/python -m bench.mde_speed [--mixtures 10000] [--tokens 100000] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mixtures", type=int, default=10_000)
    ap.add_argument("--experts", type=int, default=7)
    ap.add_argument("--domains", type=int, default=7, help="validation domains")
    ap.add_argument("--tokens", type=int, default=100_000, help="tokens per validation domain")
    ap.add_argument("--ref-mixtures", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))

    import numpy as np

    from mixopt.mixing.mde import ExpertProbs, mde_losses, mde_losses_reference

    rng = np.random.default_rng(a.seed)
    K, J, T = a.experts, a.domains, a.tokens
    arrays = {
        f"val{j}": np.clip(rng.beta(0.6, 2.0, (K, T)), 2**-24, 1.0).astype(np.float16)
        for j in range(J)
    }
    probs = ExpertProbs([f"expert{i}" for i in range(K)], arrays)
    W = rng.dirichlet(np.full(K, 0.5), a.mixtures)
    print(
        f"{a.mixtures} mixtures x {J} validation domains x {T} tokens x {K} experts, "
        f"{a.threads} threads, load {os.getloadavg()[0]:.1f}",
        flush=True,
    )

    n_ref = min(a.ref_mixtures, a.mixtures)
    t0 = time.perf_counter()
    ref = mde_losses_reference(probs, W[:n_ref])
    ref_s = (time.perf_counter() - t0) / n_ref * a.mixtures
    print(f"naive reference ({n_ref} mixtures, scaled): {ref_s:.1f} s", flush=True)

    mde_losses(probs, W[:8], n_threads=a.threads)  # float32 copies made once, outside the timing
    tracemalloc.start()
    t0 = time.perf_counter()
    out = mde_losses(probs, W, n_threads=a.threads)
    fast_s = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rel = float(np.max(np.abs(out[:n_ref] - ref) / np.abs(ref)))
    full = a.mixtures * T * 4
    print(
        f"mde_losses: {fast_s:.2f} s ({a.mixtures * J * T / fast_s / 1e9:.2f} G mixture-tokens/s), "
        f"{ref_s / fast_s:.0f}x the naive reference; max relative difference {rel:.1e}; "
        f"peak memory {peak / 2**20:.1f} MiB (one unchunked mixtures x tokens float32 matrix: "
        f"{full / 2**30:.1f} GiB); load {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
