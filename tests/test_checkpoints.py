"""Checkpoints: safetensors round trip, original SCOUTER conversion, safe loading, named errors."""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import pickle
import re

import numpy as np
import pytest
import timm
import torch

import scouter
from scouter.checkpoints import (
    CheckpointError,
    CheckpointMismatchError,
    UnsafeCheckpointError,
    backbone_state_from_checkpoint,
    save_model,
)
from scouter.models.classifier import ModelConfig, ModelConfigError, build_classifier
from scouter.models.position import sine_position_encoding
from tests.conftest import oracle_files


def original_args(**overrides) -> argparse.Namespace:
    """An ``args`` namespace as the original train.py stores it.

    Its defaults are the reference's (docs/method.md#original-checkpoints).
    """
    values = dict(
        model="resnet18",
        dataset="ImageNet",
        channel=512,
        num_classes=10,
        use_slot=True,
        slots_per_class=1,
        loss_status=1,
        power=2,
        to_k_layer=1,
        lambda_value=1.0,
        hidden_dim=64,
        img_size=260,
        pre_trained=True,
        use_pre=False,
        freeze_layers=2,
        lr=1e-4,
        output_dir="saved_model/",
    )
    values.update(overrides)
    return argparse.Namespace(**values)


def random_original_head(num_slots: int, channels: int, to_k_layers: int, dim: int = 64) -> dict:
    """Head weights under the original key names (to_q included, as the original saves it)."""
    g = torch.Generator().manual_seed(num_slots * 7 + to_k_layers)
    state = {
        "conv1x1.weight": torch.randn(dim, channels, 1, 1, generator=g) * 0.05,
        "conv1x1.bias": torch.randn(dim, generator=g) * 0.05,
        "slot.initial_slots": torch.randn(1, num_slots, dim, generator=g),
        "slot.to_q.0.weight": torch.randn(dim, dim, generator=g),
        "slot.to_q.0.bias": torch.randn(dim, generator=g),
        "slot.gru.weight_ih_l0": torch.randn(3 * dim, dim, generator=g) * 0.1,
        "slot.gru.weight_hh_l0": torch.randn(3 * dim, dim, generator=g) * 0.1,
        "slot.gru.bias_ih_l0": torch.randn(3 * dim, generator=g) * 0.1,
        "slot.gru.bias_hh_l0": torch.randn(3 * dim, generator=g) * 0.1,
    }
    for i in range(to_k_layers):
        state[f"slot.to_k.{2 * i}.weight"] = torch.randn(dim, dim, generator=g) * 0.1
        state[f"slot.to_k.{2 * i}.bias"] = torch.randn(dim, generator=g) * 0.1
    return state


def head_for_original_checkpoint() -> tuple[dict, int]:
    """Head weights from the oracle vectors when present (resnet18, K=10, s=1), else random."""
    for path in oracle_files():
        if path.stem == "r18_s1_pos_p1_k1":
            return torch.load(path, weights_only=True)["head_state_dict"], 1
    return random_original_head(10, 512, 1), 1


