#!/usr/bin/env bash
# The lint step (run first by scripts/test.sh, and by `make lint`): style, line length and
# complexity (ruff, pyproject's [tool.ruff]), the import contracts (import-linter: the layers and
# no cycles inside mixopt, pyproject's [tool.importlinter]) and types (mypy on the science and
# the services, pyproject's [tool.mypy]).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PATHS=(app workers mixopt migrations tests bench)

$BIN/ruff check "${PATHS[@]}"
$BIN/ruff format --check "${PATHS[@]}"
$BIN/lint-imports --no-cache
$BIN/mypy mixopt app/services
