"""Train StylEx for a classifier checkpoint, then find and export its attributes.

Examples:
    python train.py fit --config configs/fashion_mnist/fc.yaml --data.image_size 32
    python stylex.py fit --config configs/stylex/fashion_mnist.yaml --model.classifier <clf.ckpt>
    python stylex.py fit --config configs/stylex/fashion_mnist_tshirt_shirt.yaml \\
        --model.classifier <clf.ckpt>
    python stylex.py attfind --checkpoint checkpoints/stylex/fashion_mnist/last.ckpt \\
        --out results/stylex/fashion_mnist --num-images 200
    python stylex.py fit --help
    python stylex.py attfind --help
"""

import sys

from scouter.stylex.cli import main
from scouter.stylex.errors import StylexInputError
from scouter.training.cli import USER_ERRORS

if __name__ == "__main__":
    try:
        main()
    except (StylexInputError, *USER_ERRORS) as error:  # a bad input: one line with the fix
        sys.exit(f"stylex.py: error: {error}")
