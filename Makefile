# The README's two commands: `make demo` and `make test`. Each sets up everything it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install system-deps demo lint ruff test test-fast test-unit test-notebooks lab bench clean

# This machine sets PYTHONDONTWRITEBYTECODE=1: the editable kit/ would then be compiled again at every
# import in every process (workers, kernels, `kit` subprocesses) and pytest would rewrite every test
# module's asserts again in each worker. An empty value lets Python keep its __pycache__ (gitignored).
export PYTHONDONTWRITEBYTECODE :=

# uv compiles bytecode at install even when PYTHONDONTWRITEBYTECODE=1 is set (STACK-NOTES).
# rfc3987-syntax (jsonschema's format-nongpl extra, for Jupyter) compiles ~39 lark grammars when
# jsonschema is imported: 3 s of CPU in every process that imports nbformat (each `kit run`, papermill,
# nbconvert, JupyterLab, nbval). No schema of Jupyter or of the kit checks the `iri` formats it serves;
# without it jsonschema skips them (python-jsonschema/jsonschema#1428; opendatahub-io/notebooks#3532).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv 2>&1 | grep -v "is ignored" || true
	$(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode -e '.[dev,demo,fleet]'
	$(BIN)/uv pip uninstall --quiet --python $(BIN)/python rfc3987-syntax
	touch $(STAMP)

install: $(STAMP) system-deps

# With apt, as root: hypopg (the what-if index advisor; without it the kit says "unavailable") and
# chromium (the browser tests drive it with Playwright; without it they fail and say why).
system-deps:
	@$(BIN)/python -m kit.servers.sysdeps

demo: install
	$(BIN)/kit demo

# The tests and the notebooks (nbval) in one pytest run over $(WORKERS) pytest-xdist workers: most tests
# wait on servers, kernels and load processes, so 4 workers keep this 2-core machine busy. The notebooks
# run in order in one worker, and so does each test module (tests/conftest.py).
WORKERS ?= 4
NBVAL   := -p nbval --nbval-lax --nbval-current-env

# ruff (lint and format) and mypy over the whole of kit/, configured in pyproject.toml
lint: ruff
	$(BIN)/mypy

ruff: install
	$(BIN)/ruff check -q kit
	$(BIN)/ruff format --check -q kit

# `make lint` too: ruff first (a fraction of a second), mypy (20 s of one core from a clean clone) beside
# the tests, its report printed after theirs; either failing fails `make test`.
test: ruff
	@mkdir -p .kit && $(BIN)/mypy > .kit/mypy.log 2>&1 & typing=$$!; \
	$(BIN)/pytest $(NBVAL) -n $(WORKERS) -q tests notebooks; tests=$$?; \
	wait $$typing; typed=$$?; echo "mypy:"; cat .kit/mypy.log; \
	test $$tests -eq 0 -a $$typed -eq 0

# The tests that start no browser, no Dagster, no Locust and no notebook kernel (tests/conftest.py
# marks the others ``heavy``) and took under 3 s each (the others are marked ``slow``), on the same
# throwaway servers: a minute, for the edit-test loop. `make test` runs them all.
test-fast: install
	$(BIN)/pytest -n $(WORKERS) -q -m "not heavy and not slow" tests

test-unit: install
	$(BIN)/pytest tests -q

# nbval only with the notebooks: its plugin costs seconds at every pytest start (see pyproject addopts).
test-notebooks: install
	$(BIN)/pytest $(NBVAL) notebooks -q

lab: install
	$(BIN)/kit services up
	$(BIN)/jupyter lab --allow-root --notebook-dir=notebooks

clean:
	-$(BIN)/kit services down --purge
	rm -rf $(VENV) runs .kit
