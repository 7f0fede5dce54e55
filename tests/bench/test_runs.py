"""bench/runs.py: the benchmarks' one run driver (layouts, a fit done once, cached evaluations)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from bench import runs

REPO = Path(__file__).resolve().parents[2]


def _config() -> dict:
    return yaml.safe_load((REPO / "configs" / "fashion_mnist" / "fc.yaml").read_text())


class FakeCommands:
    """Stands in for train.py / evaluate.py: writes what they would, records each call."""

    def __init__(self, explainers: tuple[str, ...] = ("gradcam",)) -> None:
        self.calls: list[list[str]] = []
        self.explainers = explainers

    def __call__(self, cmd: list[str], log: Path) -> float:
        self.calls.append(cmd)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("ok\n")
        if cmd[1] == "train.py":
            config = yaml.safe_load(Path(cmd[cmd.index("--config") + 1]).read_text())
            (checkpoint,) = [
                c for c in config["trainer"]["callbacks"] if "Checkpoint" in c["class_path"]
            ]
            folder = Path(checkpoint["init_args"]["dirpath"])
            folder.mkdir(parents=True)
            for name in ("r-epoch001-step000010.ckpt", "r-epoch000-step000005.ckpt", "last.ckpt"):
                (folder / name).write_bytes(b"")
            return 12.34
        out = Path(cmd[cmd.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        names = cmd[cmd.index("--explainers") + 1].split(",") if "--explainers" in cmd else []
        names = names or list(self.explainers)
        doc = {
            "explanations": {n: {"checkpoint": cmd[cmd.index("--checkpoint") + 1]} for n in names}
        }
        (out / "results.json").write_text(json.dumps(doc))
        return 1.0


def test_spread_layout_fits_once_and_caches_evaluations(tmp_path, monkeypatch):
    fake = FakeCommands()
    monkeypatch.setattr(runs, "run_logged", fake)
    run = runs.Run(**runs.spread(tmp_path, "composites/pos-lam3"), device="cuda")
    run.fit(_config())
    # The layout of the results already in bench/ (ablation, reproduce).
    assert run.config == tmp_path / "configs" / "composites" / "pos-lam3.yaml"
    assert (tmp_path / "logs" / "composites" / "pos-lam3-fit.log").is_file()
    assert run.seconds == 12.3
    written = yaml.safe_load(run.config.read_text())
    assert written["trainer"]["enable_progress_bar"] is False
    assert all(
        log["init_args"]["save_dir"] == str(tmp_path / "runs" / "composites" / "pos-lam3")
        for log in written["trainer"]["logger"]
    )
    # The best checkpoint is the newest epoch's, never last.ckpt.
    assert run.best().name == "r-epoch001-step000010.ckpt"

    run.fit(_config())  # the same config again: nothing is retrained
    assert len(fake.calls) == 1
    first = run.evaluate("maps", "area,precision", 8, "gradcam")
    assert (
        "--limit" in fake.calls[-1]
        and fake.calls[-1][fake.calls[-1].index("--device") + 1] == "cuda"
    )
    assert first["explanations"]["gradcam"]["checkpoint"].endswith("r-epoch001-step000010.ckpt")
    assert (tmp_path / "logs" / "composites" / "pos-lam3-maps.log").is_file()
    assert run.evaluate("maps", "area,precision", 8, "gradcam") == first
    assert len(fake.calls) == 2  # reused
    # An explainer the cached results lack is evaluated.
    run.evaluate("maps", "area,precision", 8, "gradcam,ig")
    assert len(fake.calls) == 3


def test_a_changed_config_retrains_cleanly(tmp_path, monkeypatch):
    fake = FakeCommands()
    monkeypatch.setattr(runs, "run_logged", fake)
    run = runs.Run(**runs.in_folder(tmp_path / "seed0"))
    run.fit(_config())
    run.evaluate("accuracy", "accuracy")
    assert (run.results / "accuracy" / "results.json").is_file()
    changed = _config()
    changed["model"]["lr"] = 0.5
    run.fit(changed)
    assert [c[1] for c in fake.calls] == ["train.py", "evaluate.py", "train.py"]
    assert not run.results.exists()  # evaluations of the old model are gone with it
    assert yaml.safe_load(run.config.read_text())["model"]["lr"] == 0.5
    assert (
        tmp_path / "seed0" / "fit.log"
    ).is_file() and run.timing == tmp_path / "seed0" / "fit.seconds"


def test_a_run_without_a_best_checkpoint_names_its_log(tmp_path):
    run = runs.Run(**runs.spread(tmp_path, "broken"))
    with pytest.raises(RuntimeError, match=r"no best checkpoint; see .*broken-fit\.log"):
        run.best()


def test_run_logged_times_a_command_and_names_the_log_of_a_failing_one(tmp_path):
    seconds = runs.run_logged([sys.executable, "-c", "print('hi')"], tmp_path / "a" / "ok.log")
    assert seconds > 0 and (tmp_path / "a" / "ok.log").read_text() == "hi\n"
    log = tmp_path / "bad.log"
    with pytest.raises(runs.RunFailed, match=r"failed \(exit 4\); see .*bad\.log") as err:
        runs.run_logged([sys.executable, "-c", "raise SystemExit(4)"], log)
    assert err.value.returncode == 4 and err.value.log == log
