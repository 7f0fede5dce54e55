"""train.py test / validate / predict and the CSV and TensorBoard logs, against numbers computed
independently from the checkpoint with scouter.load_model."""

from __future__ import annotations

import csv

import pytest
import torch

import scouter
from scouter.data import ScouterDataModule
from scouter.training import main
from tests.training.conftest import tiny_config, write_config


@pytest.fixture(scope="module")
def trained(tiny_folder, tmp_path_factory):
    """A tiny SCOUTER+ fitted for 6 steps, with CSV and TensorBoard loggers; its config and ckpt."""
    run_dir = tmp_path_factory.mktemp("stages")
    config = tiny_config(tiny_folder, run_dir, trainer={"max_steps": 6})
    config["trainer"]["logger"].append(
        {
            "class_path": "pytorch_lightning.loggers.TensorBoardLogger",
            "init_args": {"save_dir": str(run_dir / "runs"), "name": "tensorboard"},
        }
    )
    path = write_config(run_dir / "c.yaml", config)
    main(["fit", "--config", str(path)])
    return path, run_dir / "ckpt" / "scouter_pos-lam1-s1" / "last.ckpt", run_dir


def _reference(checkpoint, tiny_folder, split: str):
    """Logits and labels of a split, from load_model and the data module, without Lightning."""
    model = scouter.load_model(checkpoint).eval()
    data = ScouterDataModule(
        dataset="folder", root=str(tiny_folder), image_size=32, batch_size=8, num_workers=0,
        seed=0, mean=[0.2, 0.2, 0.2], std=[0.3, 0.3, 0.3],
    )  # fmt: skip
    data.setup("test" if split == "test" else "fit")
    loader = data.test_dataloader() if split == "test" else data.val_dataloader()
    logits, labels = [], []
    with torch.no_grad():
        for batch in loader:
            logits.append(model(batch["image"]).logits)
            labels.append(batch["label"])
    return torch.cat(logits), torch.cat(labels)


@pytest.mark.parametrize(("command", "split"), [("test", "test"), ("validate", "val")])
def test_test_and_validate_report_the_checkpoints_accuracy(trained, tiny_folder, command, split):
    path, checkpoint, _ = trained
    cli = main([command, "--config", str(path), "--ckpt_path", str(checkpoint)])
    logits, labels = _reference(checkpoint, tiny_folder, split)
    assert len(labels) == 12  # 4 images per class
    expected = (logits.argmax(dim=1) == labels).float().mean()
    metrics = cli.trainer.callback_metrics
    assert float(metrics[f"{split}/acc"]) == pytest.approx(float(expected), abs=1e-6)
    ce = torch.nn.functional.cross_entropy(logits, labels)
    assert float(metrics[f"{split}/ce"]) == pytest.approx(float(ce), rel=1e-4)


def test_predict_returns_the_checkpoints_predictions_and_maps(trained, tiny_folder):
    path, checkpoint, _ = trained
    cli = main(["predict", "--config", str(path), "--ckpt_path", str(checkpoint)])
    batches = cli.trainer.predict_loop.predictions
    probs = torch.cat([b["probs"] for b in batches])
    attention = torch.cat([b["attention"] for b in batches])
    logits, labels = _reference(checkpoint, tiny_folder, "test")  # predict reads the test split
    torch.testing.assert_close(probs, logits.softmax(dim=1), rtol=1e-5, atol=1e-6)
    assert torch.equal(torch.cat([b["pred"] for b in batches]), logits.argmax(dim=1))
    assert torch.equal(torch.cat([b["label"] for b in batches]), labels)
    assert attention.shape == (12, 3, 4, 4)  # K maps on the 32 px / stride 8 grid
    assert sum(len(b["id"]) for b in batches) == 12


def test_fit_logs_the_same_scalars_to_csv_and_tensorboard(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, _, run_dir = trained
    # version_0 is the fit; test / validate / predict runs log to later versions.
    csv_file = run_dir / "runs" / "csv" / "version_0" / "metrics.csv"
    rows = list(csv.DictReader(csv_file.open()))
    steps = [int(r["step"]) for r in rows if r.get("train/loss_step")]
    assert steps == list(range(6))  # one row per step (log_every_n_steps = 1)
    (events,) = (run_dir / "runs" / "tensorboard" / "version_0").glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events.parent))
    accumulator.Reload()
    scalars = accumulator.Tags()["scalars"]
    assert {"train/loss_step", "train/acc_step", "train/area_step"} <= set(scalars)
    tb_losses = [e.value for e in accumulator.Scalars("train/loss_step")]
    csv_losses = [float(r["train/loss_step"]) for r in rows if r.get("train/loss_step")]
    assert tb_losses == pytest.approx(csv_losses, rel=1e-6)
    assert all(loss > 0 for loss in csv_losses)
