"""Loading by name: the Hugging Face Hub's cache, URLs with SHA-256, all offline."""

from __future__ import annotations

import hashlib
import shutil

import pytest
import torch

import scouter
from scouter.hub import HubError, PretrainedSource, RemoteFile, download_hf_hub_folder, fetch_file

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _hub_cache(folder, cache, repo="scouter-zoo/tiny"):
    """Lay ``folder`` out in ``cache`` as huggingface_hub does: blobs, snapshots, refs/main."""
    storage = cache / ("models--" + repo.replace("/", "--"))
    (storage / "refs").mkdir(parents=True)
    (storage / "refs" / "main").write_text(COMMIT)
    snapshot = storage / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (storage / "blobs").mkdir()
    for path in folder.iterdir():
        blob = storage / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
        shutil.copy(path, blob)
        (snapshot / path.name).symlink_to(blob)
    return storage


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_hf_hub_ids_load_from_the_hub_cache_offline(model, folder, offline_hub):
    _hub_cache(folder, offline_hub)
    loaded = scouter.load_model("hf-hub:scouter-zoo/tiny")
    x = torch.randn(1, 1, 32, 32)
    assert torch.equal(loaded(x).logits, model(x).logits)
    assert loaded.class_names == model.class_names
    assert download_hf_hub_folder(f"hf-hub:scouter-zoo/tiny@{COMMIT}").name == COMMIT


def test_an_uncached_hf_hub_id_offline_says_what_to_do(offline_hub):
    with pytest.raises(HubError, match=r"not in the Hugging Face cache .*HF_HUB_OFFLINE is set"):
        scouter.load_model("hf-hub:scouter-zoo/absent")


def test_a_malformed_hf_hub_id_is_named():
    with pytest.raises(HubError, match="hf-hub:<org>/<name>"):
        scouter.load_model("hf-hub:no-slash")


def test_a_cached_hub_repo_without_config_json_is_not_a_model(folder, offline_hub):
    (folder / "config.json").unlink()
    _hub_cache(folder, offline_hub)
    with pytest.raises(HubError, match="no config.json"):
        scouter.load_model("hf-hub:scouter-zoo/tiny")


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_url_sources_download_once_and_check_the_hash(model, folder, tmp_path, monkeypatch):
    monkeypatch.setenv("SCOUTER_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    files = {
        name: RemoteFile((folder / name).as_uri(), _sha(folder / name))
        for name in ("config.json", "model.safetensors")
    }
    local = PretrainedSource(files=files).folder()
    loaded = scouter.load_model(local)
    x = torch.randn(1, 1, 32, 32)
    assert torch.equal(loaded(x).logits, model(x).logits)
    # Cached now: offline, the same call needs no download.
    (folder / "model.safetensors").rename(tmp_path / "moved")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert PretrainedSource(files=files).folder() == local


def test_a_wrong_hash_keeps_nothing_and_names_the_file(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("SCOUTER_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    remote = RemoteFile((folder / "model.safetensors").as_uri(), "0" * 64)
    with pytest.raises(HubError, match=r"model\.safetensors .* has SHA-256 .* expected 0{64}"):
        fetch_file(remote, "model.safetensors")
    assert list((tmp_path / "cache").rglob("*.safetensors*")) == []


def test_a_tampered_cached_copy_is_fetched_again(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("SCOUTER_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    remote = RemoteFile((folder / "model.safetensors").as_uri(), _sha(folder / "model.safetensors"))
    cached = fetch_file(remote, "model.safetensors")
    cached.write_bytes(b"tampered")
    assert _sha(fetch_file(remote, "model.safetensors")) == remote.sha256


def test_no_network_and_no_copy_names_the_url_and_the_place(tmp_path, monkeypatch):
    monkeypatch.setenv("SCOUTER_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    missing = RemoteFile((tmp_path / "nowhere.safetensors").as_uri(), "1" * 64)
    with pytest.raises(HubError, match=r"cannot download model\.safetensors .*place the file at"):
        fetch_file(missing, "model.safetensors")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubError, match="not cached .* HF_HUB_OFFLINE is set"):
        fetch_file(missing, "model.safetensors")


def test_a_zoo_entry_with_url_weights_loads_with_create_model(model, folder, tmp_path, monkeypatch):
    from scouter.models import zoo

    monkeypatch.setenv("SCOUTER_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    files = {
        name: RemoteFile((folder / name).as_uri(), _sha(folder / name))
        for name in ("config.json", "model.safetensors")
    }
    entry = zoo.ZooEntry(
        name="tiny_from_url",
        config=model.config,
        description="a tiny model whose weights live at a URL",
        source=PretrainedSource(files=files),
    )
    monkeypatch.setitem(zoo._REGISTRY, entry.name, entry)
    assert "tiny_from_url" in scouter.list_models(trained=True)
    loaded = scouter.create_model("tiny_from_url", pretrained=True).eval()
    x = torch.randn(1, 1, 32, 32)
    assert torch.equal(loaded(x).logits, model(x).logits)
    assert loaded.zoo_entry == "tiny_from_url" and loaded.class_names == model.class_names
    untrained = scouter.create_model("tiny_from_url")  # the architecture alone, no download
    assert untrained.config.num_classes == 3
