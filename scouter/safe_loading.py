"""Reading untrusted torch checkpoint files safely: ``weights_only=True``, only
``argparse.Namespace`` allow-listed, and every refusal or unreadable file named with its fix.

Split from :mod:`scouter.checkpoints` (which re-exports these names): this module knows files
and pickles, not models.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

SAFE_GLOBALS = [argparse.Namespace]


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used (unsafe, unknown layout, or not matching the model)."""


class UnsafeCheckpointError(CheckpointError):
    """The checkpoint pickles an object outside the allow-list."""


class CheckpointMismatchError(CheckpointError):
    """Keys or shapes of a checkpoint do not match the model; every offending key is named."""


# --- safe reading -------------------------------------------------------------------------------


CHECKPOINT_SUFFIXES = (".ckpt", ".pth", ".pt", ".safetensors")

# torch's weights-only unpickler names what it refused in one of these forms.
_REFUSED_OBJECT_PATTERNS = (
    ("global", r"Unsupported global: GLOBAL (\S+) was not an allowed global"),
    ("global", r"unsupported GLOBAL (\S+) whose module \S+ is blocked"),
    (
        "function",
        r"Trying to call reduce for unrecognized function (.+?)(?: which belongs to .*)?$",
    ),
    ("object", r"Can only create new object for .*? but got (.+)$"),
    ("object", r"Can only build Tensor, .*? but got (.+)$"),
)


def checkpoint_files_in(folder: str | os.PathLike, limit: int = 10) -> list[Path]:
    """Checkpoint-like files (:data:`CHECKPOINT_SUFFIXES`) in ``folder`` and two levels below.

    Used to say what a user probably meant when a folder was given instead of a file.
    """
    found: list[Path] = []
    base = Path(folder)
    for root, dirs, files in os.walk(base):
        depth = len(Path(root).relative_to(base).parts)
        if depth >= 2:
            dirs[:] = []
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += sorted(Path(root) / f for f in files if Path(f).suffix in CHECKPOINT_SUFFIXES)
        if len(found) >= limit:
            break
    return found[:limit]


def require_checkpoint_file(path: str | os.PathLike) -> None:
    """Raise a message saying what is wrong when ``path`` is not a checkpoint file.

    A published model folder (one holding ``config.json``, :mod:`scouter.model_folder`) is a
    checkpoint too.

    Raises:
        IsADirectoryError: ``path`` is a folder (the checkpoint files inside are listed).
        FileNotFoundError: nothing at ``path``.
    """
    path = Path(path)
    if path.is_dir() and (path / "config.json").is_file():
        return
    if path.is_dir():
        inside = checkpoint_files_in(path)
        hint = (
            "; checkpoint files inside: " + ", ".join(str(p) for p in inside)
            if inside
            else "; it holds no .ckpt, .pth, .pt or .safetensors file"
        )
        raise IsADirectoryError(
            f"checkpoint {str(path)!r} is a directory: pass a checkpoint file (.ckpt, .pth or a "
            f".safetensors export){hint}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")


def _refused_object(message: str) -> str | None:
    """What torch's weights-only unpickler refused ("the global os.system"), if it names it."""
    for line in message.splitlines():
        for kind, pattern in _REFUSED_OBJECT_PATTERNS:
            found = re.search(pattern, line.strip())
            if found:
                return f"the {kind} {found.group(1).strip()}"
    return None


def _unpickling_detail(message: str) -> str:
    """The unpickler's own reason, without torch's advice around it (weights_only=False…)."""
    message = message.split("WeightsUnpickler error:")[-1]
    for line in message.splitlines():
        line = line.strip()
        if line and "weights_only" not in line and not line.startswith("Weights only load"):
            return line
    return "unknown reason"


def _globals_in_pickles(stream: Any, names: list[str]) -> None:
    """Append the ``module.name`` of every global the pickles in ``stream`` import."""
    import pickletools

    for _ in range(8):  # torch's legacy format: magic, protocol, sys info, object, storage keys
        strings: list[Any] = []
        memo: dict[Any, Any] = {}
        try:
            for opcode, arg, _pos in pickletools.genops(stream):
                if opcode.name in ("GLOBAL", "INST"):
                    names.append(str(arg).replace(" ", "."))
                elif opcode.name == "STACK_GLOBAL":
                    module, name = strings[-2:] if len(strings) >= 2 else ("?", "?")
                    names.append(f"{module}.{name}")
                elif opcode.name in (
                    "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE",
                    "SHORT_BINSTRING", "BINSTRING", "STRING",
                ):  # fmt: skip
                    strings.append(arg)
                elif opcode.name == "MEMOIZE" and strings:
                    memo[len(memo)] = strings[-1]
                elif opcode.name in ("PUT", "BINPUT", "LONG_BINPUT") and strings:
                    memo[arg] = strings[-1]
                elif opcode.name in ("GET", "BINGET", "LONG_BINGET") and arg in memo:
                    strings.append(memo[arg])
        except (ValueError, EOFError, IndexError, KeyError, TypeError, UnicodeDecodeError):
            return  # not (or no longer) a pickle: the scan ends here
        if not stream.peek(1):  # end of file
            return


