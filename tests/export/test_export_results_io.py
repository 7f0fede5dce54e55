import csv
import hashlib
import json
import os

import numpy as np
import pytest
import torch

from scouter.export import (
    ResultsMismatchError,
    file_sha256,
    read_results,
    results_io,
    write_per_image_csv,
    write_results,
    write_results_json,
)


def test_results_json_converts_tensors_and_writes_nan_as_null(tmp_path):
    path = tmp_path / "run" / "results.json"
    results = {
        "checkpoint_sha256": "ab" * 32,
        "n_images": torch.tensor(3),
        "metrics": {"precision": {"value": torch.tensor(float("nan")), "nan_count": 3}},
        "curve": np.array([0.5, 0.25]),
    }
    write_results_json(path, results)
    loaded = json.loads(path.read_text())
    assert loaded == {
        "checkpoint_sha256": "ab" * 32,
        "n_images": 3,
        "metrics": {"precision": {"value": None, "nan_count": 3}},
        "curve": [0.5, 0.25],
    }


def test_per_image_csv_rows_in_order(tmp_path):
    path = tmp_path / "per_image.csv"
    rows = [
        {"id": "a", "label": 1, "explained": 1, "prediction": 0, "area": torch.tensor(0.25)},
        {"id": "b", "label": 2, "explained": 0, "prediction": 2, "area": float("nan")},
    ]
    write_per_image_csv(path, rows)
    with path.open() as handle:
        read = list(csv.DictReader(handle))
    assert [r["id"] for r in read] == ["a", "b"]
    assert read[0]["area"] == "0.25" and read[1]["area"] == ""
    assert list(read[0]) == ["id", "label", "explained", "prediction", "area"]


def test_unserialisable_results_leave_existing_file_untouched(tmp_path):
    path = tmp_path / "results.json"
    write_results_json(path, {"value": 1.0})
    before = path.read_bytes()
    with pytest.raises(TypeError):
        write_results_json(path, {"value": object()})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["results.json"]


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_interrupted_write_leaves_existing_file_untouched(tmp_path, monkeypatch, failing):
    path = tmp_path / "per_image.csv"
    write_per_image_csv(path, [{"id": "a", "area": 0.5}])
    before = path.read_bytes()

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt  # e.g. Ctrl-C after the data was (partly) written

    monkeypatch.setattr(os, failing, interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_per_image_csv(path, [{"id": f"img{i}", "area": 0.1} for i in range(1000)])
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["per_image.csv"]  # no temporary file left behind


def test_file_sha256(tmp_path):
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"weights" * 1000)
    assert file_sha256(path, chunk_size=100) == hashlib.sha256(b"weights" * 1000).hexdigest()


def _pair(folder):
    return {name: (folder / name).read_bytes() for name in ("results.json", "per_image.csv")}


def test_failed_second_write_keeps_the_old_pair_and_leaves_no_temporary_files(
    tmp_path, monkeypatch
):
    write_results(tmp_path, {"run": "old"}, [{"id": "a", "area": 0.5}])
    before = _pair(tmp_path)
    stage = results_io.stage_file
    calls = []

    def fail_second(path, data):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return stage(path, data)

    monkeypatch.setattr(results_io, "stage_file", fail_second)
    with pytest.raises(OSError, match="No space left"):
        write_results(tmp_path, {"run": "new"}, [{"id": "b", "area": 0.1}])
    assert [p.name for p in calls] == ["results.json", "per_image.csv"]
    assert _pair(tmp_path) == before
    assert sorted(os.listdir(tmp_path)) == ["per_image.csv", "results.json"]
    results, rows = read_results(tmp_path)
    assert results["run"] == "old" and rows == [{"id": "a", "area": "0.5"}]


def test_a_kill_between_the_two_renames_is_rolled_forward_at_the_next_start(tmp_path, monkeypatch):
    write_results(tmp_path, {"run": "old"}, [{"id": "a", "area": 0.5}])
    replace = os.replace

    def killed_at_the_csv(src, dst):
        if str(dst).endswith("per_image.csv"):
            raise KeyboardInterrupt  # stands for SIGKILL: nothing after this runs
        return replace(src, dst)

    monkeypatch.setattr(os, "replace", killed_at_the_csv)
    with pytest.raises(KeyboardInterrupt):
        write_results(tmp_path, {"run": "new"}, [{"id": "b", "area": 0.1}])
    monkeypatch.undo()
    assert json.loads((tmp_path / "results.json").read_text())["run"] == "new"  # mid-commit
    results, rows = read_results(tmp_path)  # a start recovers: the committed pair, complete
    assert results["run"] == "new" and rows == [{"id": "b", "area": "0.1"}]
    assert sorted(os.listdir(tmp_path)) == ["per_image.csv", "results.json"]


def test_a_pair_from_two_runs_is_reported_on_read(tmp_path):
    write_results(tmp_path, {"run": "a"}, [{"id": "a"}])
    old_csv = (tmp_path / "per_image.csv").read_bytes()
    write_results(tmp_path, {"run": "b"}, [{"id": "b"}])
    assert json.loads((tmp_path / "results.json").read_text())["files"]["per_image.csv"] == (
        hashlib.sha256((tmp_path / "per_image.csv").read_bytes()).hexdigest()
    )
    (tmp_path / "per_image.csv").write_bytes(old_csv)
    with pytest.raises(ResultsMismatchError, match="per_image.csv' is not the per-image table"):
        read_results(tmp_path)
