"""Every shipped config parses, and every config whose data exist offline trains four steps.

``train.py fit --print_config`` for all 18 ``configs/<dataset>/*.yaml`` (``configs/stylex`` is
``stylex.py``'s); a real four-step ``fit`` (two
two batches per epoch, two epochs, so a two-stage recipe crosses into its xSlot stage) for the
Fashion-MNIST, composites and MNIST configs, on the real Fashion-MNIST files or on tiny data in
the official IDX format. Only sizes change (steps, samples, workers); MNIST's configs also drop
their download-only ImageNet weights and read a 64-px copy of the tiny data.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

import scouter
from scouter.checkpoints import safe_torch_load
from scouter.data.idx import FASHION_MNIST_ROOT
from scouter.training import main
from tests.data.conftest import write_idx_dataset

REPO = Path(__file__).resolve().parents[1]
# train.py's configs; configs/stylex/ belongs to stylex.py (tested in tests/stylex)
CONFIGS = sorted(p for p in (REPO / "configs").glob("*/*.yaml") if p.parent.name != "stylex")
HAS_FASHION = Path(FASHION_MNIST_ROOT).is_dir()


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def test_the_project_ships_eighteen_configs():
    assert len(CONFIGS) == 18
    assert {p.parent.name for p in CONFIGS} == {
        "acrima", "composites", "cub200", "fashion_mnist", "imagenet100", "mnist",
    }  # fmt: skip


@pytest.mark.parametrize("config", CONFIGS, ids=_id)
def test_every_config_parses_with_the_values_it_ships(config, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--config", str(config), "--print_config"])
    assert stop.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    shipped = yaml.safe_load(config.read_text())
    for section in ("model", "data"):
        for key, value in shipped[section].items():
            assert printed[section][key] == value, f"{_id(config)}: {section}.{key}"
    assert printed["trainer"]["max_epochs"] == shipped["trainer"]["max_epochs"]


def _fit_two_steps(config: Path, extra: list[str]) -> Path:
    """Run the config for two batches in each of two epochs; return its checkpoint folder."""
    # 2 batches, not 1: LightningCLI parses a limit of 1 as the float 1.0, i.e. every batch.
    sizes = {
        "trainer": {
            "max_epochs": 2, "limit_train_batches": 2, "limit_val_batches": 2,
            "num_sanity_val_steps": 0, "accelerator": "cpu", "devices": 1,
            "enable_progress_bar": False,
        },
        "data": {"num_workers": 0},
    }  # fmt: skip
    Path("sizes.yaml").write_text(yaml.safe_dump(sizes))
    args = ["fit", "--config", str(config), "--config", "sizes.yaml", *extra]
    main(args)
    folders = [p.parent for p in Path("checkpoints").rglob("last.ckpt")]
    assert len(folders) >= 1
    return max(folders, key=lambda p: p.stat().st_mtime)


def _check_checkpoint(folder: Path, config: Path) -> None:
    shipped = yaml.safe_load(config.read_text())["model"]
    assert safe_torch_load(folder / "last.ckpt")["global_step"] == 4
    model = scouter.load_model(folder / "last.ckpt")
    assert (model.config.backbone, model.config.head) == (shipped["backbone"], shipped["head"])
    if shipped["head"] == "xslot":
        assert (model.config.sign, model.config.hidden_dim) == (
            shipped["sign"], shipped["hidden_dim"],
        )  # fmt: skip


@pytest.mark.slow
@pytest.mark.skipif(not HAS_FASHION, reason="Debian package dataset-fashion-mnist not installed")
@pytest.mark.parametrize("model", ["fc", "scouter_pos", "scouter_neg"])
def test_fashion_mnist_configs_train(model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = REPO / "configs" / "fashion_mnist" / f"{model}.yaml"
    folder = _fit_two_steps(config, [])
    _check_checkpoint(folder, config)
    # Grey images train a one-channel model (the README's demo model), not a 3-channel copy.
    trained = scouter.load_model(folder / "last.ckpt")
    assert trained.config.in_chans == 1 and trained.data_config.in_chans == 1
    if model == "scouter_pos":  # the demo's checkpoint: the README's Explain example runs on it
        (tmp_path / "configs").symlink_to(REPO / "configs")
        code = _readme_block("## Explain", "python")
        # Its inputs come from the data config stored with the model, not from re-reading YAML.
        assert "transform_for(model)" in code and "yaml" not in code
        namespace: dict = {}
        exec(compile(code, "README.md (Explain)", "exec"), namespace)  # noqa: S102
        assert namespace["explanation"].maps.shape == (8, 1, 8, 8)
        assert namespace["images"].shape[:2] == (8, 1) and namespace["images"].shape[-2:] == (
            64,
            64,
        )


def _readme_block(section: str, language: str) -> str:
    """The first ```language block after the heading ``section`` in README.md."""
    text = (REPO / "README.md").read_text()
    after = text[text.index(f"\n{section}\n") :]
    start = after.index(f"```{language}\n") + len(f"```{language}\n")
    return after[start : after.index("```", start)]


