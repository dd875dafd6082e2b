# Two commands on a fresh machine with Python 3.10+ and make:  make demo  |  make test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo cluster test lint typecheck pytest bench clean install

install: $(STAMP)

# Creates or reuses .venv and installs the package with its dev extra (tests, lint, embedded
# services). uv is installed into the venv from PyPI for speed; pip is the fallback.
$(STAMP): pyproject.toml
	@# The ZIP tests also zip with Info-ZIP's `zip` (Debian package zip; present on our images).
	command -v zip >/dev/null || (apt-get update -qq && apt-get install -y -qq zip) || \
		echo "warning: install Info-ZIP zip (apt-get install zip) for the ZIP tests"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[dev]' || \
		$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m tests.support.demo

# Optional: the docker stack's processes natively (CeleryExecutor, two workers capped by
# S3STREAM_WORKER_MEMORY, default 768 MiB, in memory cgroups when root). Runs until Ctrl-C.
cluster: $(STAMP)
	$(BIN)/python -m tests.support.cluster

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest

test: lint typecheck pytest

bench: $(STAMP)
	for script in benchmarks/bench_*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
