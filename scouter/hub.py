"""Where pretrained model folders come from: the package, the Hugging Face Hub, or a URL.

* **Shipped** folders live in the package (``scouter/pretrained/<entry>/``) and load offline.
* ``hf-hub:<org>/<name>[@revision]`` folders come through ``huggingface_hub.snapshot_download``,
  which keeps the Hub's cache (``HF_HOME`` / ``HF_HUB_CACHE``) and honours ``HF_HUB_OFFLINE=1``.
* **URL** files (``https://`` or ``file://``) are downloaded once into
  ``$SCOUTER_HUB_CACHE`` (default ``~/.cache/scouter/hub``) by ``torch.hub.download_url_to_file``
  and checked against their SHA-256 each time they are used.

Every failure (no network, nothing cached, a missing file, a wrong hash) raises :class:`HubError`
naming the file and the fix. Weights are only ever read as safetensors.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from scouter.atomic_io import file_sha256
from scouter.model_folder import CONFIG_FILE, WEIGHTS_FILE, ModelFolderError

__all__ = [
    "HF_HUB_PREFIX",
    "HubError",
    "PretrainedSource",
    "RemoteFile",
    "download_hf_hub_folder",
    "fetch_file",
    "hub_cache_dir",
    "shipped_folder",
]

HF_HUB_PREFIX = "hf-hub:"
#: The files of a model folder fetched from the Hub (the card comes along for reading offline).
HUB_FILES = (CONFIG_FILE, WEIGHTS_FILE, "README.md")
SHIPPED_ROOT = Path(__file__).resolve().parent / "pretrained"


class HubError(ModelFolderError):
    """A pretrained model folder cannot be had here; the message says why and what to do."""


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_cache_dir() -> Path:
    """Where URL downloads are kept: ``$SCOUTER_HUB_CACHE`` or ``~/.cache/scouter/hub``."""
    configured = os.environ.get("SCOUTER_HUB_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "scouter" / "hub"


def parse_hf_hub(spec: str) -> tuple[str, str | None]:
    """``"hf-hub:org/name@rev"`` → ``("org/name", "rev")``."""
    repo = spec.removeprefix(HF_HUB_PREFIX)
    repo, _, revision = repo.partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise HubError(
            f"{spec!r} is not a Hub model id: write hf-hub:<org>/<name> (optionally @<revision>)"
        )
    return repo, revision or None


def download_hf_hub_folder(spec: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The local folder of ``hf-hub:<org>/<name>[@revision]`` (downloaded, or from the cache).

    Raises:
        HubError: not cached while offline (``HF_HUB_OFFLINE=1`` or no network), no such
            repository, or a repository without ``config.json``.
    """
    import huggingface_hub
    from huggingface_hub import errors

    # IncompleteSnapshotError (newer huggingface_hub): a partly cached snapshot while offline.
    not_cached = tuple(
        getattr(errors, name)
        for name in ("LocalEntryNotFoundError", "IncompleteSnapshotError")
        if hasattr(errors, name)
    )

    repo, revision = parse_hf_hub(spec)
    cache = str(cache_dir) if cache_dir is not None else None
    try:
        folder = huggingface_hub.snapshot_download(
            repo, revision=revision, cache_dir=cache, allow_patterns=list(HUB_FILES)
        )
    except not_cached:
        where = cache or huggingface_hub.constants.HF_HUB_CACHE
        why = "HF_HUB_OFFLINE is set" if _offline() else "the Hub could not be reached"
        raise HubError(
            f"{spec} is not in the Hugging Face cache ({where}) and {why}: download it once with "
            "network access (the cache keeps it), point HF_HUB_CACHE at a cache that holds it, or "
            "copy the model folder here and use scouter.load_model(<folder>)"
        ) from None
    except (errors.RepositoryNotFoundError, errors.RevisionNotFoundError) as err:
        raise HubError(
            f"{spec}: {type(err).__name__} — check the organisation, name and revision (private "
            "repositories need `huggingface-cli login`)"
        ) from None
    except errors.EntryNotFoundError:
        raise HubError(f"{spec} has no {CONFIG_FILE}: it is not a scouter model folder") from None
    folder = Path(folder)
    if not (folder / CONFIG_FILE).is_file():
        raise HubError(
            f"{spec} has no {CONFIG_FILE} at its root: it is not a scouter model folder "
            "(publish one with `python -m scouter.publish`)"
        )
    return folder


