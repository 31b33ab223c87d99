#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite on the CPU.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
# OpenMP threads that spin while they wait slow every nnU-Net training of the suite several times over when its
# data-augmentation workers share the cores: waiting threads sleep instead
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 nnUNet_compile=false OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" \
  OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
exec python -m pytest -q "$@" tests
