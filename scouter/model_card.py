"""Model cards: the ``README.md`` of a published model folder, generated from its evaluations.

A card starts with the Hugging Face Hub's YAML metadata (``library_name``, ``license``, ``tags``,
``datasets``, ``metrics``, a ``model-index`` with the results) plus a ``scouter:`` block holding the
numbers scouter's own tools read back (:func:`card_summary`: the README's zoo table, the zoo
tests' accuracy check). Its sections say what the model is, how it was trained (the recipe and the
command), its evaluation (a table generated from ``evaluate.py`` results.json documents), how to
load and explain it, and the citation. Every number comes from a results document, which the
model folder keeps under ``results/``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

__all__ = [
    "CITATION",
    "card_summary",
    "evaluation_rows",
    "read_front_matter",
    "render_card",
    "zoo_table",
]

CITATION = """@inproceedings{li2021scouter,
  title     = {{SCOUTER}: Slot Attention-based Classifier for Explainable Image Recognition},
  author    = {Li, Liangzhi and Wang, Bowen and Verma, Manisha and Nakashima, Yuta and
               Kawasaki, Ryo and Nagahara, Hajime},
  booktitle = {Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},
  pages     = {1046--1055},
  year      = {2021}
}"""

_VARIANT_NAMES = {"fc": "FC", "scouter_pos": "SCOUTER+", "scouter_neg": "SCOUTER−"}
_EXPLANATION_METRICS = ("area", "precision", "insertion", "deletion")


def _value(doc: Mapping[str, Any] | None) -> float | None:
    if not doc:
        return None
    value = doc.get("value")
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def evaluation_rows(results: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The card's numbers from ``{name: results.json}``: accuracy and each explainer's metrics.

    Each number keeps the name of the results document and the image count it comes from.

    Returns:
        ``{"dataset", "split", "accuracy": {value, images, source} | None,
        "explainers": {explainer: {metric: {value, images, source}}}}``.
    """
    summary: dict[str, Any] = {"dataset": None, "split": None, "accuracy": None, "explainers": {}}
    for name, doc in results.items():
        dataset = doc.get("dataset", {})
        summary["dataset"] = summary["dataset"] or dataset.get("name")
        summary["split"] = summary["split"] or dataset.get("split")
        images = int(doc.get("num_images", 0))
        accuracy = _value(doc.get("metrics", {}).get("accuracy"))
        best = summary["accuracy"]
        if accuracy is not None and (best is None or images > best["images"]):
            summary["accuracy"] = {"value": accuracy, "images": images, "source": name}
        for explainer, entry in doc.get("explanations", {}).items():
            row = summary["explainers"].setdefault(explainer, {})
            for metric in _EXPLANATION_METRICS:
                value = _value(entry.get("metrics", {}).get(metric))
                if value is not None and images > row.get(metric, {}).get("images", -1):
                    row[metric] = {"value": value, "images": images, "source": name}
    return summary


def _cell(entry: Mapping[str, Any] | None) -> str:
    return "–" if not entry else f"{entry['value']:.3f} ({entry['images']})"


def _evaluation_table(rows: Mapping[str, Any]) -> list[str]:
    lines = [
        f"Dataset `{rows['dataset']}`, split `{rows['split']}`. Accuracy: **{_cell(rows['accuracy'])}**"
        " (numbers in brackets: the images each figure was measured on; every figure is in a "
        "`results/*.json` file of this folder, written by `evaluate.py`).",
        "",
        "| explainer | area ↓ | precision ↑ | insertion ↑ | deletion ↓ |",
        "|---|---|---|---|---|",
    ]
    for explainer, entries in rows["explainers"].items():
        cells = " | ".join(_cell(entries.get(metric)) for metric in _EXPLANATION_METRICS)
        lines.append(f"| {explainer} | {cells} |")
    return [*lines, ""]


