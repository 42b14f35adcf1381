# Entry points for people and CI. Every target is safe to re-run: the venv is only
# reinstalled when pyproject.toml changed, and `image build` is a no-op while the
# image for the current sources exists.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Touched after a successful install: newer than pyproject.toml means nothing to do.
INSTALLED := $(VENV)/.installed

.PHONY: setup demo test

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# --fallback-bootstrap: without a registry (air-gapped CI) build the base from
# Debian packages instead of failing.
setup: $(INSTALLED)
	$(BIN)/rlm-sandbox image build --fallback-bootstrap

demo: setup
	$(BIN)/rlm-sandbox exec -c "print(2+2)"

test: setup
	$(BIN)/python -m pytest -q
