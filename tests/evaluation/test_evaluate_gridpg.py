"""evaluate.py --metrics gridpg end to end on a tiny composites set: grids built once from the
confidently classified images and reused, one CSV row per cell, the report's section, the SCOUTER−
reading, and bad settings refused before any work."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from scouter.checkpoints import save_model
from scouter.evaluation import EvaluationError, EvaluationOptions, evaluate, main, prepare
from scouter.models.classifier import ModelConfig, build_classifier
from tests.data.conftest import write_idx_dataset

REPO = Path(__file__).resolve().parents[2]
K = 5


def _fit_head(model, images: torch.Tensor, labels: torch.Tensor) -> None:
    """Least-squares FC head on the test images: a model that classifies them confidently."""
    with torch.no_grad():
        features = model.backbone(images).mean(dim=(2, 3)).double()
        x = torch.cat([features, torch.ones(len(features), 1, dtype=torch.double)], 1)
        targets = torch.nn.functional.one_hot(labels, K).double() * 12 - 6
        w = torch.linalg.lstsq(x, targets).solution
        model.head.fc.weight.copy_(w[:-1].T.float())
        model.head.fc.bias.copy_(w[-1].float())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """Fashion IDX files, a 5-class composites config (32 px), a fitted FC model, SCOUTER+/−."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("gridpg")
    fashion = root / "fashion"
    write_idx_dataset(fashion, {"train": 60, "t10k": 30})
    config = {
        "model": {"backbone": "test_resnet", "head": "xslot", "sign": 1},
        "data": {
            "dataset": "composites", "root": str(fashion), "image_size": 32, "batch_size": 8,
            "num_workers": 0, "dataset_options": {"num_samples": 40, "num_classes": K},
        },
    }  # fmt: skip
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    for name, kwargs in (("pos", {}), ("neg", {"sign": -1}), ("fc", {"head": "fc"})):
        torch.manual_seed(0)
        model = build_classifier(ModelConfig(backbone="test_resnet", num_classes=K, **kwargs))
        save_model(model, root / f"{name}.safetensors")
    prepared = prepare(_options(root, "fc", root / "probe"))
    dataset = prepared.dataset
    images = torch.stack([torch.as_tensor(dataset[i]["image"]) for i in range(len(dataset))])
    model = prepared.model.eval()
    _fit_head(model, images, torch.as_tensor(dataset.targets).long())
    save_model(model, root / "fc.safetensors")
    return root


def _options(root: Path, name: str, out: Path, **kwargs) -> EvaluationOptions:
    return EvaluationOptions(
        checkpoint=root / f"{name}.safetensors", config=root / "config.yaml", out=out,
        metrics=kwargs.pop("metrics", ["gridpg"]), progress=False, **kwargs,
    )  # fmt: skip


def _rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "per_image.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _cells(rows):
    return [r for r in rows if r["grid"]]


