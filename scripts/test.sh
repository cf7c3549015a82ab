#!/usr/bin/env bash
# Run the whole suite twice: on SQLite, then on a real PostgreSQL server (started by
# scripts/services.sh, which also starts Redis for the worker tests).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

eval "$(bash scripts/services.sh)"

run() {
  local label=$1; shift
  echo "=== tests on $label ==="
  set +e
  "$@"
  local rc=$?
  set -e
  if [ $rc -eq 5 ]; then echo "pytest collected no tests on $label: failing" >&2; exit 1; fi
  if [ $rc -ne 0 ]; then echo "tests failed on $label (exit $rc)" >&2; exit $rc; fi
}

bash scripts/lint.sh
run SQLite env -u MIXOPT_TEST_DATABASE_URL $BIN/python -m pytest -q --durations=25 -m "not slow" "$@"
run PostgreSQL $BIN/python -m pytest -q --durations=25 -m "not science and not packaging and not embedded and not slow" "$@"

# tests never write tracked files (screenshots go to artifacts/): checked on CI's fresh clone
if [ "${CI:-}" = "true" ] && [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "the tests changed tracked files:" >&2
  git status --porcelain --untracked-files=no >&2
  exit 1
fi
