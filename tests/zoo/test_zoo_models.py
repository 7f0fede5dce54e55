"""Every trained model the zoo ships: loadable by name offline, and its card's numbers hold.

For each folder in ``scouter/pretrained``, ``create_model(<name>, pretrained=True)`` loads it and
its accuracy on the card's reproducibility subset (the first test images, sized for CI) is
recomputed from the real test set and must equal the card's within the card's tolerance. The
README's zoo table must be the one generated from the cards, and torch.hub must list them all.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch
import yaml

import scouter
from scouter.data import collate_samples, create_dataset, transform_for
from scouter.data.idx import FASHION_MNIST_ROOT
from scouter.hub import SHIPPED_ROOT
from scouter.model_card import card_summary, read_front_matter, zoo_table

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p.parent for p in SHIPPED_ROOT.glob("*/config.json"))
HAS_FASHION = Path(FASHION_MNIST_ROOT).is_dir()


def test_the_zoo_ships_trained_models_listed_by_name():
    assert len(SHIPPED) >= 3
    assert scouter.list_models(trained=True) == [f.name for f in SHIPPED]
    assert set(scouter.list_models(trained=True)) <= set(scouter.list_models(pretrained=True))
    total = sum((f / "model.safetensors").stat().st_size for f in SHIPPED) / 1e6
    assert total <= 40, f"the shipped weights take {total:.1f} MB; the budget is 40 MB"


def test_every_number_of_a_card_is_in_its_results_files():
    for folder in SHIPPED:
        meta = read_front_matter((folder / "README.md").read_text())
        stored = {
            path.stem: json.loads(path.read_text()) for path in (folder / "results").glob("*.json")
        }
        values = []
        for doc in stored.values():
            values += [m["value"] for m in doc["metrics"].values() if "value" in m]
            for entry in doc["explanations"].values():
                values += [m["value"] for m in entry["metrics"].values() if "value" in m]
        for metric in meta["model-index"][0]["results"][0]["metrics"]:
            assert metric["value"] in values, f"{folder.name}: {metric['name']} not in results/"
        summary = card_summary((folder / "README.md").read_text())
        check = stored[summary["check"]["results"]]
        assert summary["check"]["accuracy"] == check["metrics"]["accuracy"]["value"]
        assert summary["check"]["images"] == check["num_images"]


def _test_subset(folder: Path, count: int):
    data = yaml.safe_load((folder / "recipe.yaml").read_text())["data"]
    options = dict(data.get("dataset_options") or {})
    if data["dataset"] == "composites":
        # Samples are rendered from (seed, split, index) alone: the first images without
        # building the whole split's cache, equal to the cached ones the card was measured on.
        options["cache"] = False
    key = json.dumps([data["dataset"], data.get("root"), options, count], sort_keys=True)
    return _samples(key)


@functools.lru_cache(maxsize=4)
def _samples(key: str) -> list:
    """The first test samples of a dataset, read (or rendered) once for every model that uses
    them: the three composites models share one rendering."""
    name, root, options, count = json.loads(key)
    dataset = create_dataset(name, root, "test", **options)
    return [dataset[i] for i in range(count)]


@pytest.mark.skipif(not HAS_FASHION, reason="Debian package dataset-fashion-mnist not installed")
@pytest.mark.parametrize("folder", SHIPPED, ids=[f.name for f in SHIPPED])
def test_a_shipped_model_reaches_its_cards_accuracy(folder):
    summary = card_summary((folder / "README.md").read_text())
    model = scouter.create_model(folder.name, pretrained=True).eval()
    assert model.class_names is not None and model.data_config is not None
    transform = transform_for(model)
    samples = _test_subset(folder, summary["check"]["images"])
    correct = 0
    with torch.no_grad():
        for start in range(0, len(samples), 64):
            batch = collate_samples([transform(s) for s in samples[start : start + 64]])
            correct += int((model(batch["image"]).logits.argmax(1) == batch["label"]).sum())
    accuracy = correct / len(samples)
    expected, tolerance = summary["check"]["accuracy"], summary["check"]["tolerance"]
    assert abs(accuracy - expected) <= tolerance, (
        f"{folder.name}: {accuracy:.4f} on the first {len(samples)} test images, card says "
        f"{expected:.4f} ± {tolerance}"
    )


def test_the_readme_zoo_table_is_generated_from_the_cards():
    readme = (REPO / "README.md").read_text()
    start = readme.index("<!-- zoo-table -->") + len("<!-- zoo-table -->")
    assert readme[start : readme.index("<!-- /zoo-table -->")].strip() == zoo_table(SHIPPED), (
        "README's zoo table is stale: run `python bench/zoo.py table`"
    )


def test_torch_hub_lists_and_loads_every_trained_model():
    import importlib.util

    spec = importlib.util.spec_from_file_location("hubconf", REPO / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    # torch.hub.list's rule: the public callables of hubconf.py
    entries = [n for n in dir(hubconf) if callable(getattr(hubconf, n)) and not n.startswith("_")]
    assert sorted(entries) == [f.name for f in SHIPPED]
    for folder in SHIPPED:
        model = torch.hub.load(str(REPO), folder.name, source="local", trust_repo=True)
        assert model.zoo_entry == folder.name and model.class_names is not None


def test_the_readme_zoo_example_runs_as_written_on_a_users_image(tmp_path, monkeypatch):
    import numpy as np
    from PIL import Image
    from skimage import data as photos

    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("\n## Model zoo") :]
    code = section[
        section.index("```python\n") + 10 : section.index("```", section.index("```python\n") + 10)
    ]
    assert len([line for line in code.splitlines() if line and not line.startswith("#")]) <= 5
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.asarray(photos.astronaut())).save("my_image.png")  # a user's photo
    namespace: dict = {}
    exec(compile(code, "README.md (Model zoo)", "exec"), namespace)  # noqa: S102
    result = namespace["result"]
    assert result.maps.shape[0] == 1 and result.predicted_names[0] in namespace["model"].class_names
    assert sorted(p.name for p in (tmp_path / "explanations").iterdir()) == [
        f"image0_{result.predicted_names[0]}.png".replace("/", "_")
    ]