@dataclass(frozen=True)
class RemoteFile:
    """A file at a URL with its SHA-256 (checked after download and on every use)."""

    url: str
    sha256: str


def fetch_file(remote: RemoteFile, name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The cached copy of ``remote`` as ``<cache>/<sha256>/<name>``, downloaded if needed.

    Raises:
        HubError: no copy and offline or the download failed; a copy or download whose SHA-256
            differs (the bad file is removed).
    """
    import torch.hub

    target = Path(cache_dir or hub_cache_dir()) / remote.sha256 / name
    if target.is_file():
        if file_sha256(target) == remote.sha256:
            return target
        target.unlink()  # a changed or corrupt copy: fetch it again
    if _offline():
        raise HubError(
            f"{name} ({remote.url}) is not cached at {str(target)!r} and HF_HUB_OFFLINE is set: "
            f"download it with network access, or place the file there (SHA-256 {remote.sha256})"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{name}.partial")
    try:
        torch.hub.download_url_to_file(remote.url, str(partial), progress=False)
    except Exception as err:  # noqa: BLE001 - urllib raises many kinds; all mean "not here"
        partial.unlink(missing_ok=True)
        raise HubError(
            f"cannot download {name} from {remote.url} ({err}): check the network, or place the "
            f"file at {str(target)!r} (SHA-256 {remote.sha256})"
        ) from None
    got = file_sha256(partial)
    if got != remote.sha256:
        partial.unlink(missing_ok=True)
        raise HubError(
            f"{name} downloaded from {remote.url} has SHA-256 {got}, expected {remote.sha256}: "
            "the file there changed or the download was corrupted; nothing was kept — try again, "
            "or report the mismatch to the model's publisher"
        )
    os.replace(partial, target)
    return target


def shipped_folder(name: str) -> Path | None:
    """The folder of a model shipped inside the package, or ``None``."""
    folder = SHIPPED_ROOT / name
    return folder if (folder / CONFIG_FILE).is_file() else None


@dataclass(frozen=True)
class PretrainedSource:
    """Where a zoo entry's trained weights live (first available wins, in this order).

    Attributes:
        shipped: the folder name under ``scouter/pretrained`` (offline, installed with the package).
        hf_hub: ``"hf-hub:<org>/<name>[@revision]"``.
        files: URL files of a model folder: at least ``config.json`` and ``model.safetensors``.
    """

    shipped: str | None = None
    hf_hub: str | None = None
    files: Mapping[str, RemoteFile] = field(default_factory=dict)

    def folder(self) -> Path:
        """A local model folder for this source (may download; see :class:`HubError`)."""
        if self.shipped is not None:
            found = shipped_folder(self.shipped)
            if found is not None:
                return found
            if self.hf_hub is None and not self.files:
                raise HubError(
                    f"the shipped model folder {str(SHIPPED_ROOT / self.shipped)!r} is missing: "
                    "reinstall scouter (`pip install -e .` from a full clone)"
                )
        if self.hf_hub is not None:
            return download_hf_hub_folder(self.hf_hub)
        missing = {CONFIG_FILE, WEIGHTS_FILE} - set(self.files)
        if missing:
            raise HubError(f"a URL source needs {sorted(missing)} too")
        paths = {name: fetch_file(remote, name) for name, remote in self.files.items()}
        folder = paths[CONFIG_FILE].parent.parent / f"folder-{self.files[WEIGHTS_FILE].sha256}"
        folder.mkdir(parents=True, exist_ok=True)
        for name, path in paths.items():  # one folder view of the content-addressed files
            link = folder / name
            if not link.exists():
                os.symlink(path, link)
        return folder
