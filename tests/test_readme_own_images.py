"""README "Train on your own images" runs as written (issue 30, item 5): the shell block after
``<!-- own-images -->`` is run by bash in a folder holding a tiny image tree (3 classes × 12
PNGs of 32 px, no val/ or test/), next to the repository's commands and configs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def own_images_block() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Train on your own images") :]
    section = section[section.index("<!-- own-images -->") :]
    start = section.index("```bash\n") + len("```bash\n")
    return section[start : section.index("\n```\n", start)]


def _tiny_tree(root: Path) -> None:
    rng = np.random.default_rng(0)
    for k, name in enumerate(("circle", "square", "stripes")):
        folder = root / "train" / name
        folder.mkdir(parents=True)
        for i in range(12):
            image = rng.integers(0, 60, (32, 32, 3), dtype=np.uint8)
            image[8:24, 8:24, k] = 255  # each class its own colour
            Image.fromarray(image).save(folder / f"{i}.png")


def test_the_own_images_section_runs_as_written(tmp_path):
    for name in ("train.py", "evaluate.py", "configs"):
        (tmp_path / name).symlink_to(REPO / name)
    _tiny_tree(tmp_path / "mydata")
    Image.open(tmp_path / "mydata" / "train" / "square" / "0.png").save(tmp_path / "my.png")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", own_images_block()],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    # The folders the section names, and only those.
    assert (tmp_path / "checkpoints" / "mine" / "last.ckpt").is_file()
    assert (tmp_path / "runs" / "mine" / "csv" / "version_0" / "config.yaml").is_file()
    assert not (tmp_path / "checkpoints" / "fashion_mnist").exists()
    assert not (tmp_path / "runs" / "fashion_mnist").exists()
    results = json.loads((tmp_path / "results" / "mine" / "results.json").read_text())
    # No test/ folder: the held-out validation share (data.val_fraction 0.1 of 36, stratified,
    # at least one per class) was evaluated, and results.json says so.
    assert results["dataset"]["split"] == "val" and 3 <= results["num_images"] <= 6
    assert "results are validation results" in results["dataset"]["split_note"]
    assert 0.0 <= results["metrics"]["accuracy"]["value"] <= 1.0
    assert (tmp_path / "results" / "mine" / "report" / "report.html").is_file()
    prediction = done.stdout.strip().splitlines()[-1]
    assert prediction.startswith("tensor([") and prediction[len("tensor([")] in "012"
