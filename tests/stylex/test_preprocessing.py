"""The generator → classifier mapping equals the classifier's own data pipeline; every bad
classifier input fails before training with a message naming the problem and the fix."""

from __future__ import annotations

import pytest
import torch

from scouter.data import ScouterDataModule
from scouter.data_config import DataConfig
from scouter.stylex.data import load_idx_images
from scouter.stylex.preprocessing import (
    ExplainedClassifier,
    StylexInputError,
    preprocessing_from_dict,
    recorded_preprocessing,
    resolve_preprocessing,
    to_classifier_input,
)
from tests.stylex.conftest import PREP, tiny_classifier, tiny_stylex, write_classifier_ckpt


@pytest.mark.parametrize("in_chans", [1, 3])
def test_mapping_equals_the_data_module_pipeline(idx_root, in_chans):
    # At the native 28 px no resize is involved: channels and normalisation must match exactly.
    data = {
        "dataset": "fashion_mnist",
        "root": str(idx_root),
        "image_size": 28,
        "in_chans": in_chans,
        "num_workers": 0,
        "batch_size": 4,
    }
    module = ScouterDataModule(**data)
    module.setup()
    prep = ScouterDataModule.data_config_of_settings(data)
    assert prep == module.data_config  # without reading the data
    assert prep.mean == (0.2860,) * in_chans and prep.std == (0.3530,) * in_chans  # dataset's own
    images, labels = load_idx_images("fashion_mnist", str(idx_root), "test", 28)
    for index in (0, 5):
        expected = module.test_set[index]["image"]
        mapped = to_classifier_input(images[index : index + 1], prep)[0]
        torch.testing.assert_close(mapped, expected, atol=1e-5, rtol=0)


def test_mapping_resizes_converts_and_normalises_explicitly():
    prep = DataConfig((8, 8), 3, (0.5, 0.25, 0.0), (0.5, 0.5, 1.0))
    gray = torch.full((2, 1, 4, 4), 0.6)  # 0.8 on the 0–1 scale
    out = to_classifier_input(gray, prep)
    assert out.shape == (2, 3, 8, 8)
    torch.testing.assert_close(out[:, 0], torch.full((2, 8, 8), (0.8 - 0.5) / 0.5))
    torch.testing.assert_close(out[:, 1], torch.full((2, 8, 8), (0.8 - 0.25) / 0.5))
    torch.testing.assert_close(out[:, 2], torch.full((2, 8, 8), 0.8))
    rgb = torch.tensor([1.0, -1.0, -1.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)  # pure red
    luminance = to_classifier_input(rgb, DataConfig((2, 2), 1, (0.0,), (1.0,)))
    torch.testing.assert_close(luminance, torch.full((1, 1, 2, 2), 0.299))


def test_explained_classifier_selects_classes_and_passes_gradients():
    model = tiny_classifier(num_classes=3)
    prep = preprocessing_from_dict(PREP)
    explained = ExplainedClassifier(model, prep, classes=[2, 0])
    images = (torch.rand(2, 1, 16, 16) * 2 - 1).requires_grad_(True)
    logits = explained(images)
    full = model(to_classifier_input(images, prep)).logits
    torch.testing.assert_close(logits, full[:, [2, 0]])
    logits.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in model.parameters())
    explained.train()
    assert not model.training  # frozen: never in training mode


@pytest.mark.parametrize("classes", [[1], [0, 0], [0, 3]])
def test_bad_class_selection_names_the_valid_range(classes):
    with pytest.raises(
        StylexInputError, match=r"distinct class indices of the classifier \(0..2\)"
    ):
        ExplainedClassifier(tiny_classifier(), preprocessing_from_dict(PREP), classes)


def test_recorded_preprocessing_is_read_from_a_train_py_checkpoint(tmp_path):
    data = {"dataset": "fashion_mnist", "image_size": 32, "in_chans": 3, "mean": None, "std": None}
    path = write_classifier_ckpt(tmp_path / "c.ckpt", tiny_classifier(in_chans=3), data)
    prep = recorded_preprocessing(path)
    assert prep == DataConfig((32, 32), 3, (0.2860,) * 3, (0.3530,) * 3)
    assert resolve_preprocessing(path, None) == prep


def test_preprocessing_disagreeing_with_the_checkpoint_is_refused(classifier_ckpt):
    given = {**PREP, "image_size": 32}
    with pytest.raises(StylexInputError, match="disagrees with what classifier .* was trained"):
        resolve_preprocessing(classifier_ckpt, given)


