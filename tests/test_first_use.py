"""First-use details (issue 30, item 10): the demo's header, in-process commands under pytest,
and the reason the original implementation's exactness tests give when they skip."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_demo_header_says_what_the_demo_does():
    header = "".join(
        line for line in (REPO / "scripts" / "demo.sh").read_text().splitlines(True)[:6]
    )
    assert "once evaluate.py lands" not in header
    assert "evaluate.py" in header and "HTML report" in header


def test_commands_run_in_process_see_no_pytest_arguments(capsys):
    from scouter.training.cli import main

    assert sys.argv == sys.argv[:1]  # the autouse fixture of tests/conftest.py
    config = REPO / "configs" / "fashion_mnist" / "fc.yaml"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            main(["fit", "--config", str(config), "--print_config"])
        except SystemExit as stop:
            assert stop.code in (0, None)
    assert "model:" in capsys.readouterr().out
    assert not [w for w in caught if "args parameter is intended" in str(w.message)]


def test_a_missing_oracle_says_where_the_vectors_come_from_and_what_to_set(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(SCOUTER_ORACLE_DIR=str(tmp_path / "absent"), OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         "tests/metrics/test_metric_area.py", "-k", "original"],
        cwd=REPO, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 skipped" in done.stdout
    skipped = " ".join(done.stdout.split())  # the reason, unwrapped
    assert f"are not at {tmp_path / 'absent'}" in skipped
    assert "github.com/wbw520/scouter" in skipped and "set SCOUTER_ORACLE_DIR" in skipped


def test_the_readme_gives_a_cpu_only_torch_install_outside_the_ci_block():
    readme = (REPO / "README.md").read_text()
    install = readme[readme.index("## Install") : readme.index("## Test")]
    hint = "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu"
    before, ci_block = install.split("<!-- ci:install -->")
    assert hint in before and hint not in ci_block  # CI keeps installing what it did


def test_the_readme_stylex_example_uses_the_path_its_classifier_run_writes():
    """Issue 30, item 8: no ``checkpoints/<the run>/`` placeholder; the classifier validates."""
    import shlex

    import yaml

    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## StylEx: attributes") :]
    block = section[section.index("```bash") + len("```bash") : section.index("```\n", 10)]
    commands = [
        shlex.split(c.split("#")[0]) for c in block.replace("\\\n", " ").splitlines() if c.strip()
    ]
    train = next(c for c in commands if c[1] == "train.py")
    stylex = next(c for c in commands if c[1:3] == ["stylex.py", "fit"])
    config = yaml.safe_load((REPO / train[train.index("--config") + 1]).read_text())
    (checkpoint,) = [
        c["init_args"] for c in config["trainer"]["callbacks"] if "Checkpoint" in c["class_path"]
    ]
    assert config["model"]["head"] == "fc"  # ScouterCheckpoint's {run} of an FC model
    written = checkpoint["dirpath"].replace("{run}", "fc") + "/last.ckpt"
    assert stylex[stylex.index("--model.classifier") + 1] == written
    assert "<" not in " ".join(stylex)
    # A validation runs before max_steps ends, so the monitored checkpoints are written too.
    steps = int(train[train.index("--trainer.max_steps") + 1])
    interval = int(train[train.index("--trainer.val_check_interval") + 1])
    assert checkpoint["monitor"] == "val/acc" and interval <= steps and steps % interval == 0


def test_the_docs_say_stylex_progress_ends_at_half_and_give_a_working_folder_override():
    """Issue 30, items 5 and 8: max_steps counts two optimiser steps per batch; the dotted
    ``--trainer.callbacks.dirpath`` (which fails on a list of callbacks) is not offered."""
    stylex = (REPO / "docs" / "stylex.md").read_text()
    readme = (REPO / "README.md").read_text()
    commands = stylex[stylex.index("## Commands") : stylex.index("Shipped configs")]
    assert "--trainer.callbacks.dirpath checkpoints" not in commands
    assert (
        "--config baseline.yaml" in commands and "dirpath: checkpoints/stylex/baseline" in commands
    )
    for text in (stylex, readme):
        flat = " ".join(text.split())
        assert "two per batch" in flat and "the bar at 50 %" in flat


def test_the_readme_says_where_to_run_the_explain_example():
    """Issue 30, item 9: the clone's ``scouter/`` folder shadows the package one level up."""
    readme = " ".join((REPO / "README.md").read_text().split())
    explain = readme[readme.index("## Explain") : readme.index("## StylEx")]
    assert "runs as written when saved as a script in the repository root" in explain
    assert "Python searches the script's own folder first" in explain
    assert "cannot import name 'get_explainer' from 'scouter' (unknown location)" in explain
