"""Training with PyTorch Lightning: ScouterModule, the checkpoint callback and the CLI.

Public API:
    ScouterModule(num_classes, backbone=..., head=..., lambda_area=..., ...)   LightningModule
    ScouterCheckpoint(dirpath="checkpoints/{run}", ...)   ModelCheckpoint naming the run
    NonFiniteLossError                                     raised when the loss becomes NaN/inf
    CheckpointFolderLockedError                            another live run holds the folder
    ScouterCLI / main()                                    the LightningCLI behind train.py
"""

from __future__ import annotations

from scouter.training.callbacks import ScouterCheckpoint, run_tags
from scouter.training.cli import ScouterCLI, main
from scouter.training.folder_lock import CheckpointFolderLockedError
from scouter.training.freezing import backbone_stages, freeze_backbone_stages
from scouter.training.module import ScouterModule
from scouter.training.nonfinite import NonFiniteLossError

__all__ = [
    "CheckpointFolderLockedError",
    "NonFiniteLossError",
    "ScouterCLI",
    "ScouterCheckpoint",
    "ScouterModule",
    "backbone_stages",
    "freeze_backbone_stages",
    "main",
    "run_tags",
]
