# The two commands of the README: `make run` (demo gateway) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint unit integration install redis-server clean bench

$(BIN)/routeway: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/routeway

# The suite starts its own redis-server; install it from Debian's packages when it is missing
# (as root, or through sudo; otherwise say what to install rather than fail inside apt-get).
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; \
	  elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; \
	  else echo "redis-server is missing: install it as root (apt-get install redis-server) and run make again" >&2; exit 1; fi; \
	  echo "installing redis-server"; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }

run: install
	$(BIN)/routeway demo

lint: install
	$(BIN)/ruff check gateway tests bench
	$(BIN)/ruff format --check gateway tests bench
	$(BIN)/mypy

test: install redis-server lint
	$(BIN)/pytest tests

unit: install
	$(BIN)/pytest tests/unit

integration: install redis-server
	$(BIN)/pytest tests/integration

# Routeway vs the bare upstream, minimal pass-throughs and LiteLLM (docs/benchmarks.md); QUICK=1: short runs.
bench: install
	$(BIN)/python -m bench $(if $(filter 1 yes true,$(QUICK)),--quick,)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
