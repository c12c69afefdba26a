# Two entry points that work on a fresh machine with Python 3.11+:
#   make demo   -> sets up .venv when missing, then runs `labgate demo`
#   make test   -> sets up .venv when missing, then runs the whole test suite
#   make browser -> installs Debian's chromium for the browser tests (as root, when missing)
PYTHON ?= python3
# Test workers (pytest-xdist): 0 runs the suite in one process; TEST_WORKERS=3 spreads it over
# three (most tests wait on sockets, child processes and timers, so more workers than cores pays).
TEST_WORKERS ?= 0
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test lint venv browser

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "labgate needs Python 3.11 or newer")'
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/labgate demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy --strict src/

# The browser tests drive the system's chromium through Playwright (never `playwright install`,
# which downloads browsers). Without chromium those tests skip and say why.
browser:
	@if command -v chromium >/dev/null 2>&1; then \
	  echo "chromium: $$(command -v chromium)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  apt-get install -y -q chromium || { apt-get update -q && apt-get install -y -q chromium; } \
	    || echo "chromium could not be installed: the browser tests will skip" >&2; \
	else \
	  echo "chromium is missing (install it as root: apt-get install chromium); the browser tests will skip" >&2; \
	fi
