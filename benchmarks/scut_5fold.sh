#!/usr/bin/env bash
# Run one SCUT-FBP5500 config over the five folds (sequentially; folds share the feature cache),
# then nothing else: `orderlearn compare` makes the table from the finished runs.
#   [PYTHON=...] benchmarks/scut_5fold.sh configs/scut/plain_l1_mobilenetv2_partial_cpu.yaml [folds...]
set -euo pipefail
config=$1; shift
folds=${*:-1 2 3 4 5}
name=$(basename "$config" .yaml)
for k in $folds; do
  out=runs/$name/fold$k
  if [ -f "$out/results.json" ]; then echo "fold$k: done already ($out)"; continue; fi
  start=$(date +%s)
  ${PYTHON:-python} -m orderlearn.cli run --config "$config" -o data.split=fold$k -o output_dir=$out > "runs/$name.fold$k.log" 2>&1
  echo "fold$k: $(( $(date +%s) - start )) s wall ($out)"
done
