# Entry points for people and CI. Every target is safe to re-run: the venv is only
# reinstalled when pyproject.toml changed, and `image build` is a no-op while the
# image for the current sources exists.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Touched after a successful install: newer than pyproject.toml means nothing to do.
INSTALLED := $(VENV)/.installed

.PHONY: setup demo test host

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

test: setup
	$(BIN)/python -m pytest -q
