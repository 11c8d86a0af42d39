# Pantau: `make test` and `make demo` work on a fresh Debian machine (as root they
# install the Debian packages they need; otherwise they say what to install).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: help test demo demo-stop lint typecheck system-deps venv bench clean

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

system-deps:
	scripts/install-system-deps

test: system-deps venv
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
	rm -rf $(VENV) .run .pytest_cache .mypy_cache .ruff_cache
