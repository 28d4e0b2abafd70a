# The README's two commands: `make demo` and `make test`. Each sets up everything it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install system-deps demo test test-unit test-notebooks lab bench clean

# uv compiles bytecode at install even when PYTHONDONTWRITEBYTECODE=1 is set (STACK-NOTES).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv 2>&1 | grep -v "is ignored" || true
	$(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode -e '.[dev,fleet]'
	touch $(STAMP)

install: $(STAMP) system-deps

# With apt, as root: hypopg (the what-if index advisor; without it the kit says "unavailable") and
# chromium (the browser tests drive it with Playwright; without it they fail and say why).
system-deps:
	@$(BIN)/python -m kit.servers.sysdeps

demo: install
	$(BIN)/kit demo

test: install test-unit test-notebooks

test-unit: install
	$(BIN)/pytest tests -q

# nbval only here: its plugin costs seconds at every pytest start (see pyproject addopts).
test-notebooks: install
	$(BIN)/pytest -p nbval --nbval-lax --nbval-current-env notebooks -q

lab: install
	$(BIN)/kit services up
	$(BIN)/jupyter lab --allow-root --notebook-dir=notebooks

clean:
	-$(BIN)/kit services down --purge
	rm -rf $(VENV) runs .kit
