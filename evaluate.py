"""Evaluate a trained checkpoint: accuracy and explanation metrics, results files, HTML report.

Examples:
    python evaluate.py --checkpoint ckpt.ckpt --config configs/fashion_mnist/scouter_pos.yaml \\
        --out results/fmnist_pos
    python evaluate.py --checkpoint ckpt.ckpt --config configs/fashion_mnist/scouter_pos.yaml \\
        --explainers slot,gradcam,ig --metrics accuracy,area,precision,insertion,deletion \\
        --limit 500 --out results/fmnist_pos --export results/fmnist_pos/report --num-images 16
    python evaluate.py --checkpoint ckpt.ckpt --config ... --explainers ig,rise \\
        --explainer-setting ig.steps=16 --explainer-setting rise.masks=1000 --out results/x
"""

from scouter.evaluation import main

if __name__ == "__main__":
    raise SystemExit(main())