def render_card(
    model: Any,
    *,
    name: str,
    results: Mapping[str, Mapping[str, Any]],
    description: str = "",
    recipe: str | None = None,
    command: str | None = None,
    check: Mapping[str, Any] | None = None,
    license: str = "mit",
    size_mb: float | None = None,
    notes: Sequence[str] = (),
) -> str:
    """The model card (``README.md``) of ``model``.

    Args:
        model: the classifier (config, data config, class names are read from it).
        name: the model's name (zoo entry / Hub repository name).
        results: ``{name: evaluate.py results.json}``; their numbers fill the evaluation table.
        description: one paragraph on what the model is for.
        recipe: the training config (YAML text).
        command: the command that trained (and evaluated) it.
        check: ``{"results": <name in results>, "tolerance": float}``: the reproducibility check
            (accuracy on a fixed subset that the zoo tests recompute).
        license: the Hub's license identifier.
        size_mb: the weights file's size.
        notes: extra lines for the evaluation section (protocol details).
    """
    config = model.config
    rows = evaluation_rows(results)
    if rows["dataset"] is None and recipe:  # not evaluated yet: the dataset it was trained on
        rows["dataset"] = ((yaml.safe_load(recipe) or {}).get("data") or {}).get("dataset")
    size = model.data_config.input_size if model.data_config is not None else None
    grid = list(model.attention_grid(size)) if size is not None else None
    variant = _VARIANT_NAMES[config.variant]
    default_explainer = "slot" if config.head == "xslot" else "gradcam"
    summary: dict[str, Any] = {
        "entry": name,
        "variant": config.variant,
        "backbone": config.backbone,
        "dataset": rows["dataset"],
        "split": rows["split"],
        "input_size": list(size) if size else None,
        "grid": grid,
        "accuracy": rows["accuracy"],
        "explainer": default_explainer,
        "explanation": rows["explainers"].get(default_explainer, {}),
        "size_mb": round(size_mb, 2) if size_mb is not None else None,
        "command": command,
    }
    if check is not None:
        doc = results[check["results"]]
        summary["check"] = {
            "results": check["results"],
            "images": int(doc["num_images"]),
            "accuracy": _value(doc["metrics"]["accuracy"]),
            "tolerance": float(check["tolerance"]),
        }
    metrics = []
    if rows["accuracy"] is not None:
        metrics.append({"type": "accuracy", "value": rows["accuracy"]["value"], "name": "accuracy"})
    for explainer, entries in rows["explainers"].items():
        for metric, entry in entries.items():
            metrics.append(
                {
                    "type": f"explanation-{metric}",
                    "value": entry["value"],
                    "name": f"{explainer} {metric}",
                }
            )
    front = {
        "library_name": "scouter",
        "license": license,
        "pipeline_tag": "image-classification",
        "tags": ["image-classification", "explainability", "scouter", "slot-attention", "timm"],
        "datasets": [rows["dataset"]] if rows["dataset"] else [],
        "metrics": ["accuracy"],
        "model-index": [
            {
                "name": name,
                "results": [
                    {
                        "task": {"type": "image-classification"},
                        "dataset": {
                            "name": rows["dataset"],
                            "type": rows["dataset"],
                            "split": rows["split"],
                        },
                        "metrics": metrics,
                    }
                ],
            }
        ],
        "scouter": summary,
    }
    head = "xSlot (SCOUTER) head" if config.head == "xslot" else "FC head (global pool + linear)"
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip(),
        "---",
        "",
        f"# {name}",
        "",
        description,
        "",
        "## Model",
        "",
        "| | |",
        "|---|---|",
        f"| variant | {variant} |",
        f"| backbone | timm `{config.backbone}` ({config.in_chans} input channel{'s' if config.in_chans > 1 else ''}) |",
        f"| head | {head} |",
        f"| classes | {config.num_classes}"
        + (f": {', '.join(model.class_names)}" if model.class_names else "")
        + " |",
        f"| input | {size[0]}×{size[1]} px, mean {list(model.data_config.mean)}, std {list(model.data_config.std)} |"
        if size
        else "| input | not stored |",
        f"| explanation grid | {grid[0]}×{grid[1]} cells |" if grid else "| explanation grid | – |",
    ]
    if config.head == "xslot":
        lines += [
            f"| slots per class | {config.slots_per_class} |",
            f"| sign e | {config.sign:+d} ({'why it is this class' if config.sign > 0 else 'why it is not'}) |",
            f"| hidden dim / key layers / iterations | {config.hidden_dim} / {config.to_k_layers} / {config.iterations} |",
            f"| attention normalisation | {config.attention_norm} |",
        ]
    if size_mb is not None:
        lines.append(f"| weights | {size_mb:.2f} MB (`model.safetensors`) |")
    lines += ["", "## Training", ""]
    if command:
        lines += ["```bash", command, "```", ""]
    if recipe:
        lines += [
            "The recipe (`recipe.yaml` in this folder):",
            "",
            "```yaml",
            recipe.rstrip(),
            "```",
            "",
        ]
    lines += ["## Evaluation", ""]
    if not results:
        lines += ["Not evaluated yet: run `evaluate.py` and publish again with `--results`.", ""]
    else:
        lines += _evaluation_table(rows)
    lines += list(notes)
    if check is not None:
        c = summary["check"]
        lines += [
            "",
            f"Reproducibility check: accuracy on the first {c['images']} test images is "
            f"{c['accuracy']:.4f}; `tests/zoo/test_zoo_models.py` recomputes it from these weights and "
            f"requires it within ±{c['tolerance']} (float16 weights, other CPUs).",
        ]
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "import scouter",
        "",  # as ruff formats the block (cards are formatted with the repository)
        f'model = scouter.create_model("{name}", pretrained=True)',
        'result = model.explain("my_image.png")  # prediction, probabilities, map at input size',
        "print(result.predicted_names, result.probabilities.max().item())",
        'result.save("explanations/")  # overlay PNGs',
        "```",
        "",
        "## Citation",
        "",
        "```bibtex",
        CITATION,
        "```",
        "",
    ]
    return "\n".join(lines)