def _pickled_globals(path: Path) -> list[str]:
    """``module.name`` of every global the file's pickle(s) import, read without unpickling.

    Covers raw pickle files and torch's formats (the zip's ``*.pkl``, the legacy sequence of
    pickles); unreadable bytes end the scan.
    """
    import zipfile

    names: list[str] = []
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    if member.endswith(".pkl"):
                        with archive.open(member) as stream:
                            _globals_in_pickles(stream, names)
        except (zipfile.BadZipFile, RuntimeError):
            pass
    else:
        with open(path, "rb") as stream:
            _globals_in_pickles(stream, names)
    return names


def _disallowed_globals(path: Path) -> list[str]:
    """Globals in the file that torch's weights-only unpickler would refuse."""
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        torch_allowed = set(_get_allowed_globals())
    except (ImportError, AttributeError):  # private torch API: fall back to a prefix rule
        torch_allowed = None
    ours = {f"{g.__module__}.{g.__qualname__}" for g in SAFE_GLOBALS}

    def allowed(name: str) -> bool:
        if name in ours:
            return True
        if torch_allowed is None:
            return name.startswith(("torch.", "collections.OrderedDict"))
        return name in torch_allowed

    try:
        names = _pickled_globals(path)
    except OSError:
        return []
    # Random bytes can decode as a GLOBAL opcode by chance: only dotted identifiers count.
    names = [n for n in names if re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+", n)]
    return list(dict.fromkeys(n for n in names if not allowed(n)))


def _refuse(path: Path, detail: str) -> UnsafeCheckpointError:
    return UnsafeCheckpointError(
        f"refusing to load {str(path)!r}: it contains a pickled object outside the allow-list "
        f"(tensors, plain containers, argparse.Namespace): {detail}. Unpickling it could run "
        "arbitrary code; re-export the weights as a plain state_dict or safetensors."
    )


def _not_a_checkpoint(path: Path, reason: str) -> CheckpointError:
    return CheckpointError(
        f"{str(path)!r} is not a readable checkpoint ({reason}): expected a .ckpt written by "
        "train.py, a .pth/.pt torch checkpoint or state_dict, or a .safetensors export; the file "
        "may be truncated, corrupted or of another format"
    )


def safe_torch_load(path: str | os.PathLike) -> Any:
    """``torch.load`` with ``weights_only=True`` and only ``argparse.Namespace`` allow-listed.

    Raises:
        FileNotFoundError: no such file.
        IsADirectoryError: ``path`` is a folder (checkpoint files inside are listed).
        UnsafeCheckpointError: the file pickles any other object (the object is named).
        CheckpointError: the file is not a readable torch checkpoint (random bytes, truncated).
    """
    path = Path(path)
    require_checkpoint_file(path)
    if path.stat().st_size == 0:
        raise _not_a_checkpoint(path, "the file is empty")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS), warnings.catch_warnings():
            # Raw pickles (protocol > 2) make torch ask for an issue to be filed: not the user's.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        refused = _refused_object(str(err))
        if refused is None:
            # Some pickles fail on an opcode before the unpickler meets their globals.
            disallowed = _disallowed_globals(path)
            if disallowed:
                plural = "s" if len(disallowed) > 1 else ""
                refused = f"the global{plural} {', '.join(disallowed[:5])}"
        if refused is not None:
            raise _refuse(path, refused) from None
        raise _not_a_checkpoint(
            path, "torch cannot unpickle it: " + _unpickling_detail(str(err))
        ) from None
    except FileNotFoundError:
        raise
    except Exception as err:  # any other failure on these bytes: not a checkpoint
        reason = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        raise _not_a_checkpoint(
            path, "torch cannot parse it: " + _unpickling_detail(reason)
        ) from None