def test_gridpg_builds_grids_once_and_every_model_reuses_them(workdir, tmp_path):
    out, export = tmp_path / "fc", tmp_path / "report"
    command = [
        sys.executable, str(REPO / "evaluate.py"), "--checkpoint", str(workdir / "fc.safetensors"),
        "--config", str(workdir / "config.yaml"), "--explainers", "gradcam,saliency",
        "--metrics", "accuracy,area,gridpg", "--gridpg-count", "4", "--out", str(out),
        "--export", str(export), "--num-images", "2", "--no-progress",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    results = json.loads((out / "results.json").read_text())
    record = results["gridpg"]
    assert record["size"] == 2 and record["geometry"] == "rescale" and record["count"] == 4
    assert record["threshold"] == 0.99 and record["built_here"] is True
    assert record["cells"] == 16 and record["cells_not_confident"] == 0
    assert record["grid_image_size"] == [32, 32]
    assert record["grids_file"] == str(out / "gridpg_grids.json")
    rows = _rows(out)
    images, cells = [r for r in rows if not r["grid"]], _cells(rows)
    assert len(images) == results["num_images"] == 40 and len(cells) == 16
    by_id = {r["id"]: r for r in images}
    for g in range(4):
        grid = [r for r in cells if r["grid"] == str(g)]
        assert [r["cell"] for r in grid] == ["0", "1", "2", "3"]
        assert len({r["label"] for r in grid}) == 4  # distinct classes
        for r in grid:  # only images the model classified correctly and confidently
            assert r["confident"] == "True" and r["prediction"] == r["label"]
            assert by_id[r["image_id"]]["prediction"] == r["label"]
    for name in ("gradcam", "saliency"):
        summary = results["explanations"][name]["metrics"]["gridpg"]
        values = np.array([float(r[f"{name}/gridpg"]) for r in cells])
        assert ((values >= 0) & (values <= 1)).all()
        assert summary["value"] == pytest.approx(values.mean(), abs=1e-6)
        assert summary["median"] == pytest.approx(np.median(values), abs=1e-6)
        assert summary["q1"] == pytest.approx(np.quantile(values, 0.25), abs=1e-6)
        assert summary["q3"] == pytest.approx(np.quantile(values, 0.75), abs=1e-6)
        assert summary["count"] == 16 and summary["chance"] == 0.25
        assert summary["zero_count"] <= int((values == 0).sum())  # an all-zero map scores 0
        assert summary["settings"]["evidence"] == "for"
        assert "area" in results["explanations"][name]["metrics"]  # the image metrics still run
    html = (export / "report.html").read_text()
    assert "Grid pointing game (2×2, rescale)" in html
    assert "alt='GridPG box plot'" in html and html.count("gridpg-grid") == 3

    # SCOUTER+ on the same grids, tiled: the same cells, its own confidence counted
    pos = tmp_path / "pos"
    results = evaluate(
        _options(
            workdir,
            "pos",
            pos,
            explainers=["slot", "gradcam"],
            gridpg_grids=out / "gridpg_grids.json",
            gridpg_geometry="tile",
        )
    )
    assert results["gridpg"]["built_here"] is False
    assert results["gridpg"]["grid_image_size"] == [64, 64]
    pos_cells = _cells(_rows(pos))
    assert [r["image_id"] for r in pos_cells] == [r["image_id"] for r in cells]
    assert results["gridpg"]["cells_not_confident"] == sum(
        r["confident"] == "False" for r in pos_cells
    )
    assert not (pos / "gridpg_grids.json").exists()


def test_gridpg_on_a_grids_file_skips_the_pass_over_the_split_with_the_same_scores(
    workdir, tmp_path
):
    grids_file = tmp_path / "grids.json"
    built = evaluate(_options(workdir, "fc", tmp_path / "built", explainers=["gradcam"],
                              gridpg_count=3, gridpg_grids=grids_file))  # fmt: skip
    assert built["num_images"] == 40  # building grids needs every image's confidence
    looped = evaluate(_options(workdir, "pos", tmp_path / "looped", explainers=["slot"],
                               metrics=["accuracy", "gridpg"], gridpg_grids=grids_file))  # fmt: skip
    alone = evaluate(_options(workdir, "pos", tmp_path / "alone", explainers=["slot"],
                              gridpg_grids=grids_file))  # fmt: skip
    assert looped["num_images"] == 40 and alone["num_images"] == 0  # the grids name their images
    assert (
        alone["explanations"]["slot"]["metrics"]["gridpg"]
        == looped["explanations"]["slot"]["metrics"]["gridpg"]
    )
    assert alone["gridpg"]["cells_not_confident"] == looped["gridpg"]["cells_not_confident"]
    assert len(_cells(_rows(tmp_path / "alone"))) == 12 and not [
        r for r in _rows(tmp_path / "alone") if not r["grid"]
    ]


def test_grids_are_deterministic_for_a_seed(workdir, tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for folder, seed in ((a, 0), (b, 0), (c, 1)):
        evaluate(_options(workdir, "fc", folder, explainers=["cam"], gridpg_count=6, seed=seed))
    first = json.loads((a / "gridpg_grids.json").read_text())
    assert first == json.loads((b / "gridpg_grids.json").read_text())
    assert first["grids"] != json.loads((c / "gridpg_grids.json").read_text())["grids"]


def test_scouter_negative_slot_maps_score_the_share_outside_the_cell(workdir, tmp_path):
    from scouter.data.grids import load_grids
    from scouter.explain import get_explainer
    from scouter.metrics import compose_grid, gridpg_scores

    grids_file = tmp_path / "grids.json"
    evaluate(_options(workdir, "fc", tmp_path / "fc", explainers=["cam"], gridpg_count=3,
                      gridpg_grids=grids_file))  # fmt: skip
    results = evaluate(_options(workdir, "neg", tmp_path / "neg", explainers=["slot", "gradcam"],
                                gridpg_grids=grids_file))  # fmt: skip
    slot = results["explanations"]["slot"]["metrics"]["gridpg"]
    assert slot["settings"]["evidence"] == "against" and slot["chance"] == pytest.approx(0.75)
    gradcam = results["explanations"]["gradcam"]["metrics"]["gridpg"]
    assert gradcam["settings"]["evidence"] == "for"  # a gradient map of the logit: evidence for
    # recompute the slot scores by hand: 1 − share inside the cell of the class's attention
    prepared = prepare(_options(workdir, "neg", tmp_path / "again", gridpg_grids=grids_file))
    grids = load_grids(grids_file)
    cells = torch.stack(
        [torch.as_tensor(prepared.dataset[int(i)]["image"]) for i in grids.indices.ravel()]
    ).view(3, 4, *prepared.dataset[0]["image"].shape)
    images = compose_grid(cells, 2, "rescale")
    with torch.no_grad():
        maps = get_explainer("slot")(prepared.model, images, target=torch.as_tensor(grids.labels))
    inside, _ = gridpg_scores(maps.maps, (32, 32), 2, "for")
    values = [float(r["slot/gridpg"]) for r in _cells(_rows(tmp_path / "neg"))]
    np.testing.assert_allclose(values, (1 - inside).flatten().numpy(), atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gridpg_size": 3}, r"a 3×3 grid needs 9 distinct classes but the dataset has 5"),
        ({"gridpg_size": 1}, r"--gridpg-size must be at least 2"),
        ({"gridpg_threshold": 1.5}, r"--gridpg-threshold must lie in \[0, 1\]"),
        ({"gridpg_count": 0}, r"--gridpg-count must be at least 1"),
        ({"gridpg_geometry": "stretch"}, r"--gridpg-geometry must be one of"),
    ],
)
def test_bad_gridpg_settings_fail_before_any_work(workdir, tmp_path, kwargs, message):
    with pytest.raises(EvaluationError, match=message):
        prepare(_options(workdir, "fc", tmp_path / "out", **kwargs))
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_unusable_grids_files_are_refused_before_any_work(workdir, tmp_path):
    grids_file = tmp_path / "grids.json"
    evaluate(_options(workdir, "fc", tmp_path / "first", explainers=["cam"], gridpg_count=2,
                      gridpg_grids=grids_file))  # fmt: skip
    before = grids_file.read_bytes()
    with pytest.raises(EvaluationError, match=r"--gridpg-size 3 differs from the size"):
        prepare(_options(workdir, "fc", tmp_path / "o", gridpg_size=3, gridpg_grids=grids_file))
    with pytest.raises(EvaluationError, match=r"another dataset split \(split: file 'test'"):
        prepare(_options(workdir, "fc", tmp_path / "o", split="val", gridpg_grids=grids_file))
    assert grids_file.read_bytes() == before
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"metrics": {}}))
    with pytest.raises(EvaluationError, match="is not a grids file"):
        prepare(_options(workdir, "fc", tmp_path / "o", gridpg_grids=other))
    with pytest.raises(EvaluationError, match="is a folder"):
        prepare(_options(workdir, "fc", tmp_path / "o", gridpg_grids=tmp_path))


