# Every target installs what it needs first, so each works on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test demo bench lint compose-up compose-down clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[sim,test,dev]'
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

demo: install
	$(VENV)/bin/flame-sim run algorithms/descriptive_statistics.py --nodes 3 --seed 7
	$(VENV)/bin/flame-sim run algorithms/logistic_regression.py --nodes 3 --seed 7

bench: install
	$(PY) -m benchmarks

# ruff, mypy (strict on flame_sdk, flame and flamesdk; see pyproject.toml) and the import contracts (import-linter).
lint: install
	$(VENV)/bin/ruff check flame_sdk flame flamesdk tests algorithms benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The hub exits once the analysis finished (its exit code is the run's); results land in ./results.
compose-up:
	mkdir -p results
	FLAME_UID=$$(id -u) FLAME_GID=$$(id -g) \
	docker compose -f docker/compose.yml --env-file docker/compose.env up --build --exit-code-from hub

compose-down:
	docker compose -f docker/compose.yml --env-file docker/compose.env down --volumes

clean:
	rm -rf $(VENV) .pytest_cache results
