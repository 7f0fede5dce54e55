"""evaluate.py end to end on a tiny composites set: results files, report in Chromium, bad input."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from scouter.checkpoints import save_model
from scouter.evaluation import EvaluationError, EvaluationOptions, evaluate, main, prepare, run
from scouter.models.classifier import ModelConfig, build_classifier
from tests.data.conftest import write_idx_dataset

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """Tiny Fashion-MNIST IDX files, a composites config and SCOUTER+/−/FC checkpoints (K=3)."""
    root = tmp_path_factory.mktemp("evaluate")
    fashion = root / "fashion"
    write_idx_dataset(fashion, {"train": 60, "t10k": 30})
    config = {
        "model": {"backbone": "test_resnet", "head": "xslot", "sign": 1},
        "data": {
            "dataset": "composites",
            "root": str(fashion),
            "image_size": 64,
            "batch_size": 4,
            "num_workers": 0,
            "dataset_options": {"num_samples": 12, "num_classes": 3},
        },
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    for name, kwargs in (
        ("pos", {}),
        ("neg", {"sign": -1}),
        ("fc", {"head": "fc"}),
        ("five", {"num_classes": 5}),
    ):
        torch.manual_seed(0)
        config = ModelConfig(**{"backbone": "test_resnet", "num_classes": 3, **kwargs})
        save_model(build_classifier(config), root / f"{name}.safetensors")
    return root


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def screenshot(html: Path, shot: Path, profile: Path) -> np.ndarray:
    subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}", f"--screenshot={shot}",
            "--window-size=1400,3000", html.resolve().as_uri(),
        ],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return np.asarray(Image.open(shot).convert("RGB")).astype(int)


def test_end_to_end_writes_json_csv_and_a_report_that_renders(workdir, tmp_path, capsys):
    out, export = tmp_path / "out", tmp_path / "report"
    code = main(
        [
            "--checkpoint", str(workdir / "pos.safetensors"),
            "--config", str(workdir / "config.yaml"),
            "--explainers", "slot,gradcam",
            "--limit", "4",
            "--out", str(out),
            "--export", str(export),
            "--num-images", "3",
            "--no-progress",
        ]
    )  # fmt: skip
    assert code == 0
    assert "wrote results.json" in capsys.readouterr().out

    results = json.loads((out / "results.json").read_text())
    checkpoint = workdir / "pos.safetensors"
    assert results["checkpoint"]["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert results["config"]["data"]["dataset"] == "composites"
    assert results["dataset"]["split"] == "test" and results["num_images"] == 4
    assert results["explained_class"] == "target"
    assert set(results["explanations"]) == {"slot", "gradcam"}
    for doc in results["explanations"].values():
        assert set(doc["metrics"]) == {"area", "precision", "insertion", "deletion"}
        for metric in doc["metrics"].values():
            assert {"value", "nan_count", "settings", "higher_is_better"} <= set(metric)
    assert results["explanations"]["gradcam"]["settings"] == {"batch_size": 64, "layer": None}

    rows = read_csv(out / "per_image.csv")
    assert len(rows) == 4
    assert list(rows[0])[:4] == ["id", "label", "explained_class", "prediction"]
    assert all(r["explained_class"] == r["label"] for r in rows)  # SCOUTER+: ground truth
    accuracy = np.mean([r["label"] == r["prediction"] for r in rows])
    assert results["metrics"]["accuracy"]["value"] == pytest.approx(accuracy)
    for method in ("slot", "gradcam"):
        for metric in ("area", "insertion", "deletion"):
            values = [float(r[f"{method}/{metric}"]) for r in rows]
            expected = results["explanations"][method]["metrics"][metric]["value"]
            assert np.mean(values) == pytest.approx(expected, rel=1e-5)

    # evaluate keeps what the report plots and tabulates: std, N and the mean curves
    from scouter.metrics import curve_auc

    for method in ("slot", "gradcam"):
        doc = results["explanations"][method]["metrics"]
        for metric in ("area", "insertion", "deletion"):
            values = [float(r[f"{method}/{metric}"]) for r in rows]
            assert doc[metric]["count"] == 4
            assert doc[metric]["std"] == pytest.approx(np.std(values), rel=1e-4, abs=1e-7)
        for metric in ("insertion", "deletion"):
            curve = torch.tensor(doc[metric]["mean_curve"], dtype=torch.float64)
            assert len(curve) == 216 + 1  # N = ceil(64·64 / 19) steps of ceil(64·64 / 224) = 19
            # the AUC of the mean curve is the mean AUC (the trapezoid rule is linear)
            assert float(curve_auc(curve)) == pytest.approx(doc[metric]["value"], rel=1e-5)
        assert "mean_curve" not in doc["area"]

    html = export / "report.html"
    assert html.is_file() and (export / "grid.png").is_file()
    assert len(list((export / "overlays").glob("*.png"))) == 3 * 2
    text = html.read_text()
    assert "src='http" not in text and "<script" not in text  # self-contained
    cards = [c.split("</section>")[0] for c in text.split("<section class='image-card'>")[1:]]
    assert len(cards) == 3 and all(card.count("<img") == 3 for card in cards)  # input + 2
    assert all(re.search(r"\(p = 0\.\d{3}\)", card) for card in cards)  # predicted probability
    assert "class='explainer-metrics'" in text and "class='plot curves'" in text
    # SCOUTER: every class's map (K = 3) of the shown images, from the slot explainer
    strips = text.split("<section class='image-card class-maps'>")[1:]
    strips = [strip.split("</section>")[0] for strip in strips]
    assert len(strips) == 3 and all(strip.count("<img") == 1 + 3 for strip in strips)
    assert "positive explanation" in text
    if CHROMIUM is None:
        pytest.skip("chromium not installed: report rendering not checked")
    pixels = screenshot(html, tmp_path / "shot.png", tmp_path / "profile")
    r, b = pixels[..., 0], pixels[..., 2]
    # The jet overlays put saturated colours on screen; text and tables are gray.
    saturated = (pixels.max(-1) - pixels.min(-1)) > 120
    assert saturated.sum() > 3000
    assert ((b > 150) & (r < 80)).sum() > 200 or ((r > 150) & (b < 80)).sum() > 200
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 500  # photographs, not blank boxes


def test_report_of_an_fc_model_has_no_every_class_maps(workdir, tmp_path):
    export = tmp_path / "report"
    evaluate(
        EvaluationOptions(
            checkpoint=workdir / "fc.safetensors", config=workdir / "config.yaml",
            metrics=["accuracy", "area"], limit=2, export=export, num_images=2, progress=False,
        )
    )  # fmt: skip
    text = (export / "report.html").read_text()
    assert text.count("<section class='image-card'>") == 2 and "class-maps" not in text
    assert "class='explainer-metrics'" in text and "plot curves" not in text  # no curves asked


def test_scouter_minus_explains_the_least_similar_class(workdir, tmp_path):
    from scouter.checkpoints import load_model
    from scouter.metrics import cosine_similarity_matrix, least_similar_classes

    results = evaluate(
        EvaluationOptions(
            checkpoint=workdir / "neg.safetensors",
            config=workdir / "config.yaml",
            metrics=["accuracy", "area"],
            limit=4,
            out=tmp_path,
            progress=False,
        )
    )
    assert results["explained_class"] == "least_similar"
    model = load_model(workdir / "neg.safetensors")
    table = least_similar_classes(cosine_similarity_matrix(model.head.initial_slots[0].detach()))
    rows = read_csv(tmp_path / "per_image.csv")
    assert [int(r["explained_class"]) for r in rows] == [int(table[int(r["label"])]) for r in rows]


def test_bare_state_dict_takes_its_architecture_from_the_config(workdir, tmp_path):
    from scouter.checkpoints import load_model

    bare = tmp_path / "bare.pth"
    torch.save(load_model(workdir / "pos.safetensors").state_dict(), bare)
    results = evaluate(
        EvaluationOptions(
            checkpoint=bare, config=workdir / "config.yaml", metrics=["accuracy"], limit=2,
            out=tmp_path / "out", progress=False,
        )
    )  # fmt: skip
    assert results["checkpoint"]["model_config"]["backbone"] == "test_resnet"
    assert results["num_images"] == 2


def _options(workdir: Path, tmp_path: Path, **overrides) -> EvaluationOptions:
    values = dict(
        checkpoint=workdir / "pos.safetensors",
        config=workdir / "config.yaml",
        out=tmp_path / "out",
        progress=False,
    )
    values.update(overrides)
    return EvaluationOptions(**values)


def test_class_count_mismatch_is_reported_before_any_work(workdir, tmp_path):
    with pytest.raises(EvaluationError, match="predicts 5 classes but dataset 'composites'.* 3"):
        prepare(_options(workdir, tmp_path, checkpoint=workdir / "five.safetensors"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            {"explainers": ["slot", "gradkam"]},
            r"unknown explainer 'gradkam'.*valid names:.*gradcam",
        ),
        ({"metrics": ["area", "iauc"]}, r"unknown metric\(s\) \['iauc'\].*insertion"),
        ({"explainer_settings": {"ig": {"steps": 4}}, "explainers": ["slot"]}, r"\['ig'\]"),
        ({"explainers": ["ig"], "explainer_settings": {"ig": {"n_steps": 4}}}, "valid settings"),
    ],
)
def test_bad_names_fail_before_the_checkpoint_is_even_read(workdir, tmp_path, overrides, message):
    # The checkpoint does not exist: the name check must come first.
    options = _options(workdir, tmp_path, checkpoint=tmp_path / "missing.ckpt", **overrides)
    with pytest.raises(EvaluationError, match=message):
        prepare(options)


def test_output_directory_that_is_a_file_is_rejected(workdir, tmp_path):
    target = tmp_path / "results.txt"
    target.write_text("not a folder")
    with pytest.raises(EvaluationError, match="is a file, not a directory"):
        prepare(_options(workdir, tmp_path, out=target))
    assert target.read_text() == "not a folder"


def test_explainer_that_does_not_fit_the_model_is_rejected(workdir, tmp_path):
    with pytest.raises(EvaluationError, match="'slot' needs a SCOUTER checkpoint"):
        prepare(_options(workdir, tmp_path, checkpoint=workdir / "fc.safetensors",
                         explainers=["slot"]))  # fmt: skip


def test_slot_contribution_on_an_fc_checkpoint_fails_before_any_work(
    workdir, tmp_path, capsys, monkeypatch
):
    # Its `requires` ("xslot_head") is checked in preparation: evaluate.py exits 2 naming the
    # problem and the fix, before a single image is explained (run is never reached).
    monkeypatch.setattr("scouter.evaluation.cli.run", _fail_if_reached)
    fc = workdir / "fc.safetensors"
    with pytest.raises(EvaluationError) as error:
        prepare(_options(workdir, tmp_path, checkpoint=fc, explainers=["slot_contribution"]))
    assert str(error.value).startswith(
        "explainer 'slot_contribution' needs a SCOUTER checkpoint (xslot head), but this is an FC "
        "model: for FC models use a post-hoc explainer such as 'gradcam'"
    )
    code = main(
        [
            "--checkpoint", str(fc),
            "--config", str(workdir / "config.yaml"),
            "--explainers", "gradcam,slot_contribution",
            "--out", str(tmp_path / "out"),
            "--no-progress",
        ]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "'slot_contribution' needs a SCOUTER checkpoint" in err and "'gradcam'" in err
    assert not (tmp_path / "out").exists()


def test_command_line_reports_user_errors_with_exit_code_2(workdir, tmp_path):
    target = tmp_path / "file"
    target.write_text("")
    completed = subprocess.run(
        [
            sys.executable, str(REPO / "evaluate.py"),
            "--checkpoint", str(workdir / "pos.safetensors"),
            "--config", str(workdir / "config.yaml"),
            "--out", str(target),
        ],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert completed.returncode == 2
    assert "evaluate.py: error: --out" in completed.stderr and "is a file" in completed.stderr


def _fail_if_reached(*args, **kwargs):
    raise AssertionError("the checkpoint was loaded although the output folder is unusable")


@pytest.mark.parametrize("flag", ["out", "export"])
def test_output_folder_under_a_file_fails_before_any_work(workdir, tmp_path, monkeypatch, flag):
    (tmp_path / "afile").write_text("a file, not a folder")
    monkeypatch.setattr("scouter.evaluation.preparation._load_checkpoint", _fail_if_reached)
    options = _options(workdir, tmp_path, **{flag: tmp_path / "afile" / "sub" / "out"})
    with pytest.raises(
        EvaluationError, match=rf"--{flag} .*afile.* cannot be created: .* is a file"
    ):
        prepare(options)
    assert (tmp_path / "afile").read_text() == "a file, not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_fails_before_any_work(workdir, tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    monkeypatch.setattr("scouter.evaluation.preparation._load_checkpoint", _fail_if_reached)
    with pytest.raises(EvaluationError, match=r"--export .*locked.* is not writable"):
        prepare(_options(workdir, tmp_path, export=locked / "report"))


def test_permission_denied_is_reported_as_not_writable_and_left_as_found(
    workdir, tmp_path, monkeypatch
):
    # The read-only case, also where tests run as root (which writes anywhere).
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("scouter.evaluation.preparation.tempfile.mkstemp", denied)
    monkeypatch.setattr("scouter.evaluation.preparation._load_checkpoint", _fail_if_reached)
    with pytest.raises(EvaluationError, match=r"--out .*new.* is not writable \(Permission denied"):
        prepare(_options(workdir, tmp_path, out=tmp_path / "new" / "out"))
    assert not (tmp_path / "new").exists()


def test_output_folders_are_tested_then_left_as_found(workdir, tmp_path):
    out = tmp_path / "new" / "deeper" / "out"
    prepared = prepare(_options(workdir, tmp_path, out=out, limit=1))
    assert not (tmp_path / "new").exists()  # created by the write test, then removed
    assert prepared.options.out == out


def test_unwritable_export_on_the_command_line_exits_2_before_evaluating(workdir, tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    code = main(
        [
            "--checkpoint", str(workdir / "pos.safetensors"),
            "--config", str(workdir / "config.yaml"),
            "--out", str(tmp_path / "out"),
            "--export", str(tmp_path / "afile" / "report"),
            "--no-progress",
        ]
    )  # fmt: skip
    assert code == 2
    assert "evaluate.py: error: --export" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing evaluated, nothing written


@pytest.mark.parametrize("value", [0, -3])
def test_num_images_below_one_is_rejected_up_front(workdir, tmp_path, capsys, value):
    code = main(
        [
            "--checkpoint", str(workdir / "pos.safetensors"),
            "--config", str(workdir / "config.yaml"),
            "--limit", "2",
            "--out", str(tmp_path / "out"),
            "--export", str(tmp_path / "report"),
            "--num-images", str(value),
            "--no-progress",
        ]
    )  # fmt: skip
    assert code == 2
    assert f"--num-images, the images shown in the export) must be >= 1, got {value}" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "out").exists() and not (tmp_path / "report").exists()


@pytest.mark.parametrize(
    "explainer, setting, message",
    [
        ("ig", "ig.steps=0", "'ig': steps must be an integer >= 1"),
        ("smoothgrad", "smoothgrad.samples=0", "'smoothgrad': samples must be an integer >= 1"),
        ("occlusion", "occlusion.window=0", "'occlusion': window must be an integer >= 1"),
        ("rise", "rise.masks=0", "'rise': masks must be an integer >= 1"),
        ("blur_ig", "blur_ig.steps=-1", "'blur_ig': steps must be an integer >= 1"),
    ],
)
def test_bad_explainer_settings_exit_2_naming_the_setting(
    workdir, tmp_path, capsys, explainer, setting, message
):
    code = main(
        [
            "--checkpoint", str(workdir / "pos.safetensors"),
            "--config", str(workdir / "config.yaml"),
            "--explainers", explainer,
            "--explainer-setting", setting,
            "--limit", "1",
            "--out", str(tmp_path / "out"),
            "--no-progress",
        ]
    )  # fmt: skip
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_folder_as_checkpoint_is_named_with_the_checkpoints_inside(workdir, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(workdir / "pos.safetensors", run / "checkpoints" / "pos.safetensors")
    with pytest.raises(
        EvaluationError,
        match=r"'.*run' is a directory: pass a checkpoint file \(.ckpt, .pth or a .safetensors "
        r"export\); checkpoint files inside: .*checkpoints/pos\.safetensors",
    ):
        prepare(_options(workdir, tmp_path, checkpoint=run))
    (tmp_path / "empty").mkdir()
    with pytest.raises(EvaluationError, match="is a directory.*holds no .ckpt, .pth"):
        prepare(_options(workdir, tmp_path, checkpoint=tmp_path / "empty"))


def test_a_failed_results_write_keeps_the_previous_runs_pair_and_no_temporary_files(
    workdir, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    evaluate(_options(workdir, tmp_path, metrics=["accuracy"], limit=2))
    before = {name: (out / name).read_bytes() for name in ("results.json", "per_image.csv")}
    prepared = prepare(_options(workdir, tmp_path, metrics=["accuracy"], limit=3))
    fsync, calls = os.fsync, []

    def fail_on_the_second_file(fd):
        calls.append(fd)
        if len(calls) == 2:  # results.json is on disk; the disk fills up during per_image.csv
            raise OSError(28, "No space left on device")
        return fsync(fd)

    monkeypatch.setattr(os, "fsync", fail_on_the_second_file)
    with pytest.raises(OSError, match="No space left"):
        run(prepared)
    monkeypatch.undo()
    assert {name: (out / name).read_bytes() for name in before} == before
    assert sorted(os.listdir(out)) == [".results", "latest", "per_image.csv", "results.json"]
    assert len(os.listdir(out / ".results")) == 1  # the failed run's private folder is gone


def test_every_class_strips_follow_the_shown_images_and_cap_many_classes(workdir, tmp_path):
    from scouter.evaluation.outputs import MAX_STRIP_CLASSES, _class_map_entries

    export = tmp_path / "report"
    evaluate(
        EvaluationOptions(
            checkpoint=workdir / "pos.safetensors", config=workdir / "config.yaml",
            metrics=["accuracy"], limit=4, export=export, num_images=2, progress=False,
        )
    )  # fmt: skip
    text = (export / "report.html").read_text()
    assert text.count("<section class='image-card class-maps'>") == 2  # not the whole batch of 4

    # Many classes: the highest-scoring ones plus the true and explained class, jointly scaled.
    k = 30
    logits = torch.arange(k, dtype=torch.float32)[None]  # class 29 scores highest
    maps = torch.zeros(1, k, 4, 4)
    maps[0, 0] = 1.0  # the true class holds all the attention: bright; every other map dark
    entries = _class_map_entries(
        {"class_maps": [maps]},
        [{"id": "a", "label": 0, "prediction": 29, "explained_class": 3}],
        [torch.zeros(3, 8, 8)],
        logits,
        [f"c{i}" for i in range(k)],
    )
    [entry] = entries
    shown = [c["name"] for c in entry["classes"]]
    assert len(shown) == MAX_STRIP_CLASSES and {"c0", "c3", "c29"} <= set(shown)
    assert shown == [f"c{i}" for i in sorted([0, 3, *range(k - MAX_STRIP_CLASSES + 2, k)])]
    assert f"{MAX_STRIP_CLASSES} of {k} classes shown" in entry["note"]
    overlays = {c["name"]: c["overlay"] for c in entry["classes"]}
    # joint scale: class 0 is at the top of the scale (red), the others at the bottom (blue)
    assert overlays["c0"][..., 0].mean() > overlays["c29"][..., 0].mean() + 50
    assert overlays["c29"][..., 2].mean() > overlays["c29"][..., 0].mean() + 20