def test_too_few_confident_classes_writes_nothing(workdir, tmp_path, capsys):
    out = tmp_path / "out"
    code = main([
        "--checkpoint", str(workdir / "pos.safetensors"), "--config", str(workdir / "config.yaml"),
        "--explainers", "slot", "--metrics", "gridpg", "--out", str(out), "--no-progress",
    ])  # fmt: skip
    assert code == 2
    assert "lower the confidence threshold" in capsys.readouterr().err
    assert not out.exists() or list(out.iterdir()) == []


def test_tile_grids_take_n2_fewer_items_per_explainer_pass(workdir, tmp_path, monkeypatch):
    """A 2×2 tile grid has 4× the input's pixels, so each explainer pass takes 4× fewer
    (image, class) pairs (unscaled, 3×3 tiles of 128 px images took 10–18 GB on CPU); the
    scores do not depend on it."""
    from scouter.explain.posthoc import SaliencyExplainer

    passes: list[tuple[int, tuple[int, int]]] = []
    explain = SaliencyExplainer.explain

    def spy(self, model, images, targets):
        passes.append((images.shape[0], tuple(images.shape[-2:])))
        return explain(self, model, images, targets)

    monkeypatch.setattr(SaliencyExplainer, "explain", spy)
    grids_file = tmp_path / "grids.json"

    def run(name, geometry, batch_size):
        passes.clear()
        results = evaluate(_options(
            workdir, "fc", tmp_path / name, explainers=["saliency"], gridpg_count=4,
            gridpg_grids=grids_file, gridpg_geometry=geometry,
            explainer_settings={"saliency": {"batch_size": batch_size}},
        ))  # fmt: skip
        grid_passes = [
            count for count, size in passes if size == tuple(results["gridpg"]["grid_image_size"])
        ]
        values = [float(r["saliency/gridpg"]) for r in _cells(_rows(tmp_path / name))]
        return results, grid_passes, values

    # data batches of 8 cells: 2 grids, 8 pairs; 8 // 4 = 2 pairs per 64 px pass
    tiled, tiled_passes, tiled_values = run("tile", "tile", 8)
    assert tiled["gridpg"]["grid_image_size"] == [64, 64]
    assert max(tiled_passes) == 2 and sum(tiled_passes) == 16
    assert tiled["explanations"]["saliency"]["metrics"]["gridpg"]["settings"]["batch_size"] == 2
    _, one_passes, one_values = run("tile_one", "tile", 1)
    assert max(one_passes) == 1 and sum(one_passes) == 16
    # equal up to float noise of the pass size, which a gradient can carry across a ReLU or
    # max-pool tie (at most 5e-4 here, in one grid)
    assert one_values == pytest.approx(tiled_values, abs=2e-3)
    # rescaled grids have the input's pixels: passes keep the explainer's batch size
    rescaled, rescaled_passes, _ = run("rescale", "rescale", 8)
    assert max(rescaled_passes) == 8 and sum(rescaled_passes) == 16
    assert rescaled["explanations"]["saliency"]["metrics"]["gridpg"]["settings"]["batch_size"] == 8
