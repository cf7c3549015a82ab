#!/usr/bin/env bash
# GPU readiness in under 5 minutes on one GPU: the CUDA tests (bf16 autocast, torch.compile,
# SDPA kernels, a bf16 training run), a two-queue worker routing test, and the training
# throughput (tokens/s and MFU of train() against a bare loop in the same run).
#
#   bash scripts/gpu_check.sh            # prints everything; exit status 0 only if all passed
#
# Record the figures it prints in README.md (Benchmarks: "Training throughput on a GPU").
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
status=0
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA device visible to torch" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
bash scripts/services.sh >/dev/null 2>&1 || true   # the routing test's workers want the broker if configured

echo "== CUDA tests (bf16 autocast, torch.compile, SDPA, two-queue routing) =="
t0=$SECONDS
timeout 240 "$PY" -m pytest -q -m gpu -p no:cacheprovider \
  tests/training/test_cuda.py tests/training/test_trainer.py tests/workers/test_gpu_routing.py || status=1
echo "(tests: $((SECONDS - t0)) s)"

echo "== training throughput: train() vs a bare loop, tokens/s and MFU =="
t0=$SECONDS
timeout 180 "$PY" bench/train_throughput.py --device cuda --presets small,medium --steps 60 --warmup 15 || status=1
echo "(throughput: $((SECONDS - t0)) s)"

[ $status -eq 0 ] && echo "gpu_check: all passed" || echo "gpu_check: FAILED (see above)"
exit $status
