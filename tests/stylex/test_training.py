"""Training lowers the reconstruction loss; checkpoints reload; the command line trains and runs
AttFind end to end on tiny IDX files; bad AttFind settings fail with the fix."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml

from scouter.stylex.checkpoints import load_stylex
from scouter.stylex.cli import main
from scouter.stylex.data import StylexDataModule, load_idx_images
from scouter.stylex.errors import StylexInputError
from scouter.stylex.run_attfind import AttFindOptions, run
from tests.stylex.conftest import tiny_stylex

REPO = Path(__file__).resolve().parents[2]


def reconstruction_l1(module, images) -> float:
    with torch.no_grad():
        noise = module.generator.make_noise(len(images), torch.Generator().manual_seed(0))
        w, c = module.encoder(images), module.condition(images)
        return float((module.generator(w, c, noise) - images).abs().mean())


def trainer(steps: int, **extra) -> pl.Trainer:
    settings = dict(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    return pl.Trainer(**{**settings, **extra})


def test_a_few_training_steps_lower_the_reconstruction_loss(idx_root):
    data = StylexDataModule(root=str(idx_root), image_size=16, batch_size=16)
    data.setup()
    images = data.train_set.images[:16]
    module = tiny_stylex()
    before = reconstruction_l1(module, images)
    pl.seed_everything(0)
    trainer(120).fit(module, datamodule=data)  # 60 batches: 30 encoder-branch steps
    after = reconstruction_l1(module, images)
    assert after < 0.8 * before, (before, after)


def test_checkpoints_reload_to_the_same_model(tmp_path, idx_root):
    module = tiny_stylex(classes=[0, 2])
    data = StylexDataModule(root=str(idx_root), image_size=16, batch_size=8, classes=[0, 2])
    fit = trainer(4)
    fit.fit(module, datamodule=data)
    fit.save_checkpoint(tmp_path / "s.ckpt")
    again = load_stylex(tmp_path / "s.ckpt")
    images = torch.rand(3, 1, 16, 16) * 2 - 1
    module.eval()
    first, second = module.encode(images), again.encode(images)
    torch.testing.assert_close(first["styles"], second["styles"])
    assert again.classifier.classes == [0, 2] and again.hparams.image_size == 16
    noise = module.generator.make_noise(3, torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(
            module.generator.synthesize(first["styles"], first["rgb_styles"], noise),
            again.generator.synthesize(second["styles"], second["rgb_styles"], noise),
        )


def test_loading_something_else_as_stylex_names_the_right_file(tmp_path, classifier_ckpt):
    with pytest.raises(StylexInputError, match="not a StylEx checkpoint"):
        load_stylex(classifier_ckpt)
    with pytest.raises(StylexInputError, match="does not exist.*stylex.py fit"):
        load_stylex(tmp_path / "nothing.ckpt")


def test_unconditioned_baseline_trains_without_classifier_in_styles(idx_root):
    module = tiny_stylex(conditional=False)
    assert module.generator.c_dim == 0 and module.discriminator.num_classes == 0
    trainer(4).fit(
        module, datamodule=StylexDataModule(root=str(idx_root), image_size=16, batch_size=8)
    )
    assert module.encode(torch.zeros(1, 1, 16, 16))["c"] is None


def test_kl_weight_defaults_to_the_paper_and_the_kl_only_ablation_trains_with_the_classifier(
    idx_root,
):
    assert tiny_stylex().hparams.kl_weight == 1.0  # the paper's weight
    assert tiny_stylex(conditional=False).hparams.kl_weight == 0.0  # the paper's baseline
    data = StylexDataModule(root=str(idx_root), image_size=16, batch_size=8)
    logged = {}
    for name, settings in {"baseline": {}, "kl_only": {"kl_weight": 1.0}}.items():
        module = tiny_stylex(conditional=False, **settings)
        fit = trainer(2)  # one batch: the encoder branch, where the KL term lives
        fit.fit(module, datamodule=data)
        logged[name] = dict(fit.callback_metrics)
        assert module.generator.c_dim == 0  # c never enters the styles either way
    assert "train/kl" not in logged["baseline"]
    assert float(logged["kl_only"]["train/kl"]) >= 0


def test_a_negative_kl_weight_fails_naming_the_setting():
    with pytest.raises(StylexInputError, match="model.kl_weight must be >= 0"):
        tiny_stylex(kl_weight=-1.0)


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, idx_root, classifier_ckpt):
    """``stylex.py fit`` for 6 optimiser steps on the tiny IDX files, then ``stylex.py attfind``."""
    folder = tmp_path_factory.mktemp("stylex_cli")
    config = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "max_steps": 6,
            "logger": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "callbacks": [
                {
                    # as the shipped configs/stylex: last.ckpt always the latest run's
                    "class_path": "scouter.training.ScouterCheckpoint",
                    "init_args": {
                        "dirpath": str(folder / "ckpt"),
                        "filename": "stylex-step{step:06d}",
                        "monitor": None,
                        "save_last": True,
                    },
                }
            ],
        },
        "model": {"w_dim": 16, "channels": 16, "min_channels": 8, "mapping_layers": 2},
        "data": {"root": str(idx_root), "image_size": 16, "classes": [0, 1], "batch_size": 8},
    }
    (folder / "c.yaml").write_text(yaml.safe_dump(config))
    here = os.getcwd()
    os.chdir(folder)  # LightningCLI writes config.yaml into the working folder without a logger
    try:
        main(["fit", "--config", "c.yaml", "--model.classifier", str(classifier_ckpt)])
    finally:
        os.chdir(here)
    out = folder / "attfind"
    results = main(
        [
            "attfind",
            "--checkpoint",
            str(folder / "ckpt" / "last.ckpt"),
            "--out",
            str(out),
            "--num-images",
            "6",
            "--k",
            "3",
            "--random-draws",
            "2",
            "--show-images",
            "2",
            "--baseline",
            str(folder / "ckpt" / "last.ckpt"),
            "--held-out-images",
            "4",
        ]
    )
    return folder, out, results


def test_command_line_trains_and_writes_attributes_metrics_and_report(cli_run):
    folder, out, results = cli_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"] == 6 and metrics["classes"] == ["T-shirt/top", "Trouser"]
    assert metrics["style_space_size"] == 72
    for key in ("reconstruction_l1", "agreement", "kl", "attfind_seconds", "two_class_merge"):
        assert key in metrics
    # The authors' AttFind settings by default: probability effects, shift 2, their thresholds.
    assert (metrics["effect"], metrics["shift"]) == ("probability", 2.0)
    assert (metrics["threshold"], metrics["explained_threshold"]) == (0.3, 0.2)
    assert metrics["clip_negative"] is False
    # The authors' discriminator filter is on, and D's spread over real images says its scale.
    assert metrics["discriminator_filter"] is True
    assert (metrics["discriminator_threshold"], metrics["discriminator_images"]) == (0.2, 10)
    assert metrics["discriminator_scale"] > 0 and metrics["baseline_discriminator_scale"] > 0
    assert 0 <= metrics["baseline_stable_images"] <= 6
    # The baseline here is the same checkpoint, so its reconstruction figures are StylEx's.
    assert metrics["baseline_reconstruction"] == pytest.approx(
        {k: metrics[k] for k in ("reconstruction_l1", "agreement", "kl", "images")}
    )
    assert metrics["held_out_images"] == 4
    for entry in metrics["targets"].values():
        assert len(entry["sufficiency"]) == len(entry["random"]) == len(entry["baseline"]) == 3
        for key in ("held_out_sufficiency", "held_out_random", "held_out_baseline"):
            assert len(entry[key]) == 3
        for key in ("realism", "baseline_realism"):
            assert isinstance(entry[key]["discriminator_rejected"], list)
            if entry["attributes"]:  # how far the attributes together move the images
                assert entry[key]["pixel_l1"] > 0 and entry[key]["discriminator_change"] >= 0
        assert len(entry["baseline_attributes"]) <= 3
        for found in entry["per_image_top_3"].values():
            assert len({a["coordinate"] for a in found}) == len(found) == 3
    # Every image is predicted as one of the two classes, so one class has images to explain.
    assert any(entry["per_image_top_3"] for entry in metrics["targets"].values())
    attributes = json.loads((out / "attributes.json").read_text())
    assert set(attributes) == {"T-shirt/top", "Trouser"}
    report = (out / "report.html").read_text()
    assert "StylEx attributes" in report and "class 0: T-shirt/top" in report
    for name, found in attributes.items():
        safe = "".join(ch if ch.isalnum() else "_" for ch in name)
        for j in range(len(found)):
            assert (out / f"{safe}_attr{j + 1}.png").is_file()
            assert (out / f"{safe}_attr{j + 1}.gif").is_file()
        assert (out / f"{safe}_top.png").is_file() == bool(found)
        # All of the class's attributes together: what sufficiency@k applies.
        assert (out / f"{safe}_together.png").is_file() == bool(found)
        assert (out / f"{safe}_together.gif").is_file() == bool(found)


def test_attfind_images_are_the_trained_classes_test_images(idx_root):
    images, labels = load_idx_images("fashion_mnist", str(idx_root), "test", 16, [0, 1], 6)
    assert images.shape == (6, 1, 16, 16) and set(labels.tolist()) <= {0, 1}
    assert images.min() >= -1 and images.max() <= 1


def test_fit_without_a_classifier_fails_with_the_fix(tmp_path, idx_root, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StylexInputError, match="no classifier given: pass --model.classifier"):
        main(["fit", "--data.root", str(idx_root), "--trainer.max_steps", "1"])


@pytest.mark.parametrize("config", sorted((REPO / "configs" / "stylex").glob("*.yaml")), ids=str)
def test_every_shipped_stylex_config_parses(config, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--config", str(config), "--print_config"])
    assert stop.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    shipped = yaml.safe_load(config.read_text())
    for section in ("model", "data"):
        for key, value in shipped[section].items():
            assert printed[section][key] == value, f"{config.name}: {section}.{key}"
    assert "image_size" not in printed["model"]  # linked from data.image_size


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"num_images": 0}, "--num-images must be >= 1"),
        ({"k": 0}, "--k must be >= 1"),
        ({"threshold": 0.0}, "--threshold must be > 0"),
        ({"explained_threshold": -1.0}, "--explained-threshold must be > 0"),
        ({"effect": "odds"}, "--effect 'odds' is not a unit: use one of probability, logit"),
        ({"shift": 0.0}, "--shift must be > 0"),
        ({"max_unstable": 1.5}, "--max-unstable is a share"),
        ({"device": "nonsense"}, "--device 'nonsense' is not a device"),
        ({"targets": [7]}, r"--targets \[7\] are not outputs"),
        ({"held_out_images": -1}, "--held-out-images must be >= 0"),
        ({"held_out_images": 50}, "--held-out-images 50: only 14 test images"),
        ({"discriminator_threshold": 0.0}, "--discriminator-threshold must be > 0"),
        ({"discriminator_images": 0}, "--discriminator-images must be >= 1"),
    ],
)
def test_bad_attfind_settings_fail_with_the_fix(cli_run, tmp_path, change, message):
    folder = cli_run[0]
    options = AttFindOptions(str(folder / "ckpt" / "last.ckpt"), str(tmp_path / "o"), num_images=2)
    for key, value in change.items():
        setattr(options, key, value)
    with pytest.raises(StylexInputError, match=message):
        run(options)


def test_more_images_asked_than_the_test_split_has_says_how_many_are_used(
    cli_run, tmp_path, capsys
):
    """Issue 29, item 16: 16 test images of classes 0 and 1 exist; 100 000 were asked for."""
    options = AttFindOptions(
        str(cli_run[0] / "ckpt" / "last.ckpt"),
        str(tmp_path / "o"),
        num_images=100_000,
        k=2,
        random_draws=1,
        show_images=1,
        discriminator_images=2,
    )
    results = run(options)
    assert (results["images"], results["images_requested"]) == (16, 100_000)
    note = capsys.readouterr().err
    assert "--num-images 100000 asks for more test images than these classes have (16 " in note
    assert "searching all 16" in note
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert (metrics["images"], metrics["images_requested"]) == (16, 100_000)


def test_attfind_out_that_is_a_file_fails(cli_run, tmp_path):
    (tmp_path / "file").write_text("x")
    options = AttFindOptions(str(cli_run[0] / "ckpt" / "last.ckpt"), str(tmp_path / "file"))
    with pytest.raises(StylexInputError, match="is a file: pass a folder"):
        run(options)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"image_size": 24}, "data.image_size must be a power of two"),
        ({"batch_size": 1}, "data.batch_size must be >= 2"),
        ({"dataset": "cifar"}, "data.dataset must be one of"),
        ({"classes": [0, 12]}, r"has \[12\] outside 0..9"),
        ({"root": "/nonexistent/folder"}, "is not a folder"),
    ],
)
def test_bad_data_settings_fail_with_the_fix(idx_root, settings, message):
    with pytest.raises(StylexInputError, match=message):
        data = StylexDataModule(**{"root": str(idx_root), "image_size": 16, **settings})
        data.setup()


def test_a_baseline_for_other_classes_is_refused(cli_run, tmp_path):
    from scouter.stylex.run_attfind import check_same_setting

    module = load_stylex(cli_run[0] / "ckpt" / "last.ckpt")
    other = tiny_stylex(conditional=False)  # all three classes, not the pair [0, 1]
    with pytest.raises(StylexInputError, match="train the baseline with the same config"):
        check_same_setting(module, other, "other.ckpt")
    check_same_setting(module, module, "same.ckpt")


def test_a_scouter_classifier_is_explained_like_an_fc_one(idx_root):
    from scouter.models.classifier import build_classifier

    torch.manual_seed(0)
    scouter_plus = build_classifier(
        {"backbone": "test_resnet", "num_classes": 3, "head": "xslot", "sign": 1, "in_chans": 1}
    ).eval()
    module = tiny_stylex(scouter_plus)
    data = StylexDataModule(root=str(idx_root), image_size=16, batch_size=8)
    trainer(4).fit(module, datamodule=data)
    images = torch.rand(2, 1, 16, 16, requires_grad=True)
    module.classifier(images).sum().backward()  # the KL term's gradient reaches the images
    assert images.grad.abs().sum() > 0
    assert module.encode(images.detach())["c"].shape == (2, 3)


def test_thresholds_default_to_the_unit_of_the_effects():
    from scouter.stylex.attfind_options import parse_args, unit_thresholds

    base = ["--checkpoint", "s.ckpt", "--out", "o"]
    assert unit_thresholds(parse_args(base)) == (0.3, 0.2)  # probability changes
    assert unit_thresholds(parse_args([*base, "--effect", "logit"])) == (5.0, 2.0)
    given = parse_args(
        [*base, "--effect", "logit", "--threshold", "3", "--explained-threshold", "1"]
    )
    assert unit_thresholds(given) == (3.0, 1.0)
    assert parse_args(base).shift == 2.0 and parse_args([*base, "--shift", "1"]).shift == 1.0
    assert (
        not parse_args(base).clip_negative and parse_args([*base, "--clip-negative"]).clip_negative
    )
    assert parse_args(base).discriminator_filter
    assert not parse_args([*base, "--no-discriminator-filter"]).discriminator_filter
