# Pantau: `make test` and `make demo` work on a fresh Debian machine (as root they
# install the Debian packages they need; otherwise they say what to install).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
FLUXCHECK := tests/central/fluxcheck

.PHONY: help test demo demo-stop lint typecheck system-deps venv fluxcheck bench clean

help:
	@echo "make test       run the whole test suite against real mosquitto and InfluxDB"
	@echo "make demo       the mission on this machine: simulated river, tapping box and network checks"
	@echo "make demo-stop  stop everything make demo started"
	@echo "make lint       ruff and mypy"

# versions pinned by constraints.txt (python -m scripts.constraints writes it)
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

# Flux's own checker (WebAssembly, from npm) for the Flux central sends: tests/central/fluxcheck
$(FLUXCHECK)/node_modules/.installed: $(FLUXCHECK)/package.json $(FLUXCHECK)/package-lock.json
	npm ci --prefix $(FLUXCHECK) --no-audit --no-fund --ignore-scripts --silent
	touch $@

fluxcheck: system-deps $(FLUXCHECK)/node_modules/.installed

system-deps:
	scripts/install-system-deps

test: system-deps venv fluxcheck
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: system-deps venv
	$(PY) -m scripts.demo up

demo-stop:
	$(PY) -m scripts.demo down

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .run .pytest_cache .mypy_cache .ruff_cache $(FLUXCHECK)/node_modules
