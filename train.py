"""Train, validate, test or predict with a SCOUTER / FC classifier (PyTorch Lightning CLI).

Examples:
    python train.py fit --config configs/fashion_mnist/scouter_pos.yaml
    python train.py fit --config configs/fashion_mnist/scouter_pos.yaml --model.lambda_area 3
    python train.py fit --config configs/fashion_mnist/scouter_pos.yaml --ckpt_path last
    python train.py fit --config configs/fashion_mnist/fc.yaml \\
        --trainer.strategy ddp --trainer.devices 2 --trainer.accelerator cpu
    python train.py test --config configs/fashion_mnist/scouter_pos.yaml --ckpt_path <file.ckpt>
    python train.py fit --help
"""

import sys

from scouter.training.cli import USER_ERRORS, main

if __name__ == "__main__":
    try:
        main()
    except USER_ERRORS as error:  # a bad input: the message names it and the fix, no traceback
        sys.exit(f"train.py: error: {error}")
