# runner — the two commands a fresh machine needs:
#   make run    installs (first time only), then runs the default experiment on embedded data
#   make test   installs (first time only), then runs the fast test tier
SHELL := /bin/bash
PYTHON ?= python3
ARGS ?=
PYTEST_ARGS ?=

# use the active virtual environment if there is one, else .venv in the repository
ifdef VIRTUAL_ENV
VENV := $(VIRTUAL_ENV)
else
VENV := $(CURDIR)/.venv
endif
BIN := $(VENV)/bin
STAMP := $(VENV)/.runner-install.stamp

.PHONY: install run test test-full lint format clean distclean help

help:
	@echo "make run [ARGS='experiment=...']   install if needed, run an experiment (default: embedded HMDB51 twin)"
	@echo "make test                          install if needed, run the fast test tier"
	@echo "make test-full                     fast + slow tiers (ddp_sim, sweeps, proxy reproductions)"
	@echo "make install | lint | format | clean | distclean"

install: $(STAMP)

# idempotent: re-runs only when pyproject.toml changes (or the stamp is removed)
$(STAMP): pyproject.toml
	@if [ ! -x "$(BIN)/python" ]; then echo "creating $(VENV)"; $(PYTHON) -m venv "$(VENV)"; fi
	"$(BIN)/python" -m pip install torch==2.14.1 torchvision==0.29.1
	"$(BIN)/python" -m pip install -e '.[dev]'
	@touch "$(STAMP)"

run: install
	"$(BIN)/python" -m runner $(ARGS)

test: install
	"$(BIN)/python" -m pytest -m "not slow" $(PYTEST_ARGS)

test-full: install
	"$(BIN)/python" -m pytest -m "slow or not slow" $(PYTEST_ARGS)

lint: install
	"$(BIN)/ruff" check src tests
	"$(BIN)/ruff" format --check src tests

format: install
	"$(BIN)/ruff" check --fix src tests
	"$(BIN)/ruff" format src tests

# build artefacts, caches and run outputs (logs/); keeps .venv and data/
clean:
	rm -rf build dist src/*.egg-info .pytest_cache .ruff_cache logs outputs multirun
	find . -name __pycache__ -type d -prune -not -path "./.venv/*" -exec rm -rf {} +

# also the virtual environment and generated synthetic data
distclean: clean
	rm -rf .venv data/synthetic