def unconverted_forward(backbone_state: dict, head: dict, args: argparse.Namespace, images):
    """The original model's computation on original key names, without our converter or classes."""
    if str(args.dataset).upper() == "MNIST":
        net = timm.create_model(args.model, num_classes=0, global_pool="", in_chans=1)
        net.conv1 = torch.nn.Conv2d(1, 64, 3, stride=2, padding=1, bias=False)
    else:
        net = timm.create_model(args.model, num_classes=0, global_pool="")
    net.load_state_dict(backbone_state)
    features = net.eval().forward_features(images)
    if not args.use_slot:
        return torch.nn.functional.linear(features.mean((2, 3)), head["weight"], head["bias"]), None
    dim = args.hidden_dim
    z = torch.relu(
        torch.nn.functional.conv2d(features, head["conv1x1.weight"], head["conv1x1.bias"])
    )
    b, _, h, w = z.shape
    x = (z + sine_position_encoding(h, w, dim)).flatten(2).transpose(1, 2)
    v = z.flatten(2).transpose(1, 2)
    k = x
    for i in range(args.to_k_layer):
        if i:
            k = torch.relu(k)
        k = torch.nn.functional.linear(
            k, head[f"slot.to_k.{2 * i}.weight"], head[f"slot.to_k.{2 * i}.bias"]
        )
    gru = torch.nn.GRU(dim, dim)
    gru.load_state_dict(
        {n.removeprefix("slot.gru."): t for n, t in head.items() if n.startswith("slot.gru.")}
    )
    slots = head["slot.initial_slots"].expand(b, -1, -1)
    for _ in range(3):
        dots = torch.einsum("bid,bjd->bij", slots, k) / math.sqrt(dim)
        dots = dots / dots.sum(2, keepdim=True) * dots.sum((1, 2), keepdim=True)
        attn = torch.sigmoid(dots)
        updates = torch.einsum("bjd,bij->bid", v, attn) / dim
        slots = gru(updates.reshape(1, -1, dim), slots.reshape(1, -1, dim))[0].view(b, -1, dim)
    s = args.slots_per_class
    logits = args.loss_status * updates.view(b, args.num_classes, s, dim).sum((2, 3))
    return logits, attn.view(b, args.num_classes, s, h, w).sum(2)


def write_original_checkpoint(path, args, head, seed=0, fc=False):
    """A train.py-format file: {model, optimizer, lr_scheduler, epoch, args}."""
    torch.manual_seed(seed)
    if str(args.dataset).upper() == "MNIST":
        net = timm.create_model(args.model, num_classes=args.num_classes)
        net.conv1 = torch.nn.Conv2d(1, 64, 3, stride=2, padding=1, bias=False)
    else:
        net = timm.create_model(args.model, num_classes=args.num_classes)
    # Non-trivial BN statistics so a wrong mapping would show.
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    backbone = {k: v for k, v in net.state_dict().items() if fc or not k.startswith("fc.")}
    state = {f"backbone.{k}": v for k, v in backbone.items()}
    if not fc:
        state.update(head)
    params = [torch.nn.Parameter(v.clone()) for v in state.values() if v.is_floating_point()]
    optimizer = torch.optim.AdamW(params[:3], lr=1e-4)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 70)
    torch.save(
        {
            "model": state,
            "optimizer": optimizer.state_dict(),
            "lr_scheduler": scheduler.state_dict(),
            "epoch": 3,
            "args": args,
        },
        path,
    )
    return {k: v for k, v in backbone.items() if not k.startswith("fc.")}, (
        {"weight": backbone["fc.weight"], "bias": backbone["fc.bias"]} if fc else head
    )