def test_safetensors_without_preprocessing_asks_for_it(classifier_safetensors):
    with pytest.raises(StylexInputError, match="pass model.classifier_preprocessing"):
        resolve_preprocessing(classifier_safetensors, None)
    assert resolve_preprocessing(classifier_safetensors, PREP).input_size == (16, 16)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({**PREP, "in_chans": 2}, "in_chans must be 1 or 3"),
        ({**PREP, "std": [0.0]}, "std must be finite \\(std > 0\\)"),
        ({**PREP, "mean": [0.1, 0.2]}, "mean needs one value per channel \\(in_chans=1\\)"),
        ({**PREP, "image_size": 0}, "input_size must be \\(H, W\\) of integers >= 1"),
        ({"image_size": 16}, "missing \\['in_chans', 'mean', 'std'\\]"),
        ({**PREP, "size": 3}, "unknown \\['size'\\]"),
        ({"input_size": [16, 16], "in_chans": 1}, "the data config lacks \\['mean', 'std'\\]"),
    ],
)
def test_bad_preprocessing_settings_name_the_problem(given, message):
    with pytest.raises(StylexInputError, match=f"model.classifier_preprocessing: .*{message}"):
        preprocessing_from_dict(given)


def test_preprocessing_takes_the_short_form_or_a_stored_data_config():
    short = preprocessing_from_dict(
        {"image_size": [16, 24], "in_chans": 3, "mean": [0.5], "std": [0.25]}
    )
    assert short == DataConfig((16, 24), 3, (0.5,) * 3, (0.25,) * 3)
    stored = DataConfig((16, 24), 3, (0.5,) * 3, (0.25,) * 3, eval_resize="resize_crop")
    assert preprocessing_from_dict(stored.to_dict()) == stored


def test_eval_resize_of_the_recorded_config_does_not_count_as_a_disagreement(tmp_path):
    # How a larger photo is brought to the input size does not apply to generated images.
    data = {
        "dataset": "fashion_mnist",
        "image_size": 16,
        "in_chans": 1,
        "mean": [0.5],
        "std": [0.5],
        "eval_resize": "resize_crop",
    }
    path = write_classifier_ckpt(tmp_path / "c.ckpt", tiny_classifier(), data)
    assert recorded_preprocessing(path).eval_resize == "resize_crop"
    assert resolve_preprocessing(path, PREP).input_size == (16, 16)
    with pytest.raises(StylexInputError, match="disagrees"):
        resolve_preprocessing(path, {**PREP, "mean": [0.4]})


def test_classifier_with_another_channel_count_fails_before_training():
    with pytest.raises(StylexInputError, match=r"expects 3-channel images .* set .*in_chans: 3"):
        tiny_stylex(tiny_classifier(in_chans=3))  # PREP says 1 channel


def test_classifier_with_another_input_size_fails_before_training():
    prep = {**PREP, "image_size": 32}
    with pytest.raises(
        StylexInputError,
        match=r"takes 32x32 images but StylEx generates 16x16.*"
        r"resize_for_classifier",
    ):
        tiny_stylex(classifier_preprocessing=prep)
    module = tiny_stylex(classifier_preprocessing=prep, resize_for_classifier=True)
    assert module.classifier(torch.zeros(1, 1, 16, 16)).shape == (1, 3)


def test_recorded_size_mismatch_fails_when_loading_by_path(tmp_path):
    data = {"dataset": "fashion_mnist", "image_size": 64, "in_chans": 1}
    path = write_classifier_ckpt(tmp_path / "c64.ckpt", tiny_classifier(), data)
    from scouter.stylex.module import StylexModule

    with pytest.raises(StylexInputError, match="takes 64x64 images but StylEx generates 32x32"):
        StylexModule(str(path), image_size=32)


@pytest.mark.parametrize("path", ["missing.ckpt", None])
def test_missing_classifier_checkpoint_fails_with_the_fix(tmp_path, path):
    from scouter.stylex.module import StylexModule

    target = str(tmp_path / path) if path else None
    with pytest.raises(StylexInputError, match="--model.classifier"):
        StylexModule(target)


def test_a_folder_instead_of_a_classifier_lists_the_checkpoints_inside(tmp_path, classifier_ckpt):
    from scouter.stylex.module import StylexModule

    with pytest.raises(StylexInputError, match="is a directory.*clf.ckpt"):
        StylexModule(str(classifier_ckpt.parent))


@pytest.mark.parametrize("setting", ["lr", "encoder_lr_ratio", "r1_interval"])
def test_non_positive_training_settings_are_refused(setting):
    with pytest.raises(StylexInputError, match=f"model.{setting} must be > 0"):
        tiny_stylex(**{setting: 0})


def test_a_module_classifier_without_preprocessing_asks_for_it():
    from scouter.stylex.module import StylexModule

    with pytest.raises(StylexInputError, match="needs classifier_preprocessing"):
        StylexModule(tiny_classifier(), image_size=16)
