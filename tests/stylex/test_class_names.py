"""AttFind names the explained classes as the classifier does (its stored class names), else as
the dataset does, else by index; a StylEx checkpoint keeps the classifier's names."""

from __future__ import annotations

import pytest
import torch

from scouter.data.idx import FASHION_MNIST_CLASSES
from scouter.stylex.checkpoints import load_stylex
from scouter.stylex.data import dataset_class_names
from scouter.stylex.errors import StylexInputError
from scouter.stylex.run_attfind import explained_class_names
from tests.stylex.conftest import tiny_classifier, tiny_stylex


def test_the_classifiers_own_names_come_first_then_the_datasets_then_indices():
    named = tiny_classifier()
    named.class_names = ["cat", "dog", "bird"]
    assert explained_class_names(tiny_stylex(named), "mnist", None) == ["cat", "dog", "bird"]
    assert explained_class_names(tiny_stylex(named, classes=[0, 2]), "mnist", [0, 2]) == [
        "cat",
        "bird",
    ]
    unnamed = tiny_stylex(tiny_classifier())  # a classifier saved without names
    assert explained_class_names(unnamed, "fashion_mnist", None) == FASHION_MNIST_CLASSES[:3]
    assert explained_class_names(unnamed, "mnist", [1, 2]) == ["1", "2"]
    # More classifier classes than the dataset names: indices, never a wrong name.
    wide = tiny_stylex(tiny_classifier(num_classes=12))
    assert explained_class_names(wide, "fashion_mnist", None) == [str(k) for k in range(12)]


def test_dataset_names_of_an_unknown_set_fail_with_the_choices():
    assert dataset_class_names("mnist") == [str(d) for d in range(10)]
    with pytest.raises(StylexInputError, match=r"must be one of \['fashion_mnist', 'mnist'\]"):
        dataset_class_names("cifar10")


def test_a_stylex_checkpoint_keeps_the_classifiers_class_names(tmp_path):
    classifier = tiny_classifier()
    classifier.class_names = ["cat", "dog", "bird"]
    for names, path in (
        (["cat", "dog", "bird"], tmp_path / "named.ckpt"),
        (None, tmp_path / "u.ckpt"),
    ):
        classifier.class_names = names
        module = tiny_stylex(classifier)
        checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
        module.on_save_checkpoint(checkpoint)
        torch.save(checkpoint, path)
        again = load_stylex(path)
        assert again.classifier.model.class_names == names
        expected = names or FASHION_MNIST_CLASSES[:3]
        assert explained_class_names(again, "fashion_mnist", None) == expected
