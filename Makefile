# The two commands of README: `make demo` and `make test`. Both set up .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.pinid-installed
CHROMEDRIVER := /usr/bin/chromedriver
NODE_MODULES := node_modules/.package-lock.json
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

# The report's real-browser test drives Debian's Chromium; it is installed once, from apt.
$(CHROMEDRIVER):
	$(SUDO) apt-get update -q
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver

# The browser tests check the service page with axe-core, pinned in package-lock.json; npm writes
# node_modules/.package-lock.json on every install.
$(NODE_MODULES): package-lock.json
	npm ci --no-audit --no-fund

demo: $(STAMP)
	$(BIN)/pinid demo

test: $(STAMP) $(CHROMEDRIVER) $(NODE_MODULES)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) node_modules pinid-demo .pytest_cache .ruff_cache