def test_original_train_checkpoint_loads_with_identical_outputs(tmp_path):
    head, _ = head_for_original_checkpoint()
    args = original_args()
    path = tmp_path / "ImageNet_use_slot_checkpoint.pth"
    backbone_state, head_state = write_original_checkpoint(path, args, head)
    model = scouter.load_model(path)
    assert not model.training
    assert model.config.variant == "scouter_pos" and model.config.num_classes == 10
    images = torch.rand(2, 3, 160, 160, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(images)
        logits, attention = unconverted_forward(backbone_state, head_state, args, images)
    torch.testing.assert_close(out.logits, logits, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(out.attention, attention, rtol=1e-4, atol=1e-5)
    assert out.attention.shape == (2, 10, 5, 5)


def test_original_mnist_negative_checkpoint_with_two_slots(tmp_path):
    args = original_args(dataset="MNIST", slots_per_class=2, loss_status=-1, lambda_value=1.5)
    head = random_original_head(20, 512, 1)
    path = tmp_path / "MNIST_use_slot_negative_checkpoint.pth"
    backbone_state, head_state = write_original_checkpoint(path, args, head)
    model = scouter.load_model(path)
    assert (model.config.in_chans, model.config.stem, model.config.sign) == (1, "mnist", -1)
    images = torch.rand(2, 1, 128, 128, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = model(images)
        logits, attention = unconverted_forward(backbone_state, head_state, args, images)
    torch.testing.assert_close(out.logits, logits, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(out.attention, attention, rtol=1e-4, atol=1e-5)
    assert (out.logits <= 0).all()


def test_original_fc_checkpoint(tmp_path):
    args = original_args(use_slot=False, freeze_layers=0)
    path = tmp_path / "ImageNet_no_slot_checkpoint.pth"
    backbone_state, fc = write_original_checkpoint(path, args, {}, fc=True)
    model = scouter.load_model(path)
    assert model.config.head == "fc"
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        logits, _ = unconverted_forward(backbone_state, fc, args, images)
        torch.testing.assert_close(model(images).logits, logits)


def test_original_resnest26d_keys_map_onto_timm(tmp_path):
    args = original_args(model="resnest26d", channel=2048, to_k_layer=3)
    head = random_original_head(10, 2048, 3)
    path = tmp_path / "rs26d.pth"
    write_original_checkpoint(path, args, head)
    model = scouter.load_model(path)  # strict: every key mapped, none left over
    assert model.config.to_k_layers == 3 and model.config.backbone == "resnest26d"


def test_bare_original_state_dict_with_options(tmp_path):
    head = random_original_head(10, 512, 1)
    path = tmp_path / "bare.pth"
    args = original_args()
    write_original_checkpoint(path, args, head)
    state = torch.load(path, weights_only=False)["model"]
    torch.save(state, tmp_path / "bare_state.pth")
    with pytest.raises(CheckpointError, match="without a config"):
        scouter.load_model(tmp_path / "bare_state.pth")
    model = scouter.load_model(
        tmp_path / "bare_state.pth", backbone="resnet18", num_classes=10, slots_per_class=1, sign=-1
    )
    assert model.config.sign == -1
    assert model.config.attention_norm == "reference"  # the paper's, not the training default


def test_original_checkpoints_and_paper_recipes_keep_the_reference_normalisation(tmp_path):
    from scouter.models.classifier import TRAINING_ATTENTION_NORM, ModelConfig

    assert TRAINING_ATTENTION_NORM != "reference"
    assert (
        ModelConfig(backbone="test_resnet", num_classes=3).attention_norm == TRAINING_ATTENTION_NORM
    )
    head, _ = head_for_original_checkpoint()
    path = tmp_path / "ImageNet_use_slot_checkpoint.pth"
    write_original_checkpoint(path, original_args(), head)
    assert scouter.load_model(path).config.attention_norm == "reference"
    # Overridable, as every option.
    assert scouter.load_model(path, attention_norm="abs").config.attention_norm == "abs"
    for name in scouter.list_models("scouter_*"):
        norm = scouter.models.zoo.get_model_entry(name).config.attention_norm
        paper = name.endswith(("_imagenet100", "_cub200", "_resnet18_mnist"))
        assert norm == ("reference" if paper else TRAINING_ATTENTION_NORM), name


def test_class_count_disagreeing_with_slots_is_named(tmp_path):
    head = random_original_head(10, 512, 1)
    path = tmp_path / "ck.pth"
    write_original_checkpoint(path, original_args(num_classes=10), head)
    with pytest.raises(CheckpointMismatchError, match="10 slots.*num_classes=5"):
        scouter.load_model(path, num_classes=5)


def test_missing_unexpected_and_misshaped_keys_are_named(tmp_path):
    head = random_original_head(10, 512, 1)
    path = tmp_path / "ck.pth"
    write_original_checkpoint(path, original_args(), head)
    ckpt = torch.load(path, weights_only=False)
    del ckpt["model"]["backbone.layer4.1.bn2.running_var"]
    ckpt["model"]["slot.extra_thing"] = torch.zeros(3)
    ckpt["model"]["conv1x1.bias"] = torch.zeros(32)
    torch.save(ckpt, path)
    with pytest.raises(CheckpointMismatchError) as info:
        scouter.load_model(path)
    message = str(info.value)
    assert "backbone.model.layer4.1.bn2.running_var" in message
    assert "head.extra_thing" in message
    assert "head.conv1x1.bias: checkpoint (32,) vs model (64,)" in message


class PlantedPayload:
    """Unpickling this would touch a marker file (stands in for arbitrary code)."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_checkpoint_with_planted_object_is_refused(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pth"
    write_original_checkpoint(path, original_args(), random_original_head(10, 512, 1))
    ckpt = torch.load(path, weights_only=False)
    ckpt["args"].callback = PlantedPayload(marker)
    torch.save(ckpt, path)
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError, match="refusing to load.*evil.pth.*global getattr"):
        scouter.load_model(path)
    assert not marker.exists()


def test_truncated_and_missing_checkpoints(tmp_path):
    path = tmp_path / "ck.pth"
    write_original_checkpoint(path, original_args(), random_original_head(10, 512, 1))
    data = path.read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pth"):
        scouter.load_model(tmp_path / "cut.pth")
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        scouter.load_model(tmp_path / "absent.pth")


@pytest.mark.parametrize("head", ["xslot", "fc"])
def test_safetensors_round_trip_is_bit_exact(tmp_path, head):
    torch.manual_seed(0)
    model = build_classifier(
        ModelConfig(backbone="test_resnet", num_classes=5, head=head, slots_per_class=2, sign=-1)
    ).eval()
    path = save_model(model, tmp_path / "export" / "model")
    assert path.name == "model.safetensors" and path.with_suffix(".json").is_file()
    loaded = scouter.load_model(path)
    assert loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(images).logits, model(images).logits)
    # The weight file alone carries its config (metadata) too.
    path.with_suffix(".json").unlink()
    assert scouter.load_model(path).config == model.config
    assert not list(path.parent.glob("*.tmp"))


def test_backbone_weights_from_an_fc_checkpoint(tmp_path):
    model = build_classifier(ModelConfig(backbone="test_resnet", num_classes=3, head="fc"))
    path = save_model(model, tmp_path / "fc")
    state = backbone_state_from_checkpoint(path)
    assert set(state) == set(model.backbone.model.state_dict())
    target = build_classifier(ModelConfig(backbone="test_resnet", num_classes=7))
    target.backbone.model.load_state_dict(state)
    assert torch.equal(target.backbone.model.conv1[0].weight, model.backbone.model.conv1[0].weight)


class SystemPayload:
    """Unpickling this runs a shell command (creates ``marker``)."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("name", ["random.ckpt", "random.pth", "empty.pth", "text.pt"])
def test_random_bytes_are_not_a_checkpoint_not_an_unsafe_pickle(tmp_path, name):
    path = tmp_path / name
    content = {"empty.pth": b"", "text.pt": b"hello, not a checkpoint\n"}
    path.write_bytes(content.get(name, bytes(np.random.default_rng(0).integers(0, 256, 4096))))
    with pytest.raises(CheckpointError) as caught:
        scouter.load_model(path)
    message = str(caught.value)
    assert not isinstance(caught.value, UnsafeCheckpointError)
    assert str(path) in message and "is not a readable checkpoint" in message
    assert ".safetensors export" in message  # what is expected instead
    assert "weights_only" not in message and "unsafe" not in message.lower()
    assert caught.value.__cause__ is None  # torch's advice is not chained into the traceback


@pytest.mark.parametrize(
    "writer",
    [
        lambda obj, f: torch.save(obj, f),
        lambda obj, f: pickle.dump(obj, f, protocol=pickle.DEFAULT_PROTOCOL),
        lambda obj, f: pickle.dump(obj, f, protocol=2),
    ],
    ids=["torch.save", "pickle-default", "pickle-2"],
)
def test_pickle_calling_os_system_is_refused_naming_the_global(tmp_path, writer):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        writer({"model": {"w": [0.0, 1.0]}, "payload": SystemPayload(marker)}, handle)
    with pytest.raises(UnsafeCheckpointError) as caught:
        scouter.load_model(path)
    message = str(caught.value)
    assert re.search(r"refusing to load .*evil\.pth.*the global (posix|nt)\.system", message)
    assert "weights_only" not in message and caught.value.__cause__ is None
    assert not marker.exists()


def test_a_directory_as_checkpoint_lists_the_checkpoints_inside(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"w": torch.zeros(1)}, run / "checkpoints" / "last.ckpt")
    with pytest.raises(
        IsADirectoryError, match=r"is a directory: pass a checkpoint file.*last\.ckpt"
    ):
        scouter.load_model(run)
    (tmp_path / "empty").mkdir()
    with pytest.raises(IsADirectoryError, match="holds no .ckpt, .pth"):
        scouter.load_model(tmp_path / "empty")


def test_invalid_model_json_names_the_file_line_and_column(tmp_path):
    model = build_classifier(ModelConfig(backbone="test_resnet", num_classes=3, head="fc"))
    path = save_model(model, tmp_path / "export" / "model")
    sidecar = path.with_suffix(".json")
    sidecar.write_text('{\n  "backbone": "test_resnet",\n  "num_classes": 3,,\n}\n')
    with pytest.raises(ValueError, match=r"model\.json.* is not valid JSON: .*line 3, column 20"):
        scouter.load_model(path)
    with pytest.raises(CheckpointError, match="delete it to use the config stored in model"):
        scouter.load_model(path)
    sidecar.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"model\.json.* must be a JSON object"):
        scouter.load_model(path)
    sidecar.unlink()  # the metadata's copy of the config takes over, as the message says
    assert scouter.load_model(path).config == model.config


def test_a_wrong_type_in_model_json_names_file_key_and_type(tmp_path):
    """Issue 29, item 11: no bare ``invalid literal for int()``."""
    model = build_classifier(ModelConfig(backbone="test_resnet", num_classes=3, head="fc"))
    path = save_model(model, tmp_path / "export" / "model")
    sidecar = path.with_suffix(".json")
    document = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**document, "num_classes": "ten"}))
    with pytest.raises(CheckpointError) as caught:
        scouter.load_model(path)
    message = str(caught.value)
    assert str(sidecar) in message and "'num_classes' must be an integer, got 'ten'" in message
    assert "delete it to use the config stored in model.safetensors's metadata" in message
    sidecar.write_text(json.dumps({**document, "head": "slot"}))
    with pytest.raises(CheckpointError, match=r"'head' must be one of 'xslot', 'fc', got 'slot'"):
        scouter.load_model(path)


