PYTHON ?= python
PYTEST_ARGS ?=
# where `make check-wheel` builds and unpacks the wheel
WHEEL_DIR ?= build/wheel-check

.DEFAULT_GOAL := help
.PHONY: help install train smoke test test-slow test-all lint format bench check-wheel clean clean-logs

help:  ## list the targets (what a bare `make` does)
	@grep -E '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install:  ## editable install with the dev tools
	$(PYTHON) -m pip install -e ".[dev]"

train:  ## default run: synthetic multi-skeleton world on CPU (~9 min on 2 cores)
	$(PYTHON) -m multipose.train

smoke:  ## under a minute
	$(PYTHON) -m multipose.train +experiment=smoke

test:  ## fast tests (< ~5 min on 2 CPU cores)
	$(PYTHON) -m pytest -m "not slow and not gpu" -q $(PYTEST_ARGS)

test-slow:  ## slow tests (DDP, killed and resumed runs, full runs); CI runs them
	$(PYTHON) -m pytest -m "slow and not gpu" -q $(PYTEST_ARGS)

test-all: test test-slow  ## fast and slow tests

lint:  ## ruff check
	$(PYTHON) -m ruff check src tests scripts

format:  ## ruff format + autofix
	$(PYTHON) -m ruff format src tests scripts
	$(PYTHON) -m ruff check --fix src tests scripts

bench:  ## data-loader and training-step benchmarks
	$(PYTHON) scripts/bench_data.py
	$(PYTHON) scripts/bench_train.py

check-wheel:  ## build the wheel, install it (no deps) apart from the checkout, run the smoke experiment from an empty folder
	rm -rf "$(WHEEL_DIR)" && mkdir -p "$(WHEEL_DIR)/dist" "$(WHEEL_DIR)/site" "$(WHEEL_DIR)/empty"
	$(PYTHON) -m pip wheel -q --no-deps . -w "$(WHEEL_DIR)/dist"
	$(PYTHON) -m pip install -q --no-deps --target "$(WHEEL_DIR)/site" "$(WHEEL_DIR)"/dist/multipose-*.whl
	cd "$(WHEEL_DIR)/empty" && site="$$(cd ../site && pwd)" && \
	  PYTHONPATH="$$site" $(PYTHON) -c "import multipose, sys; f = multipose.__file__; print('multipose from', f); sys.exit(0 if f.startswith(sys.argv[1]) else 'not the wheel: ' + f)" "$$site" && \
	  PYTHONPATH="$$site" $(PYTHON) -m multipose.train +experiment=smoke && \
	  test -f logs/smoke/runs/*/checkpoints/last.ckpt && test -f logs/smoke/runs/*/metrics.json

clean:  ## remove caches and build files (runs in logs/ stay; see clean-logs)
	rm -rf .pytest_cache .ruff_cache build dist src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

clean-logs:  ## delete every run under logs/, outputs/, multirun/ (asks first)
	@printf "delete every run in logs/ outputs/ multirun/ ? [y/N] " && read answer && [ "$$answer" = y ] && \
	  rm -rf logs outputs multirun && echo deleted || echo kept
