# The two commands of the README: `make run` (the whole dev stack) and `make test`.
# Both create the virtualenv and install what they need on first use.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

NPM_STAMP := tests/published_mcp/node_modules/.installed-stamp

.PHONY: install run test bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# A published MCP server from the npm registry (streamable HTTP), pinned by its lockfile.
$(NPM_STAMP): tests/published_mcp/package-lock.json
	cd tests/published_mcp && npm ci --no-audit --no-fund --loglevel=error
	touch $(NPM_STAMP)

install: $(STAMP)

run: install
	$(PY) -m executor dev

# Headless Chromium (Debian's package) for the Temporal UI browser test.
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	apt-get update -qq && apt-get install -y -qq chromium >/dev/null

test: install $(NPM_STAMP) $(CHROMIUM)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install
	$(PY) -m bench

clean:
	rm -rf $(VENV) .data test-artifacts *.egg-info