def test_a_misspelled_key_in_model_json_or_the_options_suggests_the_close_one(tmp_path):
    model = build_classifier(ModelConfig(backbone="test_resnet", num_classes=3, head="fc"))
    path = save_model(model, tmp_path / "export" / "model")
    sidecar = path.with_suffix(".json")
    document = json.loads(sidecar.read_text())
    document["num_clases"] = document.pop("num_classes")
    sidecar.write_text(json.dumps(document))
    with pytest.raises(
        CheckpointError,
        match=rf"{re.escape(str(sidecar))}.*unknown key 'num_clases' \(did you mean "
        r"'num_classes'\?\); known keys: .*num_classes",
    ):
        scouter.load_model(path)
    sidecar.unlink()
    # A misspelled load_model option is the options' fault, not the file's.
    with pytest.raises(
        CheckpointError,
        match=r"the options given to load_model: unknown key 'slots_per_clas' \(did you mean "
        r"'slots_per_class'\?\)",
    ):
        scouter.load_model(path, slots_per_clas=2)
    with pytest.raises(ModelConfigError, match=r"unknown key 'zzz'; known keys"):
        ModelConfig.from_dict({"backbone": "x", "num_classes": 2, "zzz": 1})  # nothing close


def test_a_corrupt_safetensors_for_init_backbone_from_names_the_file(tmp_path):
    """Issue 29, item 12: no raw SafetensorError."""
    model = build_classifier(ModelConfig(backbone="test_resnet", num_classes=3, head="fc"))
    path = save_model(model, tmp_path / "fc")
    data = bytearray(path.read_bytes())
    data[:8] = (10**12).to_bytes(8, "little")  # a header length past the end of the file
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as caught:
        backbone_state_from_checkpoint(path)
    message = str(caught.value)
    assert str(path) in message and "not a readable safetensors file" in message
    assert "export the model again" in message and "init_backbone_from the run's .ckpt" in message
    (tmp_path / "random.safetensors").write_bytes(os.urandom(64))
    with pytest.raises(CheckpointError, match=r"random\.safetensors.*not a readable safetensors"):
        backbone_state_from_checkpoint(tmp_path / "random.safetensors")
