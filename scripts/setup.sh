#!/usr/bin/env bash
# Create .venv in the checkout (once) and install dsprep with its test extras.
# Idempotent: a second run reuses the environment unless pyproject.toml or
# TORCH_SPEC changed. torch is installed first from TORCH_SPEC (default
# torch==2.13.0), so pip never resolves a bare `torch` to a multi-GB CUDA build;
# GPU users set e.g. TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128".
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.dsprep-setup
want="$(cat pyproject.toml | sha1sum | cut -c1-40) $TORCH_SPEC"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setting up .venv (torch: $TORCH_SPEC)" >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  # shellcheck disable=SC2086  # TORCH_SPEC may carry pip options on purpose
  .venv/bin/python -m pip install -q --disable-pip-version-check $TORCH_SPEC
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev,plot,remote,ray,fast]"
  echo "$want" > "$stamp"
fi
