PYTHON ?= python
PYTEST_ARGS ?=

.PHONY: install train smoke test test-slow test-all lint format bench clean

install:  ## editable install with the dev tools
	$(PYTHON) -m pip install -e ".[dev]"

train:  ## default run: synthetic multi-skeleton world on CPU
	$(PYTHON) -m multipose.train

smoke:  ## under a minute
	$(PYTHON) -m multipose.train +experiment=smoke

test:  ## fast tests (< ~5 min on 2 CPU cores)
	$(PYTHON) -m pytest -m "not slow and not gpu" -q $(PYTEST_ARGS)

test-slow:  ## slow tests (DDP, full runs); CI runs them
	$(PYTHON) -m pytest -m "slow and not gpu" -q $(PYTEST_ARGS)

test-all: test test-slow

lint:
	$(PYTHON) -m ruff check src tests scripts

format:
	$(PYTHON) -m ruff format src tests scripts
	$(PYTHON) -m ruff check --fix src tests scripts

bench:
	$(PYTHON) scripts/bench_data.py
	$(PYTHON) scripts/bench_train.py

clean:
	rm -rf outputs multirun logs .pytest_cache .ruff_cache
