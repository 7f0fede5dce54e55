#!/usr/bin/env bash
# One command from a fresh Debian/Ubuntu machine: dependencies, Fashion-MNIST, train SCOUTER+ on
# the CPU, test it, then evaluate.py: explanation metrics on 100 test images and an HTML report
# of 16 with their attention maps. About 3.5 minutes on 2 CPU cores once the dependencies are in.
#   bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

FASHION_MNIST_ROOT=/usr/share/datasets/fashion-mnist
if [ ! -d "$FASHION_MNIST_ROOT" ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist
  else
    echo "Fashion-MNIST not found. Put the four official files" >&2
    echo "  train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz" >&2
    echo "  t10k-images-idx3-ubyte.gz  t10k-labels-idx1-ubyte.gz" >&2
    echo "in a folder and rerun with DATA_ROOT=<folder> bash scripts/demo.sh" >&2
    [ -n "${DATA_ROOT:-}" ] || exit 1
  fi
fi
ROOT_ARGS=()
[ -n "${DATA_ROOT:-}" ] && ROOT_ARGS=(--data.root "$DATA_ROOT")

python -m pip install -q -e ".[explain]"

CONFIG=configs/fashion_mnist/scouter_pos.yaml
python train.py fit --config "$CONFIG" "${ROOT_ARGS[@]}" "$@"
BEST=$(ls -t checkpoints/fashion_mnist/scouter_pos-lam1-s1/scouter_pos-*.ckpt | head -1)
python train.py test --config "$CONFIG" "${ROOT_ARGS[@]}" --ckpt_path "$BEST"

# Explanation metrics on 100 test images and an HTML report of 16 with the attention maps
# (--limit 500 takes about 2 minutes more; without --limit all 10 000 are evaluated).
python evaluate.py --checkpoint "$BEST" --config "$CONFIG" "${ROOT_ARGS[@]}" \
  --explainers slot --metrics accuracy,area,insertion,deletion --limit 100 \
  --out results/fashion_mnist/scouter_pos --export results/fashion_mnist/scouter_pos/report \
  --num-images 16
echo "SCOUTER+ checkpoint: $BEST"
echo "Results: results/fashion_mnist/scouter_pos/results.json"
echo "Report:  results/fashion_mnist/scouter_pos/report/report.html"
