"""evaluate.py end to end against answers known before it runs, not against its own CSV.

* A classifier whose logits are a fixed bias (FC head with zero weights): its predictions, its
  accuracy and every insertion/deletion curve are constant, so the accuracy and both AUCs are
  known in closed form (the softmax of the bias), for every explained-class mode.
* Test explainers whose map is exactly the object mask of the composites image (or its
  complement): precision must be 1 (or 0) and area the mask's mean (or one minus it).
* The binary (ACRIMA) report against scikit-learn on logits computed here from the same model.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from scouter.checkpoints import LIGHTNING_CONFIG_KEY, LIGHTNING_MODEL_PREFIX, save_model
from scouter.evaluation import main
from scouter.explain import Explainer, register_explainer
from scouter.explain import base as explain_base
from scouter.models.classifier import ModelConfig, build_classifier
from tests.data.conftest import ACRIMA_FILES, write_idx_dataset, write_image

BIAS = torch.tensor([0.0, 2.0, 1.0])  # logits of the constant model: always predicts class 1
PROBABILITY = BIAS.softmax(0)  # the explained class's softmax score after any perturbation
NUM_IMAGES = 6


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def composites_config(fashion: Path) -> dict:
    return {
        "model": {"backbone": "test_resnet", "head": "fc"},
        "data": {
            "dataset": "composites",
            "root": str(fashion),
            "image_size": 32,
            "batch_size": 4,
            "num_workers": 0,
            "dataset_options": {"num_samples": 12, "num_classes": 3},
        },
    }


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """Tiny Fashion-MNIST files, a composites config, and the constant model (.safetensors + .ckpt)."""
    root = tmp_path_factory.mktemp("known")
    fashion = root / "fashion"
    write_idx_dataset(fashion, {"train": 60, "t10k": 30})
    (root / "config.yaml").write_text(yaml.safe_dump(composites_config(fashion)))

    torch.manual_seed(0)
    config = ModelConfig(backbone="test_resnet", num_classes=3, head="fc")
    model = build_classifier(config)
    with torch.no_grad():
        model.head.fc.weight.zero_()
        model.head.fc.bias.copy_(BIAS)
    save_model(model, root / "constant.safetensors")
    # The layout ScouterModule writes: the model config plus a Lightning state_dict.
    torch.save(
        {
            LIGHTNING_CONFIG_KEY: config.to_dict(),
            "state_dict": {LIGHTNING_MODEL_PREFIX + k: v for k, v in model.state_dict().items()},
        },
        root / "constant.ckpt",
    )
    return root


@pytest.fixture(scope="module")
def test_split(workdir) -> list[dict]:
    """The evaluated images with their exact masks and labels, built independently of evaluate.py."""
    from scouter.data import ScouterDataModule

    datamodule = ScouterDataModule(**composites_config(workdir / "fashion")["data"])
    datamodule.setup()
    return [datamodule.test_set[i] for i in range(NUM_IMAGES)]


class _MaskLookup(Explainer):
    """Looks each input image up in the test split and returns its object mask (or complement)."""

    kind = "pixel"
    needs_gradients = False
    samples: list[dict] = []
    seen_targets: list[int] = []
    complement = False
    only_label_class = False  # zero maps for every class but the image's label
    # largest per-pixel distance from a stored image still counted as that image: exact by
    # default, the sensitivity radius where perturbed copies must map to their original
    tolerance = 1e-5

    def explain(self, model, images, targets):
        stored = torch.stack([torch.as_tensor(s["image"]) for s in self.samples]).to(images)
        distance = (images[:, None] - stored[None]).flatten(2).abs().amax(-1)  # (B, N)
        best = distance.argmin(dim=1)
        found = distance[torch.arange(len(best)), best] < self.tolerance
        assert bool(found.all()), "image not found"
        masks = torch.stack([torch.as_tensor(self.samples[i]["mask"]) for i in best.tolist()])
        masks = masks.to(images).float()[:, None]
        type(self).seen_targets.extend(targets.tolist())
        if self.only_label_class:
            labels = torch.tensor([int(self.samples[i]["label"]) for i in best.tolist()])
            masks = masks * (targets.cpu() == labels).to(masks).view(-1, 1, 1, 1)
        return 1 - masks if self.complement else masks


class TrueMask(_MaskLookup):
    name = "test_true_mask"


class ComplementMask(_MaskLookup):
    name = "test_complement_mask"
    complement = True


class RobustMask(_MaskLookup):
    name = "test_robust_mask"
    tolerance = 0.2 + 1e-5  # the sensitivity metric's default radius


class LabelClassMask(RobustMask):
    name = "test_label_class_mask"
    only_label_class = True


@pytest.fixture
def mask_explainers(test_split):
    classes = (TrueMask, ComplementMask, RobustMask, LabelClassMask)
    for cls in classes:
        cls.samples, cls.seen_targets = test_split, []
        register_explainer(cls)
    yield TrueMask, ComplementMask
    for cls in classes:
        explain_base._REGISTRY.pop(cls.name, None)


def run_evaluate(
    workdir: Path,
    out: Path,
    checkpoint: str,
    *extra: str,
    explainers: str = "test_true_mask,test_complement_mask",
    metrics: str = "accuracy,area,precision,insertion,deletion",
) -> dict:
    code = main(
        [
            "--checkpoint", str(workdir / checkpoint),
            "--config", str(workdir / "config.yaml"),
            "--explainers", explainers,
            "--metrics", metrics,
            "--limit", str(NUM_IMAGES),
            "--out", str(out),
            "--device", "cpu",
            "--no-progress",
            *extra,
        ]
    )  # fmt: skip
    assert code == 0
    return json.loads((out / "results.json").read_text())


@pytest.mark.parametrize(
    "checkpoint, mode",
    [
        ("constant.safetensors", None),  # auto: the ground truth for FC models
        ("constant.ckpt", "predicted"),
        ("constant.safetensors", "2"),
    ],
)
def test_metrics_equal_values_known_in_advance(
    workdir, test_split, mask_explainers, tmp_path, checkpoint, mode
):
    extra = () if mode is None else ("--explained-class", mode)
    results = run_evaluate(workdir, tmp_path, checkpoint, *extra)
    labels = np.array([int(s["label"]) for s in test_split])
    masks = np.stack([np.asarray(s["mask"], dtype=np.float64) for s in test_split])
    assert results["num_images"] == NUM_IMAGES
    assert masks.sum(axis=(1, 2)).min() > 0  # every image has an object

    # Logits are the bias: every prediction is class 1.
    assert results["metrics"]["accuracy"]["value"] == pytest.approx(np.mean(labels == 1))
    per_class = [np.mean(labels[labels == k] == 1) for k in np.unique(labels)]
    assert results["metrics"]["accuracy"]["macro"] == pytest.approx(np.mean(per_class))

    if mode is None:
        explained, expected_mode = labels, "target"
    elif mode == "predicted":
        explained, expected_mode = np.ones_like(labels), "predicted"
    else:
        explained, expected_mode = np.full_like(labels, int(mode)), int(mode)
    assert results["explained_class"] == expected_mode
    for cls in mask_explainers:
        assert cls.seen_targets == explained.tolist()  # the classes the explainers were asked for
    rows = read_csv(tmp_path / "per_image.csv")
    assert [int(r["explained_class"]) for r in rows] == explained.tolist()
    assert [int(r["prediction"]) for r in rows] == [1] * NUM_IMAGES

    # Perturbing pixels cannot change constant logits: both curves are flat at softmax(bias)[c].
    auc = float(PROBABILITY[torch.as_tensor(explained)].double().mean())
    for name in ("test_true_mask", "test_complement_mask"):
        doc = results["explanations"][name]["metrics"]
        assert doc["insertion"]["value"] == pytest.approx(auc, abs=1e-5)
        assert doc["deletion"]["value"] == pytest.approx(auc, abs=1e-5)
        assert all(m["nan_count"] == 0 for m in doc.values())

    true, complement = (results["explanations"][c.name]["metrics"] for c in mask_explainers)
    assert true["precision"]["value"] == pytest.approx(1.0, abs=1e-6)
    assert complement["precision"]["value"] == pytest.approx(0.0, abs=1e-6)
    assert true["area"]["value"] == pytest.approx(masks.mean(), abs=1e-5)
    assert complement["area"]["value"] == pytest.approx(1 - masks.mean(), abs=1e-5)
    per_image_area = [float(r["test_true_mask/area"]) for r in rows]
    np.testing.assert_allclose(per_image_area, masks.mean(axis=(1, 2)), atol=1e-5)


@pytest.mark.parametrize("mode", [None, "predicted"])
def test_infidelity_sensitivity_and_reference_area_known_in_advance(
    workdir, test_split, mask_explainers, tmp_path, mode
):
    extra = () if mode is None else ("--explained-class", mode)
    results = run_evaluate(
        workdir,
        tmp_path,
        "constant.safetensors",
        *extra,
        explainers="test_robust_mask,test_label_class_mask",
        metrics="area_reference,infidelity,sensitivity",
    )
    labels = np.array([int(s["label"]) for s in test_split])
    masks = np.stack([np.asarray(s["mask"], dtype=np.float64) for s in test_split])
    explained = labels if mode is None else np.ones_like(labels)

    robust = results["explanations"]["test_robust_mask"]["metrics"]
    # Constant logits: p(x) − p(x − I) = 0 for every perturbation, so the optimal rescaling is 0
    # and infidelity is exactly 0, for any map.
    assert robust["infidelity"]["value"] == 0.0
    # The map of a perturbed image is the map of the image: max-sensitivity is exactly 0.
    assert robust["sensitivity"]["value"] == 0.0
    # Every class's map is the object mask; the joint min-max leaves {0, 1} as it is.
    assert robust["area_reference"]["value"] == pytest.approx(masks.mean(), abs=1e-6)

    # Only the label's class map is the mask (the others are zero): the reference area of the
    # explained class is the mask's mean where it is the label, else 0.
    label_only = results["explanations"]["test_label_class_mask"]["metrics"]
    expected = np.where(explained == labels, masks.mean(axis=(1, 2)), 0.0)
    rows = read_csv(tmp_path / "per_image.csv")
    np.testing.assert_allclose(
        [float(r["test_label_class_mask/area_reference"]) for r in rows], expected, atol=1e-6
    )
    assert label_only["area_reference"]["value"] == pytest.approx(expected.mean(), abs=1e-6)
    if mode == "predicted":
        assert 0 < (explained == labels).sum() < len(labels)  # both cases occur


# Fish and dogs: WordNet's least similar class of a fish is a dog and of a dog a fish.
FISH, DOGS = ("n01440764", "n01443537"), ("n02085620", "n02086240")


@pytest.mark.skipif(
    __import__("scouter.metrics.explained_class", fromlist=["x"])._find_wordnet_dir(None) is None,
    reason="no local WordNet 3.0 (apt-get install wordnet-base)",
)
def test_wordnet_explained_class_is_from_the_other_kind(tmp_path, mask_explainers):
    root = tmp_path / "imagenet"
    for k, wnid in enumerate(FISH + DOGS):
        for split in ("train", "val"):
            write_image(root / split / wnid / f"{split}_{k}.JPEG", 16, 16, value=40 * k + 20)
    data = {
        "dataset": "imagenet",
        "root": str(root),
        "image_size": 32,
        "batch_size": 4,
        "num_workers": 0,
    }
    (tmp_path / "config.yaml").write_text(
        yaml.safe_dump({"model": {"backbone": "test_resnet", "head": "fc"}, "data": data})
    )
    torch.manual_seed(0)
    model = build_classifier(ModelConfig(backbone="test_resnet", num_classes=4, head="fc"))
    save_model(model, tmp_path / "model.safetensors")
    out = tmp_path / "out"
    code = main(
        [
            "--checkpoint", str(tmp_path / "model.safetensors"),
            "--config", str(tmp_path / "config.yaml"),
            "--explainers", "gradcam", "--metrics", "accuracy,area",
            "--explained-class", "wordnet",
            "--out", str(out), "--device", "cpu", "--no-progress",
        ]
    )  # fmt: skip
    assert code == 0
    assert json.loads((out / "results.json").read_text())["explained_class"] == "wordnet"
    rows = read_csv(out / "per_image.csv")
    assert len(rows) == 4
    for row in rows:
        label, explained = int(row["label"]), int(row["explained_class"])
        kinds = (set(range(2)), set(range(2, 4)))  # labels follow the sorted wnids
        mine = next(kind for kind in kinds if label in kind)
        assert explained not in mine, (label, explained)


def test_binary_report_matches_scikit_learn(tmp_path):
    from sklearn import metrics as sk

    from scouter.checkpoints import load_model
    from scouter.data import ScouterDataModule

    folder = tmp_path / "ACRIMA" / "Database" / "Images"
    rng = np.random.default_rng(0)
    for n, name in enumerate(ACRIMA_FILES):
        write_image(folder / name, 16, 16, value=int(rng.integers(0, 230)) + n)
    data = {
        "dataset": "acrima",
        "root": str(tmp_path / "ACRIMA"),
        "image_size": 32,
        "batch_size": 4,
        "num_workers": 0,
        "dataset_options": {"test_fraction": 0.5},
    }
    (tmp_path / "config.yaml").write_text(
        yaml.safe_dump({"model": {"backbone": "test_resnet", "head": "fc"}, "data": data})
    )
    datamodule = ScouterDataModule(**data)
    datamodule.setup()
    test_set = datamodule.test_set
    images = torch.stack([torch.as_tensor(test_set[i]["image"]) for i in range(len(test_set))])
    labels = np.array([int(test_set[i]["label"]) for i in range(len(test_set))])
    torch.manual_seed(3)
    model = build_classifier(ModelConfig(backbone="test_resnet", num_classes=2, head="fc")).eval()
    with torch.no_grad():  # centre the margin on the median so that both classes are predicted
        margin = model(images).logits @ torch.tensor([-1.0, 1.0])
        model.head.fc.bias[1] -= float(margin.median()) + 1e-3
    save_model(model, tmp_path / "binary.safetensors")

    out = tmp_path / "out"
    code = main(
        [
            "--checkpoint", str(tmp_path / "binary.safetensors"),
            "--config", str(tmp_path / "config.yaml"),
            "--explainers", "gradcam", "--metrics", "accuracy",
            "--out", str(out), "--device", "cpu", "--no-progress",
        ]
    )  # fmt: skip
    assert code == 0
    results = json.loads((out / "results.json").read_text())

    # The same predictions, recomputed here from the saved file without evaluate.py.
    with torch.no_grad():
        logits = load_model(tmp_path / "binary.safetensors").eval()(images).logits
    score = logits.softmax(-1)[:, 1].double().numpy()
    predicted = (score > 0.5).astype(int)
    assert results["num_images"] == len(labels) == 10
    assert 0 < predicted.sum() < len(predicted) and 0 < labels.sum() < len(labels)

    report = results["metrics"]["binary"]["value"]
    expected = {
        "roc_auc": sk.roc_auc_score(labels, score),
        "accuracy": sk.accuracy_score(labels, predicted),
        "precision": sk.precision_score(labels, predicted, zero_division=0),
        "recall": sk.recall_score(labels, predicted, zero_division=0),
        "f1": sk.f1_score(labels, predicted, zero_division=0),
        "cohen_kappa": sk.cohen_kappa_score(labels, predicted),
    }
    assert set(report) == set(expected)
    for name, value in expected.items():
        assert report[name] == pytest.approx(value, abs=1e-6), name
    assert results["metrics"]["accuracy"]["value"] == pytest.approx(
        sk.accuracy_score(labels, logits.argmax(-1).numpy())
    )
    assert results["metrics"]["accuracy"]["macro"] == pytest.approx(
        sk.balanced_accuracy_score(labels, logits.argmax(-1).numpy())
    )
