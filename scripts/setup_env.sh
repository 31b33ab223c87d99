#!/usr/bin/env bash
# Create .venv (if missing) and install nnunet_causal with what it needs. Sourced by demo.sh and test.sh.
# Override the torch pair with NNUNET_CAUSAL_TORCH="torch==X torchvision==Y" (e.g. a CPU-only build).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NNUNET_CAUSAL_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment $VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi
if ! "$VENV/bin/python" -c "import torch, torchvision" >/dev/null 2>&1; then
  echo "[setup] installing a matched torch/torchvision pair (about 3 minutes)"
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install -q ${NNUNET_CAUSAL_TORCH:-torch==2.14.1 torchvision==0.29.1}
fi
STAMP="$VENV/.nnunet_causal_install_stamp"
# the editable install maps top-level packages when it is made: a new package folder needs a re-install
WANT="$( (cat "$ROOT/setup.cfg" "$ROOT/pyproject.toml"; cd "$ROOT" && ls -d ./*/__init__.py) | sha1sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "[setup] installing nnunet_causal and its dependencies"
  "$VENV/bin/pip" install -q -e "$ROOT[test]"
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
