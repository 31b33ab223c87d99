#!/usr/bin/env bash
# Set up (if needed) and run the end-to-end demo (synthetic data -> stock nnU-Net commands -> text prompts).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec python -m nnunet_causal.demo --output "${1:-$ROOT/demo_output}"
