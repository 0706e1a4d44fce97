#!/usr/bin/env bash
# LLaVA-1.5-7B at its real size (random weights) on one CUDA GPU, in at most 9 minutes:
#   bf16, then 4-bit (QLoRA through bitsandbytes, the random model saved and loaded back through
#   LlavaComparator.from_config as a real checkpoint is):
#   - training pairs/s and peak GPU memory at per-device batch 8 / 16 / 32, gradient
#     checkpointing on and off (a batch that does not fit is reported as out of memory);
#   - inference pairs/s naive / cached / cached + shared prefix, one face against a bank of 350
#     and against 32 active references;
#   - from those rates: the wall time of the seed report's protocol (90k pairs x 5 epochs, 1,100
#     test faces x ~350 references, naive) and of ours (32 active comparisons, shared prefix).
# Every figure is printed with the GPU's name (torch.cuda.get_device_name) and collected in
# $GPU_RUN_DIR/summary.txt with the JSON of figures beside it. The measuring code is
# benchmarks/llava_throughput.py; `python benchmarks/llava_full_size.py --throughput --tiny
# --device cpu --tokenizer DIR` runs the same path on the CPU in seconds.
#
# Offline inputs (nothing is downloaded): the tokenizer, a folder holding the Llama-2
# tokenizer.model (or a llava-1.5 tokenizer folder), as the first argument or $TOKENIZER;
# bitsandbytes installed, or a wheel in .whl/ (installed with --no-deps when the import fails);
# about 15 GB free under $WORK_DIR (default: the system temp folder) for the saved random model.
#
#   bash benchmarks/gpu_llava.sh /path/to/llama2-tokenizer     # PYTHON=/path/to/python to choose
# Without a CUDA GPU it stops at once with exit status 3; without a tokenizer, status 2.
set -euo pipefail
cd "$(dirname "$0")/.."

TOKENIZER=${1:-${TOKENIZER:-}}
if [[ -z "$TOKENIZER" ]]; then
  echo "benchmarks/gpu_llava.sh: give the tokenizer folder (the Llama-2 tokenizer.model) as the first argument" >&2
  exit 2
fi
source benchmarks/python_env.sh
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True

if ! GPU_NAME=$("$PY" -c "import sys, torch
if not torch.cuda.is_available(): sys.exit(3)
print(torch.cuda.get_device_name())" 2>/dev/null); then
  echo "benchmarks/gpu_llava.sh: no CUDA GPU visible to $PY (torch.cuda.is_available() is False); run it on a machine with one" >&2
  exit 3
fi
if ! "$PY" -c "import bitsandbytes" 2>/dev/null; then
  shopt -s nullglob
  wheels=(.whl/bitsandbytes-*.whl)
  if (( ${#wheels[@]} )); then
    "$PY" -m pip install --quiet --no-deps --no-index "${wheels[0]}" || echo "bitsandbytes: installing ${wheels[0]} failed" >&2
  else
    echo "bitsandbytes: not installed and no wheel in .whl/: the 4-bit half will be reported as skipped" >&2
  fi
fi

RUNS=${GPU_RUN_DIR:-runs/gpu-llava}
mkdir -p "$RUNS"
SUMMARY="$RUNS/summary.txt"
echo "GPU: $GPU_NAME; torch $("$PY" -c 'import torch; print(torch.__version__)'), transformers $("$PY" -c 'import transformers; print(transformers.__version__)')" | tee "$SUMMARY"

# 9 minutes in all: no new measurement starts after 400 s, and the whole run is stopped at 520 s
# (the measurement in flight when the budget runs out finishes; every figure is printed as it comes)
status=0
timeout --signal=INT --kill-after=15 520 "$PY" benchmarks/llava_full_size.py --device cuda --throughput \
    --tokenizer "$TOKENIZER" --out "$RUNS" --budget-s "${BUDGET_S:-400}" ${WORK_DIR:+--work-dir "$WORK_DIR"} \
    2>&1 | tee "$RUNS/throughput.log" || status=$?
grep -E "^\[|^throughput|^figures" "$RUNS/throughput.log" >> "$SUMMARY" || true
echo "summary: $SUMMARY (exit status $status)"
exit "$status"
