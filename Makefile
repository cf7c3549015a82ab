# The two commands of the README: `make demo` (the main job) and `make test` (the tests).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test setup lint bench

$(BIN)/mixopt: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# the CPU build of torch first, so the range in pyproject installs nothing more
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[all,test]"
	touch $(BIN)/mixopt

setup: $(BIN)/mixopt

demo: setup
	$(BIN)/mixopt demo

test: setup
	bash scripts/test.sh

lint: setup
	bash scripts/lint.sh
