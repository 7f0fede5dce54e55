"""evaluate.py refuses what would look good but mean nothing: NaN weights / logits / maps, precision
without regions, misspelled model keys (scouter/evaluation/checks.py)."""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import pytest
import torch
import yaml

from scouter.checkpoints import save_model
from scouter.evaluation import EvaluationError, EvaluationOptions, main, prepare, run
from scouter.evaluation.checks import TRAINING_ONLY_KEYS, check_model_section
from scouter.evaluation.preparation import _section
from scouter.models.classifier import ModelConfig, build_classifier
from tests.data.conftest import write_idx_dataset

REPO = Path(__file__).resolve().parents[2]
MODEL = {"backbone": "test_resnet", "head": "xslot", "sign": 1}


def _data(fashion: Path, **options) -> dict:
    return {
        "dataset": "fashion_mnist",
        "root": str(fashion),
        "image_size": 32,
        "batch_size": 4,
        "num_workers": 0,
        "dataset_options": {"num_classes": 3, **options},
    }


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """Tiny Fashion-MNIST IDX files, configs with and without object masks, checkpoints (K=3)."""
    root = tmp_path_factory.mktemp("evaluation_checks")
    fashion = root / "fashion"
    write_idx_dataset(fashion, {"train": 30, "t10k": 30})
    for name, data in (("plain", _data(fashion)), ("masks", _data(fashion, object_masks=True))):
        (root / f"{name}.yaml").write_text(yaml.safe_dump({"model": MODEL, "data": data}))
    torch.manual_seed(0)
    model = build_classifier(ModelConfig(backbone="test_resnet", num_classes=3))
    save_model(model, root / "pos.safetensors")
    torch.save(model.state_dict(), root / "bare.pth")
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(float("nan"))
    save_model(model, root / "nan.safetensors")
    return root


def _options(workdir: Path, tmp_path: Path, **overrides) -> EvaluationOptions:
    values = dict(
        checkpoint=workdir / "pos.safetensors",
        config=workdir / "plain.yaml",
        out=tmp_path / "out",
        limit=8,
        progress=False,
    )
    values.update(overrides)
    return EvaluationOptions(**values)


def _fail_if_reached(*args, **kwargs):
    raise AssertionError("the checkpoint was loaded although the request cannot be fulfilled")


# ------------------------------------------------------------------------ non-finite values (5)


def test_a_checkpoint_of_nan_weights_is_refused_naming_it(workdir, tmp_path, capsys):
    code = main(
        [
            "--checkpoint", str(workdir / "nan.safetensors"), "--config", str(workdir / "plain.yaml"),
            "--out", str(tmp_path / "out"), "--no-progress",
        ]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert f"checkpoint '{workdir / 'nan.safetensors'}' has non-finite (NaN or inf) values" in err
    assert "evaluate an earlier checkpoint" in err
    assert not (tmp_path / "out").exists()


def test_non_finite_logits_stop_at_the_batch_naming_its_images(workdir, tmp_path, capsys):
    prepared = prepare(_options(workdir, tmp_path, metrics=["accuracy"], explainers=[]))
    calls = []  # one forward per batch: no explainer

    def poison_second_batch(module, args):
        calls.append(1)
        if len(calls) == 2:  # batch 1: its second image overflows
            images = args[0].clone()
            images[1] = float("nan")
            return (images,)
        return None

    prepared.model.register_forward_pre_hook(poison_second_batch)
    ids = [prepared.dataset[i]["id"] for i in range(8)]
    with pytest.raises(
        EvaluationError,
        match=rf"the logits of batch 1 are non-finite \(NaN or inf\) for 1 image\(s\) "
        rf"\({ids[5]}\) with checkpoint '.*pos.safetensors'",
    ):
        run(prepared)
    assert not (tmp_path / "out").exists()  # nothing written


def test_non_finite_explanation_maps_stop_the_evaluation(workdir, tmp_path, monkeypatch):
    prepared = prepare(_options(workdir, tmp_path, metrics=["area"], explainers=["slot"]))
    explainer_type = type(prepared.explainers["slot"])
    explain = explainer_type.__call__

    def nan_maps(self, *args, **kwargs):
        explanation = explain(self, *args, **kwargs)
        explanation.maps[0] = float("nan")
        return explanation

    monkeypatch.setattr(explainer_type, "__call__", nan_maps)
    with pytest.raises(EvaluationError, match="the 'slot' explanation maps of batch 0 are non-fin"):
        run(prepared)


# ------------------------------------------------------------ precision needs boxes or masks (6)


def test_default_metrics_leave_precision_out_without_regions_and_say_so(workdir, tmp_path, capsys):
    code = main(
        [
            "--checkpoint", str(workdir / "pos.safetensors"), "--config", str(workdir / "plain.yaml"),
            "--limit", "2", "--out", str(tmp_path / "out"), "--no-progress",
        ]
    )  # fmt: skip
    assert code == 0
    captured = capsys.readouterr()
    notes = [line for line in captured.err.splitlines() if "evaluate.py: note:" in line]
    assert notes == [
        "evaluate.py: note: precision left out of the default metrics: dataset 'fashion_mnist' (as "
        "configured) has no boxes or masks; set data.dataset_options.object_masks: true in the "
        "config to give it masks"
    ]
    assert "precision" not in captured.out
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(results["explanations"]["slot"]["metrics"]) == {"area", "insertion", "deletion"}


def test_explicit_precision_without_regions_fails_before_the_checkpoint_is_read(
    workdir, tmp_path, monkeypatch
):
    monkeypatch.setattr("scouter.evaluation.preparation._load_checkpoint", _fail_if_reached)
    with pytest.raises(
        EvaluationError,
        match=r"metric 'precision' needs boxes or masks, but dataset 'fashion_mnist' .* has "
        r"none; set data.dataset_options.object_masks: true",
    ):
        prepare(_options(workdir, tmp_path, metrics=["area", "precision"]))


def test_with_object_masks_precision_is_a_default_metric_again(workdir, tmp_path):
    prepared = prepare(_options(workdir, tmp_path, config=workdir / "masks.yaml", limit=2))
    assert "precision" in prepared.metrics and not prepared.notes


# ------------------------------------------------------------------ misspelled model keys (8)


def test_misspelled_model_key_with_a_bare_state_dict_is_an_error(workdir, tmp_path, monkeypatch):
    config = {"model": {**MODEL, "attention_nrom": "abs"}, "data": _data(workdir / "fashion")}
    monkeypatch.setattr("scouter.evaluation.preparation._load_checkpoint", _fail_if_reached)
    with pytest.raises(
        EvaluationError,
        match=r"unknown key\(s\) in the config's model section: 'attention_nrom' \(did you mean "
        r"'attention_norm'\?\); valid keys: .*attention_norm, backbone,",
    ):
        prepare(_options(workdir, tmp_path, checkpoint=workdir / "bare.pth", config=config))


def test_model_keys_known_to_evaluate_are_those_train_py_accepts():
    from scouter.training.module import ScouterModule

    accepted = set(inspect.signature(ScouterModule.__init__).parameters) - {"self"}
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    assert set(TRAINING_ONLY_KEYS) == accepted - model_fields
    for path in sorted((REPO / "configs").glob("*/*.yaml")):
        if path.parent.name == "stylex":  # stylex.py's configs: not classifiers evaluate.py reads
            continue
        check_model_section(_section(yaml.safe_load(path.read_text()), "model"))  # no error
