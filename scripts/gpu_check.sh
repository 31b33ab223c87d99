#!/usr/bin/env bash
# The GPU check: on a machine with a CUDA GPU, run the tests that need CUDA, then train one step and predict
# through the stock nnU-Net commands on a tiny synthetic 2D dataset (nnUNetTrainerText and
# nnUNetTrainerCausalText; nnUNetv2_predict and nnUNetv2_predict_text, all with -device cuda).
# Prints one PASS or FAIL line per check and exits 0 when every check passed, 1 when one failed, and 2 with
# one line where torch sees no CUDA device.
#
#   ./scripts/gpu_check.sh                    # the interpreter: $PYTHON, else .venv/bin/python, else python3
#   KEEP=1 ./scripts/gpu_check.sh             # keep the work folder (data, models, logs) and print its path
#
# The text encoder is the default one (MiniLM): its weights must be cached or downloadable, as for the tests.
set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"; else PY=python3; fi
fi
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1; then
  echo "gpu_check: no CUDA device visible to torch ($PY): nothing was checked" >&2
  exit 2
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/nnunet_causal_gpu_check.XXXXXX")"
if [ -z "${KEEP:-}" ]; then trap 'rm -rf "$WORK"' EXIT; else echo "gpu_check: work folder $WORK"; fi
mkdir -p "$WORK/logs" "$WORK/trainers" "$WORK/raw" "$WORK/preprocessed" "$WORK/results"
export PATH="$("$PY" -c 'import os, sys; print(os.path.dirname(sys.executable))'):$PATH"
export nnUNet_raw="$WORK/raw" nnUNet_preprocessed="$WORK/preprocessed" nnUNet_results="$WORK/results"
export nnUNet_extTrainer="$ROOT/nnunet_causal/ext:$WORK/trainers" nnUNet_compile=false
export nnUNet_def_n_proc=2 nnUNet_n_proc_DA=2 PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
PASSED=0
FAILED=0

# check NAME LOG COMMAND...: run COMMAND (output to $WORK/logs/LOG), print PASS or FAIL
check() {
  local name="$1" log="$WORK/logs/$2"
  shift 2
  if "$@" >"$log" 2>&1; then
    echo "PASS $name"
    PASSED=$((PASSED + 1))
  else
    echo "FAIL $name (last lines of $log:)"
    tail -n 15 "$log" | sed 's/^/    /'
    FAILED=$((FAILED + 1))
    return 1
  fi
}

# 1. the tests that skip without CUDA: run here, none may skip (CI=true fails every other skip)
CUDA_TESTS="$(grep -rlE 'skipif\(not torch\.cuda\.is_available\(\)' tests | sort | tr '\n' ' ' | sed 's/ $//')"
cuda_tests() {
  [ -n "$CUDA_TESTS" ] || { echo "no test file with a CUDA skip found under tests/"; return 1; }
  # shellcheck disable=SC2086
  CI=true timeout 1200 "$PY" -m pytest -q -p no:cacheprovider -rs $CUDA_TESTS || return 1
  ! grep -q "SKIPPED" "$WORK/logs/cuda_tests.log"
}
check "CUDA tests (${CUDA_TESTS:-none found})" cuda_tests.log cuda_tests

# 2. tiny data and one-step trainers (one epoch of one iteration, one validation iteration)
prepare() {
  cat >"$WORK/trainers/gpu_check_trainers.py" <<'EOF'
import torch
from nnunet_causal.training.causal.nnUNetTrainerCausalText import nnUNetTrainerCausalText
from nnunet_causal.training.text.nnUNetTrainerText import nnUNetTrainerText


class _OneStep:
    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 1
        self.num_iterations_per_epoch = 1
        self.num_val_iterations_per_epoch = 1


class nnUNetTrainerText_GPUCheck(_OneStep, nnUNetTrainerText):
    pass


class nnUNetTrainerCausalText_GPUCheck(_OneStep, nnUNetTrainerCausalText):
    warmup_fraction = 0.0  # the intervention runs in the one step
EOF
  "$PY" -c "from pathlib import Path; from tests.conftest import make_tiny_2d_dataset; \
make_tiny_2d_dataset(Path('$WORK/raw'), dataset_id=1, n_train=6, n_test=2)" || return 1
  timeout 900 nnUNetv2_plan_and_preprocess -d 1 -c 2d -np 2 -npfp 2 --verify_dataset_integrity
}
if check "tiny 2D dataset planned and preprocessed (nnUNetv2_plan_and_preprocess)" prepare.log prepare; then
  TEST_IMAGES="$WORK/raw/Dataset001_Tiny2D/imagesTs"

  # every test image has an output (and, with a second argument, a prompts sidecar) in folder $1
  outputs_written() {
    local image case
    for image in "$TEST_IMAGES"/*_0000.png; do
      case="$(basename "$image" _0000.png)"
      [ -f "$1/$case.png" ] || { echo "missing $1/$case.png"; return 1; }
      [ -z "${2:-}" ] || [ -f "$1/$case.prompts.json" ] || { echo "missing $1/$case.prompts.json"; return 1; }
    done
  }
  train() {
    timeout 1200 nnUNetv2_train 1 2d 0 -tr "$1" -device cuda || return 1
    grep -q "Using device: cuda" "$WORK/logs/train_$1.log" || { echo "training did not use CUDA"; return 1; }
    [ -f "$WORK/results/Dataset001_Tiny2D/$1__nnUNetPlans__2d/fold_0/checkpoint_final.pth" ]
  }
  predict_stock() {
    timeout 900 nnUNetv2_predict -i "$TEST_IMAGES" -o "$WORK/pred_stock_$1" -d 1 -c 2d -f 0 -tr "$1" \
      -device cuda || return 1
    outputs_written "$WORK/pred_stock_$1"
  }
  predict_text() {
    timeout 900 nnUNetv2_predict_text -i "$TEST_IMAGES" -o "$WORK/pred_text_$1" -d 1 -c 2d -f 0 -tr "$1" \
      -device cuda -prompts lesion "blue square" --save_binary --disable_progress_bar || return 1
    outputs_written "$WORK/pred_text_$1" sidecar
  }
  for trainer in nnUNetTrainerText_GPUCheck nnUNetTrainerCausalText_GPUCheck; do
    if check "$trainer: one training step on the GPU (nnUNetv2_train -device cuda)" "train_$trainer.log" \
        train "$trainer"; then
      check "$trainer: nnUNetv2_predict -device cuda" "predict_$trainer.log" predict_stock "$trainer"
      check "$trainer: nnUNetv2_predict_text -device cuda" "predict_text_$trainer.log" predict_text "$trainer"
    fi
  done
fi

echo "gpu_check: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
