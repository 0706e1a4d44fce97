"""Train a comparator (and score and evaluate it) from a YAML config.

    accelerate launch train_comparator.py --config configs/scut/fold1_mobilenetv2_frozen.yaml
    python train_comparator.py --config configs/synthetic/demo.yaml -o train.epochs=2

A thin entry point over ``orderlearn run``: the same config gives the same run either way.
"""
import sys

from orderlearn.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
