# Two commands do everything from a fresh clone: `make demo` and `make test`.
PYTHON     ?= python3
VENV       ?= .venv
# The pair that imports together on this x86_64 machine (both lie on disk); change it for yours,
# e.g. TORCH_SPEC="torch==2.9.1 torchvision==0.24.1" on aarch64, or a CUDA build of your choice.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
DEMO_DIR   ?= demo-work
# pytest-xdist workers: most tests wait on subprocesses (sandboxed trainings, servers), so 2 fit 2 cores.
TEST_WORKERS ?= 2
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.installed

.PHONY: setup demo test lint ui bwrap chromium postgres clean

setup: $(STAMP) bwrap chromium postgres

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[test,pipeline,postgres]' $(TORCH_SPEC)
	touch $(STAMP)

# Generated code only runs inside bubblewrap; install it when we can (root with apt), else say how.
bwrap:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap; \
	  else echo "bubblewrap is missing: sudo apt-get install -y bubblewrap" >&2; exit 1; fi; }

# The analysis report is checked in headless Chromium (tests/analysis); install it when we can.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "chromium is missing (the report's browser test is skipped): sudo apt-get install -y chromium" >&2; fi; }

# `llmseg server --store postgres` and the tests of the PostgreSQL store start clusters with initdb/pg_ctl
# (Debian keeps them in /usr/lib/postgresql/N/bin); install the server when we can.
postgres:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; \
	  else echo "PostgreSQL is missing: sudo apt-get install -y postgresql" >&2; exit 1; fi; }

demo: setup
	$(VENV)/bin/llmseg demo --workdir $(DEMO_DIR)

# Lint first (seconds): ruff (lint + format), the import layers (.importlinter), mypy on the package.
lint: setup
	$(VENV)/bin/ruff check llmseg_mlflow tests benchmarks entrypoints
	$(VENV)/bin/ruff format --check llmseg_mlflow tests benchmarks entrypoints
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

# Everything CI runs; `.venv/bin/python -m pytest -m "not slow"` is the quick tier while you work.
test: setup lint
	MLFLOW_DISABLE_TELEMETRY=true $(PY) -m pytest -q --durations=15 -n $(TEST_WORKERS) --dist loadfile

ui:
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(abspath $(DEMO_DIR))/mlflow.db --port 5000

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
