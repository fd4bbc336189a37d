# The two commands of the README: `make run` (the whole dev stack) and `make test`.
# Both create the virtualenv and install what they need on first use.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# The main suite on two pytest-xdist workers, a test file per worker at a time (a file's tests share
# its stack and run in order). The tests mostly wait on real servers, so two at once fit 2 cores.
PYTEST_PARALLEL ?= -n 2 --dist loadfile

NPM_STAMP := tests/published_mcp/node_modules/.installed-stamp

# The newest supported Python, for the cancellation and crash tests (asyncio's cancellation changed
# in 3.12). The machine image has it beside 3.11 (pyenv); set PYTHON_NEWEST to use another.
PYTHON_NEWEST ?= $(firstword $(foreach p,python3.13 $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13),$(shell $(p) -c 'import sys; print("$(p)") if sys.version_info[:2] == (3, 13) else None' 2>/dev/null)))
VENV_NEWEST ?= .venv-3.13
STAMP_NEWEST := $(VENV_NEWEST)/.installed-stamp

.PHONY: install run test bench clean histories

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# A published MCP server from the npm registry (streamable HTTP), pinned by its lockfile.
$(NPM_STAMP): tests/published_mcp/package-lock.json
	cd tests/published_mcp && npm ci --no-audit --no-fund --loglevel=error
	touch $(NPM_STAMP)

$(STAMP_NEWEST): pyproject.toml
	test -x $(VENV_NEWEST)/bin/python || $(PYTHON_NEWEST) -m venv $(VENV_NEWEST)
	$(VENV_NEWEST)/bin/python -m pip install --quiet --upgrade pip
	$(VENV_NEWEST)/bin/python -m pip install --quiet -e '.[test]'
	touch $(STAMP_NEWEST)

install: $(STAMP)

run: install
	$(PY) -m executor dev

# Headless Chromium (Debian's package) for the Temporal UI browser test.
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	apt-get update -qq && apt-get install -y -qq chromium >/dev/null

NEWEST_LOG := test-artifacts/python3.13.log

# The whole suite on the project's Python; beside it, at the same time (the tests mostly wait on
# real servers), the cancellation and crash tests on the newest supported Python. Both must pass.
test: install $(NPM_STAMP) $(CHROMIUM)
ifneq ($(PYTHON_NEWEST),)
	@mkdir -p test-artifacts .pytest-tmp; status=0; \
	( $(MAKE) --no-print-directory $(STAMP_NEWEST) && \
	  EXECUTOR_TEST_ARTIFACTS=test-artifacts/python3.13 $(VENV_NEWEST)/bin/python -m pytest -m interpreters \
	    --basetemp=$(CURDIR)/.pytest-tmp/python3.13 $(PYTEST_ARGS) \
	) > $(NEWEST_LOG) 2>&1 & newest=$$!; \
	$(PY) -m pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS) || status=1; \
	wait $$newest || status=1; \
	echo "---- the same cancellation and crash tests on $$($(PYTHON_NEWEST) --version) ($(NEWEST_LOG)):"; \
	grep -v "^WARNING: Location" $(NEWEST_LOG) | tail -n 25; \
	exit $$status
else
	$(PY) -m pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)
	@echo "python3.13 not found: the cancellation and crash tests ran on $$($(PY) --version) only (set PYTHON_NEWEST)"
endif

# The replay corpus of a release (docs/upgrades.md): its own code records one history per case into
# tests/histories/release-<its version>/, which `make test` replays against the current code.
#   git worktree add /tmp/release-v0.2.0 v0.2.0 && make histories RELEASE=/tmp/release-v0.2.0
histories: install $(NPM_STAMP)
	@test -n "$(RELEASE)" || { echo "usage: make histories RELEASE=<checkout of the released code>"; exit 2; }
	$(PY) -m tests.support.record_histories --release $(RELEASE)

BENCH_STAMP := $(VENV)/.bench-stamp

$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: install $(BENCH_STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(VENV_NEWEST) .data test-artifacts *.egg-info