def read_front_matter(text: str) -> dict[str, Any]:
    """The YAML metadata between the card's leading ``---`` lines.

    Raises:
        ValueError: the text does not start with a ``---`` block.
    """
    if not text.startswith("---\n"):
        raise ValueError("a model card starts with a '---' YAML metadata block")
    end = text.index("\n---\n", 4)
    return yaml.safe_load(text[4:end]) or {}


def card_summary(text: str) -> dict[str, Any]:
    """The ``scouter:`` block of a card (the numbers scouter's tools read back)."""
    return read_front_matter(text).get("scouter", {})


def zoo_table(folders: Sequence[Any]) -> str:
    """The README's model-zoo table (Markdown) from the cards of model ``folders``.

    One row per model: its name, dataset, map grid, accuracy and the area / precision of its
    default explanation (SCOUTER's own ``slot`` maps, Grad-CAM for FC), each with the images it
    was measured on, the weights' size and the command that reproduces the row.
    """
    lines = [
        "| model | dataset | grid | accuracy | explainer | area ↓ | precision ↑ | size | reproduce |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for folder in folders:
        s = card_summary((folder / "README.md").read_text(encoding="utf-8"))
        grid = "×".join(map(str, s["grid"])) if s.get("grid") else "–"
        explanation = s.get("explanation") or {}
        lines.append(
            f"| `{s['entry']}` | {s['dataset']} | {grid} | {_cell(s.get('accuracy'))} | "
            f"{s['explainer']} | {_cell(explanation.get('area'))} | "
            f"{_cell(explanation.get('precision'))} | {s['size_mb']:.1f} MB | "
            f"`python bench/zoo.py --all-numbers --only {s['entry']}` |"
        )
    return "\n".join(lines)