@pytest.mark.slow
@pytest.mark.skipif(not HAS_FASHION, reason="Debian package dataset-fashion-mnist not installed")
@pytest.mark.parametrize("model", ["fc", "scouter_pos", "scouter_neg"])
def test_composites_configs_train_through_their_stages(model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = REPO / "configs" / "composites" / f"{model}.yaml"
    extra = ["--data.dataset_options", '{"num_samples": 64, "image_size": 128, "clutter": 2}']
    extra += ["--data.batch_size", "8"]
    folder = _fit_two_steps(config, extra)
    _check_checkpoint(folder, config)
    if model != "fc":  # two-stage: epoch 0 trained an FC head, epoch 1 the xSlot head
        shipped = yaml.safe_load(config.read_text())["model"]
        assert shipped["fc_warmup_epochs"] == 1
        last = safe_torch_load(folder / "last.ckpt")
        assert last["epoch"] == 1
        # The recipe keeps the warm-up's FC head training beside the xSlot head.
        assert last["hyper_parameters"]["fc_aux_weight"] == shipped["fc_aux_weight"] > 0


@pytest.mark.slow
def test_mnist_configs_train_fc_then_scouter_from_its_backbone(tmp_path, monkeypatch):
    root = tmp_path / "mnist"
    write_idx_dataset(root, {"train": 40, "t10k": 20}, seed_offset=0)
    monkeypatch.chdir(tmp_path)
    # The shipped MNIST recipe downloads ImageNet weights and reads 260 px: here 64 px, no download.
    extra = ["--data.root", str(root), "--data.image_size", "64", "--data.batch_size", "8"]
    extra += ["--model.pretrained", "false"]
    # Without ImageNet weights nothing may be frozen (the module refuses to freeze random layers).
    folder = _fit_two_steps(
        REPO / "configs" / "mnist" / "fc.yaml", [*extra, "--model.freeze_stages", "0"]
    )
    assert folder == Path("checkpoints/mnist/fc")  # where the SCOUTER configs look for it
    fc_backbone = {
        k: v for k, v in safe_torch_load(folder / "last.ckpt")["state_dict"].items()
        if ".backbone." in k
    }  # fmt: skip
    # SCOUTER+ starts from that FC backbone (the reference's use_pre).
    config = REPO / "configs" / "mnist" / "scouter_pos.yaml"
    assert yaml.safe_load(config.read_text())["model"]["init_backbone_from"] == (
        "checkpoints/mnist/fc/last.ckpt"
    )
    scouter_folder = _fit_two_steps(config, extra)
    _check_checkpoint(scouter_folder, config)
    # Its frozen stages still hold the FC backbone's weights. Freezing stops gradients only, as in
    # the reference: BatchNorm running statistics keep updating, so they are not compared.
    state = safe_torch_load(scouter_folder / "last.ckpt")["state_dict"]
    frozen = [k for k in fc_backbone if ".layer1." in k and k.endswith(("weight", "bias"))]
    assert len(frozen) == 12
    assert all(torch.equal(state[k], fc_backbone[k]) for k in frozen)
    trained = [k for k in fc_backbone if ".layer4." in k and k.endswith("weight")]
    assert any(not torch.equal(state[k], fc_backbone[k]) for k in trained)
    # SCOUTER- starts from ImageNet weights (not available offline): nothing frozen here.
    config = REPO / "configs" / "mnist" / "scouter_neg.yaml"
    neg = _fit_two_steps(config, [*extra, "--model.freeze_stages", "0"])
    _check_checkpoint(neg, config)
