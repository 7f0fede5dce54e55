"""Publish a trained checkpoint as a model folder with its model card.

    python -m scouter.publish CHECKPOINT --out DIR [--results NAME=results.json ...]
        [--recipe config.yaml] [--command "python train.py fit ..."] [--name NAME]
        [--description TEXT] [--dtype float16] [--check NAME --tolerance 0.01] [--overwrite]

writes ``DIR/{model.safetensors, config.json, README.md, recipe.yaml, results/NAME.json}``
(:mod:`scouter.model_folder`, :mod:`scouter.model_card`): the layout the Hugging Face Hub and timm
use, loadable with ``scouter.load_model(DIR)`` and uploadable as it is
(``huggingface-cli upload <org>/<name> DIR``), after which ``scouter.load_model("hf-hub:<org>/<name>")``
loads it anywhere. Nothing is half-written: the folder appears complete or not at all.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = ["PublishError", "class_names_from_recipe", "main", "publish"]


class PublishError(ValueError):
    """A publish request that cannot be honoured; the message names the input and the fix."""


def class_names_from_recipe(recipe: Mapping[str, Any]) -> list[str] | None:
    """The class names of a training config's dataset (reads its index, renders nothing)."""
    from scouter.data import create_dataset

    data = dict(recipe.get("data") or {})
    if not data.get("dataset"):
        return None
    options = dict(data.get("dataset_options") or {})
    if str(data["dataset"]).lower() == "composites":
        options["cache"] = False  # the names only: no need to render the split into a cache
    return list(create_dataset(data["dataset"], data.get("root"), "train", **options).class_names)


def _read_results(items: Mapping[str, str | os.PathLike]) -> dict[str, dict[str, Any]]:
    documents = {}
    for name, path in items.items():
        path = Path(path)
        if not path.is_file():
            raise PublishError(f"results file {str(path)!r} (for {name!r}) does not exist")
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise PublishError(f"results file {str(path)!r} is not valid JSON: {err}") from None
        if not isinstance(doc, dict) or "num_images" not in doc or "metrics" not in doc:
            raise PublishError(
                f"{str(path)!r} is not an evaluate.py results.json (no num_images / metrics)"
            )
        documents[name] = doc
    return documents


def publish(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    *,
    results: Mapping[str, str | os.PathLike] | None = None,
    recipe: str | os.PathLike | None = None,
    command: str | None = None,
    name: str | None = None,
    description: str = "",
    dtype: str = "float32",
    check: str | None = None,
    tolerance: float = 0.01,
    class_names: Sequence[str] | None = None,
    notes: Sequence[str] = (),
    overwrite: bool = False,
) -> Path:
    """Write ``checkpoint`` (any format :func:`scouter.load_model` reads) as a model folder.

    Args:
        checkpoint: the trained model.
        out: the folder to write.
        results: ``{name: path of an evaluate.py results.json}`` — the card's numbers.
        recipe: the training config (copied as ``recipe.yaml``; also the source of the class
            names when the checkpoint stores none).
        command: the command that trained it, shown in the card.
        name: the model's name (default: ``out``'s folder name).
        description: the card's opening paragraph.
        dtype: ``float32`` or ``float16`` weights.
        check: the name of the results document whose accuracy the zoo tests recompute.
        tolerance: the accuracy tolerance of that check.
        class_names: override the stored class names.
        notes: extra lines for the card's evaluation section.
        overwrite: replace an existing folder.

    Returns:
        The folder.
    """
    import scouter
    from scouter.model_card import render_card
    from scouter.model_folder import save_pretrained

    out = Path(out)
    if out.exists() and not overwrite:
        raise PublishError(f"{str(out)!r} exists: choose another --out, or pass --overwrite")
    documents = _read_results(results or {})
    if check is not None and check not in documents:
        raise PublishError(f"--check {check!r} names no --results entry ({sorted(documents)})")
    recipe_text = None
    if recipe is not None:
        recipe = Path(recipe)
        if not recipe.is_file():
            raise PublishError(f"recipe {str(recipe)!r} does not exist")
        recipe_text = recipe.read_text(encoding="utf-8")
    model = scouter.load_model(checkpoint)
    if class_names is not None:
        model.class_names = list(class_names)
    elif model.class_names is None and recipe_text is not None:
        model.class_names = class_names_from_recipe(yaml.safe_load(recipe_text) or {})
    if model.class_names is not None and len(model.class_names) != model.num_classes:
        raise PublishError(
            f"{len(model.class_names)} class names for a model of {model.num_classes} classes"
        )
    name = name or out.name
    return save_pretrained(
        model,
        out,
        dtype=dtype,
        overwrite=overwrite,
        extra_config={"zoo_entry": name, "description": description},
        results=documents,
        recipe=recipe_text,
        # The card states the weights' size, known once they are written.
        card=lambda size_mb: render_card(
            model,
            name=name,
            results=documents,
            description=description,
            recipe=recipe_text,
            command=command,
            check={"results": check, "tolerance": tolerance} if check else None,
            notes=notes,
            size_mb=size_mb,
        ),
    )


def _named_paths(items: Sequence[str]) -> dict[str, str]:
    named = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise PublishError(
                f"--results takes NAME=PATH (e.g. accuracy=results.json), got {item!r}"
            )
        named[name] = path
    return named


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scouter.publish", description=__doc__.splitlines()[0]
    )
    parser.add_argument("checkpoint", help=".ckpt, .safetensors export or model folder")
    parser.add_argument("--out", required=True, help="the model folder to write")
    parser.add_argument("--results", nargs="*", default=[], metavar="NAME=PATH")
    parser.add_argument("--recipe", help="the training config (YAML)")
    parser.add_argument("--command", help="the command that trained it")
    parser.add_argument("--name", help="model name (default: the --out folder's name)")
    parser.add_argument("--description", default="")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16"))
    parser.add_argument("--check", help="results NAME whose accuracy the zoo tests recompute")
    parser.add_argument("--tolerance", type=float, default=0.01)
    parser.add_argument("--class-names", help="comma-separated, in label order")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    from scouter.safe_loading import CheckpointError

    try:
        folder = publish(
            args.checkpoint,
            args.out,
            results=_named_paths(args.results),
            recipe=args.recipe,
            command=args.command,
            name=args.name,
            description=args.description,
            dtype=args.dtype,
            check=args.check,
            tolerance=args.tolerance,
            class_names=args.class_names.split(",") if args.class_names else None,
            overwrite=args.overwrite,
        )
    except (PublishError, CheckpointError, OSError) as err:
        print(f"publish: {err}", file=sys.stderr)
        return 2
    print(f"wrote {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
