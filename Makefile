# `make demo` and `make test` work on a fresh machine with Python 3.11 and nothing else.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo runtime-check test lint fuzz bench bench-full clean dist

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip >/dev/null
	$(BIN)/python -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

# The original bug in memory: torch.empty padded E8M0 and DeepGEMM-style F32 scales, checked before
# and after the fix (DEVICE=cuda to run it on a GPU).
DEVICE ?= cpu
runtime-check: $(STAMP)
	$(BIN)/python examples/runtime_check.py --device $(DEVICE)

test: $(STAMP)
	$(BIN)/ruff check fp8doctor tests examples benchmarks fuzz scripts
	$(BIN)/mypy
	$(BIN)/python -m pytest

CASES ?= 100000
SEED ?= 0
fuzz: $(STAMP)
	$(BIN)/python fuzz/run.py --cases $(CASES) --seed $(SEED)

# Scan/fix benchmarks on sparse full-shape checkpoints (benchmarks/out/, gitignored): writes
# benchmarks/RESULTS.md. Not part of `make test` (CI never runs them).
bench: $(STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

# Full-size V4-Flash (8.7 GB of real scale bytes) and gpt-oss-120b (3.6 GB) scans, warm and cold:
# benchmarks/RESULTS-fullsize.md (checkpoints in benchmarks/out-full/, ~13 GB of disk)
bench-full: $(STAMP)
	$(BIN)/python benchmarks/run.py --v4-layers 43 --oss-layers 36 --shapes v4-flash,gpt-oss-120b --no-fix \
		--runs 2 --peer-runs 0 --out benchmarks/out-full --results benchmarks/RESULTS-fullsize.md $(BENCH_ARGS)

# sdist and wheel in dist/ (the test suite builds them too, from a copy of the tree)
dist: $(STAMP)
	$(BIN)/python -m build --outdir dist .

lint: $(STAMP)
	$(BIN)/ruff check fp8doctor tests examples benchmarks fuzz scripts
	$(BIN)/mypy

clean:
	rm -rf $(VENV) demo-checkpoint .pytest_cache .mypy_cache
