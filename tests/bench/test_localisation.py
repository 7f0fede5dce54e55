"""bench/localisation.py on two tiny fitted models: shared grids, every explainer, the costly subset,
the table and the box plot (a smoke test of the driver; the numbers are the metrics' own tests')."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml

from bench.localisation import main, parse_model
from scouter.checkpoints import save_model
from scouter.evaluation import EvaluationOptions, prepare
from scouter.models.classifier import ModelConfig, build_classifier
from tests.data.conftest import write_idx_dataset
from tests.evaluation.test_evaluate_gridpg import K, _fit_head


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, list[str]]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("localisation")
    fashion = root / "fashion"
    write_idx_dataset(fashion, {"train": 60, "t10k": 30})
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"backbone": "test_resnet", "head": "fc"},
        "data": {"dataset": "composites", "root": str(fashion), "image_size": 32,
                 "batch_size": 8, "num_workers": 0,
                 "dataset_options": {"num_samples": 40, "num_classes": K}},
    }))  # fmt: skip
    specs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        path = root / f"fc{seed}.safetensors"
        save_model(build_classifier(ModelConfig(backbone="test_resnet", num_classes=K,
                                                head="fc")), path)  # fmt: skip
        prepared = prepare(EvaluationOptions(checkpoint=path, config=config, out=root / "p",
                                             progress=False))  # fmt: skip
        dataset = prepared.dataset
        images = torch.stack([torch.as_tensor(dataset[i]["image"]) for i in range(len(dataset))])
        _fit_head(prepared.model.eval(), images, torch.as_tensor(dataset.targets).long())
        save_model(prepared.model, path)
        specs.append(f"fc{seed}={path},{config}")
    return root, specs


def test_leaderboard_smoke(models, tmp_path):
    _, specs = models
    out = tmp_path / "board"
    document = main([
        *[a for spec in specs for a in ("--model", spec)], "--out", str(out),
        "--explainers", "cam,saliency,occlusion", "--sizes", "2", "--count", "3",
        "--costly-grids", "1", "--image-limit", "4", "--costly-images", "2", "--device", "cpu",
        "--jobs", "2",  # two worker processes: the rows still come in (model, explainer) order
    ])  # fmt: skip
    entries = document["entries"]
    assert [(e["model"], e["explainer"]) for e in entries] == [
        (m, x) for m in ("fc0", "fc1") for x in ("cam", "saliency", "occlusion")
    ]
    for e in entries:
        summary = e["gridpg_2"]
        assert summary["count"] == (4 if e["explainer"] == "occlusion" else 12)
        assert 0 <= summary["value"] <= 1 and e["seconds_per_cell_2"] > 0
        assert e["grids"] == ("subset" if e["explainer"] == "occlusion" else "all")
        assert e["images"] == (2 if e["explainer"] == "occlusion" else 4)
        assert "insertion" in e and "deletion" in e
        # area: its own run on the same images (the mean min-max-normalised map, in (0, 1])
        area = json.loads((out / "runs" / e["model"] / e["explainer"] / "area" /
                           "results.json").read_text())  # fmt: skip
        assert area["num_images"] == e["images"]
        expected = area["explanations"][e["explainer"]]["metrics"]["area"]["value"]
        assert e["area"] == expected and 0 < e["area"] <= 1
    # one grids file, selected by both models, behind every model's runs
    grids = json.loads((out / "grids" / "composites_2x2.json").read_text())
    assert len(grids["selected_by"]) == 2 and grids["count"] == 3

    def cell_images(model):
        folder = out / "runs" / model / "cam" / "gridpg_2x2"
        with open(folder / "per_image.csv", newline="") as handle:
            return [r["image_id"] for r in csv.DictReader(handle) if r["grid"]]

    assert cell_images("fc0") == cell_images("fc1") and len(cell_images("fc0")) == 12
    table = (out / "leaderboard.md").read_text()
    assert "GridPG 2×2 mean (median)" in table and table.count("| fc") == 6
    assert "| chance 2×2 |" in table and table.count("| 0.250 |") == 6
    assert (out / "gridpg_2x2.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_model_argument_names_the_format(tmp_path):
    with pytest.raises(SystemExit, match="LABEL=CHECKPOINT,CONFIG"):
        parse_model("fc:ckpt")
    with pytest.raises(SystemExit, match="checkpoint .* does not exist"):
        parse_model(f"fc={tmp_path / 'missing.ckpt'},{tmp_path / 'c.yaml'}")


def test_select_limit_draws_grid_images_from_the_first_images_only(models, tmp_path, monkeypatch):
    import bench.localisation as localisation

    _, specs = models
    out = tmp_path / "board"
    args = ["--model", specs[0], "--out", str(out), "--explainers", "cam", "--sizes", "2",
            "--count", "2", "--costly-grids", "1", "--image-limit", "2", "--device", "cpu"]  # fmt: skip
    forwarded = []
    eligibility = localisation._eligibility
    monkeypatch.setattr(localisation, "_eligibility",
                        lambda *a: forwarded.append(a[2]) or eligibility(*a))  # fmt: skip
    main([*args, "--select-limit", "12"])
    grids = json.loads((out / "grids" / "composites_2x2.json").read_text())
    indices = [i for grid in grids["grids"] for i in grid["indices"]]
    assert grids["count"] == 2 and len(indices) == 8 and max(indices) < 12
    assert grids["selected_from"] == 12 and forwarded == [12]
    settings = json.loads((out / "leaderboard.json").read_text())["settings"]
    assert settings["select_limit"] == 12
    # the same settings again: the grids file is reused, no model forwards the split
    main([*args, "--select-limit", "12"])
    assert forwarded == [12]
    assert json.loads((out / "grids" / "composites_2x2.json").read_text()) == grids
    # other settings: the grids are built anew
    main([*args, "--select-limit", "20"])
    assert forwarded == [12, 20]
    assert json.loads((out / "grids" / "composites_2x2.json").read_text())["selected_from"] == 20
    # ... and the runs scored on the old grids are not reused
    results = json.loads((out / "runs" / "fc0" / "cam" / "gridpg_2x2" / "results.json").read_text())
    assert results["gridpg"]["selected_from"] == 20
    # the tile geometry beside it: its own GridPG runs and table, the same grids and image runs
    images = out / "runs" / "fc0" / "cam" / "images" / "results.json"
    stamp = images.stat().st_mtime_ns
    main([*args, "--select-limit", "20", "--geometry", "tile"])
    assert forwarded == [12, 20] and images.stat().st_mtime_ns == stamp
    tile = out / "runs" / "fc0" / "cam" / "gridpg_2x2_tile" / "results.json"
    assert json.loads(tile.read_text())["gridpg"]["geometry"] == "tile"
    assert json.loads(tile.read_text())["gridpg"]["grid_image_size"] == [64, 64]
    assert (out / "leaderboard_tile.md").is_file() and (out / "gridpg_2x2_tile.png").is_file()
    assert (
        json.loads((out / "runs" / "fc0" / "cam" / "gridpg_2x2" / "results.json").read_text())[
            "gridpg"
        ]["geometry"]
        == "rescale"
    )


def test_grids_are_reused_whatever_the_order_of_the_models(tmp_path):
    from bench.localisation import _reusable
    from scouter.data.grids import build_grids, dataset_identity, save_grids

    labels = [0, 1, 2, 3] * 3
    identity = dataset_identity("composites", None, {}, "test", labels)
    grids = build_grids(labels, [[True] * 12], size=2, count=2, seed=0, threshold=0.9,
                        identity=identity, selected_by=["a (sha256 1)", "b (sha256 2)"])  # fmt: skip
    path = save_grids(tmp_path / "grids.json", grids)
    expected = {"identity": identity, "selected_by": ["a (sha256 1)", "b (sha256 2)"],
                "threshold": 0.9, "seed": 0, "count": 2, "selected_from": None}  # fmt: skip
    assert _reusable(path, expected)
    assert _reusable(path, {**expected, "selected_by": ["b (sha256 2)", "a (sha256 1)"]})
    assert not _reusable(path, {**expected, "selected_by": ["a (sha256 1)", "c (sha256 3)"]})
    # the same weights in another checkout (other paths) select the same images
    assert _reusable(path, {**expected, "selected_by": ["/x/b (sha256 2)", "/y/a (sha256 1)"]})
    assert not _reusable(path, {**expected, "seed": 1})
    assert not _reusable(tmp_path / "missing.json", expected)


def test_seeds_of_a_model_are_pooled_into_one_row(models, tmp_path):
    _, specs = models
    seeds = ["fc=" + spec.partition("=")[2] for spec in specs]  # fc0 and fc1 as two seeds of "fc"
    out = tmp_path / "board"
    document = main([
        *[a for spec in seeds for a in ("--model", spec)], "--out", str(out),
        "--explainers", "cam,saliency", "--sizes", "2", "--count", "3", "--costly-grids", "1",
        "--image-limit", "4", "--device", "cpu",
    ])  # fmt: skip
    runs, entries = document["runs"], document["entries"]
    assert [(r["run"], r["explainer"]) for r in runs] == [
        (f"fc/{i}", x) for i in (0, 1) for x in ("cam", "saliency")
    ]
    assert [(e["model"], e["explainer"], e["seeds"]) for e in entries] == [
        ("fc", "cam", 2), ("fc", "saliency", 2)
    ]  # fmt: skip
    for entry in entries:
        own = [r for r in runs if r["explainer"] == entry["explainer"]]
        values = [r["gridpg_2"]["value"] for r in own]
        summary = entry["gridpg_2"]
        assert summary["value"] == pytest.approx(sum(values) / 2)
        assert summary["std"] == pytest.approx(abs(values[0] - values[1]) / 2**0.5)
        assert summary["count"] == 24 and summary["seed_values"] == values
        assert entry["insertion"] == pytest.approx(sum(r["insertion"] for r in own) / 2)
    # both seeds select the grids and are scored on the same cells, in their own folders
    grids = json.loads((out / "grids" / "composites_2x2.json").read_text())
    assert len(grids["selected_by"]) == 2
    for i in (0, 1):
        assert (out / "runs" / "fc" / str(i) / "cam" / "gridpg_2x2" / "results.json").is_file()
    table = (out / "leaderboard.md").read_text()
    assert "| seeds |" in table and "mean ± sd over seeds (median)" in table
    assert table.count("| fc | cam | all | 2 |") == 1 and " ± " in table


def test_the_same_checkpoint_twice_is_refused(models):
    from bench.localisation import instances

    _, specs = models
    spec = specs[0].partition("=")[2]
    with pytest.raises(SystemExit, match="given twice"):
        instances([f"fc={spec}", f"fc={spec}"])


def test_pooled_figures_with_known_answers():
    from bench.localisation_table import aggregate, table

    def run(model, value, cells, insertion):
        return {"model": model, "explainer": "slot", "grids": "all", "images": 4,
                "gridpg_2": {"value": value, "count": len(cells), "chance": 0.25},
                "seconds_per_cell_2": 0.01, "insertion": insertion,
                "area": insertion / 10}  # fmt: skip

    runs = [run("pos", 0.2, [0.0, 0.4], 0.5), run("pos", 0.4, [0.3, 0.5], 0.7),
            run("fc", 0.6, [0.6], 0.9)]  # fmt: skip
    cells = [{2: ([0.0, 0.4], 0.25)}, {2: ([0.3, 0.5], 0.25)}, {2: ([0.6], 0.25)}]
    rows, values, chance = aggregate(runs, cells, [2])
    pos, fc = rows
    assert pos["seeds"] == 2 and pos["gridpg_2"]["value"] == pytest.approx(0.3)
    assert pos["gridpg_2"]["std"] == pytest.approx(0.141421356)
    assert pos["gridpg_2"]["median"] == pytest.approx(0.35)  # of the pooled 0, .3, .4, .5
    assert pos["insertion"] == pytest.approx(0.6) and "precision" not in pos
    assert pos["area"] == pytest.approx(0.06)
    assert fc["seeds"] == 1 and fc["gridpg_2"]["std"] is None
    assert values[2] == {"pos/slot": [0.0, 0.4, 0.3, 0.5], "fc/slot": [0.6]}
    assert chance[2] == {"pos/slot": 0.25, "fc/slot": 0.25}
    markdown = table(rows, [2])
    assert "| pos | slot | all | 2 | 0.300 ± 0.141 (0.350) |" in markdown
    assert "| fc | slot | all | 1 | 0.600 (0.600) |" in markdown
    assert "| 0.250 |  | 0.060 | 0.600 |" in markdown  # chance, no precision, area, insertion


def test_every_registered_explainer_is_cheap_or_costly_by_its_passes():
    """The default ``--costly`` set: every multi-pass method; a newly registered explainer must be
    placed deliberately (the cheap leaderboard's time depends on it)."""
    from bench.localisation import COSTLY
    from scouter.explain import list_explainers

    single_pass = {"cam", "gradcam", "gradcam++", "guided_backprop", "guided_gradcam",
                   "saliency", "slot", "slot_contribution"}  # fmt: skip
    assert set(list_explainers()) - set(COSTLY) == single_pass
    assert set(COSTLY) <= set(list_explainers())
