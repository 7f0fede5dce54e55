"""``train.py``'s command-line errors in one sentence that names the key and the fix.

jsonargparse answers a misspelled key with the whole usage (about 60 lines) and "does not accept
option"; :class:`ScouterArgumentParser` prints instead which key is unknown and the closest valid
one (:mod:`scouter.suggest`, the rule ``evaluate.py`` uses), whether it came from the command line
or the YAML, and explains the two options ``train.py`` deliberately does not take:
``model.num_classes`` (linked from the data) and ``weights_only`` (checkpoints are always read
with ``weights_only=True``, :mod:`scouter.training.safe_checkpoint_io`).
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from typing import Any, NoReturn

from pytorch_lightning.cli import LightningArgumentParser

from scouter.suggest import with_hint

WEIGHTS_ONLY_REFUSAL = (
    "train.py does not take weights_only: it reads every checkpoint with weights_only=True "
    "(tensors, plain containers and argparse.Namespace only), because unpickling anything else "
    "can run arbitrary code hidden in the file. Remove weights_only from the command line or the "
    "config. A checkpoint it refuses holds pickled objects besides weights: re-export the weights "
    "as a plain state_dict or safetensors file where you trust its source, or retrain"
)

NUM_CLASSES_LINKED = (
    "model.num_classes is not a setting of train.py: it is taken from the data (data.num_classes, "
    "the number of classes of data.dataset). Remove model.num_classes from the command line and "
    "the config; to train on some of the classes set data.dataset_options.num_classes (where the "
    "dataset supports it) or give a data.root holding only those classes"
)

_UNRECOGNIZED = re.compile(r"unrecognized arguments: (.*)$", re.S)
_NOT_ACCEPTED = re.compile(r"does not accept option '([^']+)'")
_CLASS_OPTION = re.compile(r"Problem with given class_path '([^']+)':\s*Option '([^']+)' is not")
_LINK_TARGET = re.compile(r"--> model\.num_classes\b|argument model\.num_classes\b")


def _option_keys(parser: Any) -> list[str]:
    """The dotted keys a (sub)command parser accepts, e.g. ``model.lambda_area``."""
    keys = []
    for action in getattr(parser, "_actions", []):
        dest = getattr(action, "dest", None)
        if dest and dest not in ("help", "config", "print_config") and not dest.startswith("=="):
            keys.append(dest)
    return keys


def _init_parameters(class_path: str) -> list[str]:
    """Parameter names of ``class_path``'s ``__init__``, following ``**kwargs`` to its bases."""
    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        return []
    names: list[str] = []
    for klass in inspect.getmro(cls) if inspect.isclass(cls) else []:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names += [p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return [n for n in dict.fromkeys(names) if n != "self"]


def _unknown_keys(message: str) -> tuple[list[str], str] | None:
    """The unknown keys a jsonargparse message names, and where they came from."""
    found = _UNRECOGNIZED.search(message)
    if found:
        given = [t for t in found.group(1).split() if t.startswith("--")]
        return [t[2:].split("=", 1)[0] for t in given], "on the command line"
    found = _NOT_ACCEPTED.search(message)
    if found:
        return [found.group(1)], "in the config"
    return None


def explain(message: str, parser: Any) -> str:
    """A jsonargparse error message rewritten to name the key, its closest valid one and the fix."""
    if _LINK_TARGET.search(message):
        return NUM_CLASSES_LINKED
    unknown = _unknown_keys(message)
    if unknown is not None:
        keys, where = unknown
        if any(key.split(".")[-1] == "weights_only" for key in keys):
            program = str(getattr(parser, "prog", "") or "train.py").split()[0]
            return WEIGHTS_ONLY_REFUSAL.replace("train.py", program, 1)
        valid = _option_keys(parser)
        prefix = "--" if where == "on the command line" else ""
        hints = ", ".join(with_hint(prefix + key, [prefix + k for k in valid]) for key in keys)
        plural = "s" if len(keys) > 1 else ""
        return f"unknown option{plural} {hints} {where}: correct the spelling"
    found = _CLASS_OPTION.search(message)
    if found:
        class_path, option = found.groups()
        where = message.split("\n", 1)[0].removeprefix("Parser key ").rstrip(":")
        hint = with_hint(option, _init_parameters(class_path))
        return (
            f"unknown option {hint} of {class_path} (under {where}): correct its init_args in the "
            "config"
        )
    return message


class ScouterArgumentParser(LightningArgumentParser):
    """``LightningArgumentParser`` whose errors are one explained sentence, without the usage."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        parser = getattr(ex, "subcommand_parser", None) or self
        explained = explain(message, parser)
        if not self.exit_on_error:
            super().error(explained, ex)  # raises an ArgumentError, as jsonargparse does
        prog = str(getattr(parser, "prog", "train.py")).replace(" [options]", "")
        sys.stderr.write(f"{prog}: error: {explained}\n(all options: {prog} --help)\n")
        sys.exit(2)
