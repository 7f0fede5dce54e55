import csv
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

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


def _plain_read(folder):
    """What a reader without scouter does: the two files by their paths, and the safe read."""
    pairs = {"plain": folder}
    if os.path.lexists(folder / "latest"):
        pairs["safe"] = Path(os.path.realpath(folder / "latest"))
    read = {}
    for how, run in pairs.items():
        document = json.loads((run / "results.json").read_text())
        table = (run / "per_image.csv").read_bytes()
        assert document["files"]["per_image.csv"] == hashlib.sha256(table).hexdigest(), how
        rows = list(csv.DictReader(io.StringIO(table.decode())))
        assert [r["id"] for r in rows] == [document["run"]], how  # each run's rows name it
        read[how] = document["run"]
    return read


def test_failed_second_write_keeps_the_old_pair_and_leaves_no_temporary_files(
    tmp_path, monkeypatch
):
    write_results(tmp_path, {"run": "old"}, [{"id": "old", "area": 0.5}])
    before = _pair(tmp_path)
    write = results_io._write_private
    calls = []

    def fail_second(path, data):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return write(path, data)

    monkeypatch.setattr(results_io, "_write_private", fail_second)
    with pytest.raises(OSError, match="No space left"):
        write_results(tmp_path, {"run": "new"}, [{"id": "new", "area": 0.1}])
    assert [p.name for p in calls] == ["results.json", "per_image.csv"]
    assert _pair(tmp_path) == before
    assert sorted(os.listdir(tmp_path)) == [".results", "latest", "per_image.csv", "results.json"]
    assert len(os.listdir(tmp_path / ".results")) == 1  # the private folder is gone
    results, rows = read_results(tmp_path)
    assert results["run"] == "old" and rows == [{"id": "old", "area": "0.5"}]


def test_every_instant_of_a_commit_shows_readers_one_runs_pair(tmp_path, monkeypatch):
    """Issue 29 item 6: a plain reader at any step of a commit reads one run's two files."""
    write_results(tmp_path, {"run": "old"}, [{"id": "old"}])
    seen = []

    def probing(function):
        def probe(*args, **kwargs):
            seen.append(_plain_read(tmp_path))  # what a reader sees just before this step
            return function(*args, **kwargs)

        return probe

    for name in ("replace", "rename", "symlink", "unlink", "fsync"):
        monkeypatch.setattr(os, name, probing(getattr(os, name)))
    write_results(tmp_path, {"run": "new"}, [{"id": "new"}])
    monkeypatch.undo()
    seen.append(_plain_read(tmp_path))
    assert len(seen) > 5
    assert seen[0] == {"plain": "old", "safe": "old"} and seen[-1] == {
        "plain": "new",
        "safe": "new",
    }


KILL_SCRIPT = """
import json, os, signal, sys
from scouter.export import results_io

def write_killed_at(folder, step):
    calls = 0
    def killing(function):
        def call(*args, **kwargs):
            nonlocal calls
            calls += 1
            if calls == step:
                os.kill(os.getpid(), signal.SIGKILL)  # no cleanup runs: a real kill
            return function(*args, **kwargs)
        return call
    for name in ("replace", "rename", "symlink", "fsync"):
        setattr(os, name, killing(getattr(os, name)))
    results_io.write_results(folder, {"run": "new"}, [{"id": "new"}])

outcome = {}
for step in range(1, 60):
    folder = os.path.join(sys.argv[1], f"kill{step}")
    results_io.write_results(folder, {"run": "old"}, [{"id": "old"}])
    child = os.fork()  # one import of torch for all the steps
    if child == 0:
        write_killed_at(folder, step)
        os._exit(0)
    _, status = os.waitpid(child, 0)
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    outcome[folder] = "killed" if killed else os.WEXITSTATUS(status)
    if not killed:
        break
print(json.dumps(outcome))
"""


def test_a_kill_at_any_step_leaves_the_previous_pair_or_the_new_one_readable(tmp_path):
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    outcome = json.loads(done.stdout.splitlines()[-1])
    *killed, finished = outcome.items()
    assert len(killed) > 3 and all(how == "killed" for _, how in killed)
    assert finished[1] == 0 and _plain_read(Path(finished[0])) == {"plain": "new", "safe": "new"}
    olds = 0
    for folder, _ in killed:  # killed before each step in turn: old or new, never a mix
        folder = Path(folder)
        read = _plain_read(folder)
        assert read["plain"] == read["safe"] in ("old", "new"), (folder, read)
        assert read_results(folder)[0]["run"] == read["safe"]
        olds += read["safe"] == "old"
        # The next write tidies what the killed one left, and publishes.
        write_results(folder, {"run": "next"}, [{"id": "next"}])
        assert _plain_read(folder) == {"plain": "next", "safe": "next"}
        assert list(folder.rglob("*.tmp")) == []
    assert 0 < olds < len(killed)  # kills fell both before and after the commit point


def test_a_reader_that_resolved_latest_keeps_its_pair_through_the_next_commit(tmp_path):
    write_results(tmp_path, {"run": "a"}, [{"id": "a"}])
    run = Path(os.path.realpath(tmp_path / "latest"))
    write_results(tmp_path, {"run": "b"}, [{"id": "b"}])
    assert json.loads((run / "results.json").read_text())["run"] == "a"  # unchanged, still there
    assert (run / "per_image.csv").read_text().splitlines()[1] == "a"
    write_results(tmp_path, {"run": "c"}, [{"id": "c"}])
    assert not run.exists()  # two commits later: gone (an error for the reader, never a mix)
    assert len(os.listdir(tmp_path / ".results")) == 2
    assert read_results(tmp_path)[0]["run"] == "c"


def test_a_folder_of_the_earlier_layout_is_read_and_converted(tmp_path):
    # The earlier protocol killed between its two renames: json renamed, csv still staged.
    old = {"run": "old"}
    new_table = b"id\nnew\n"
    new = {"run": "new", "files": {"per_image.csv": hashlib.sha256(new_table).hexdigest()}}
    (tmp_path / "results.json").write_text(json.dumps(new))
    (tmp_path / "per_image.csv").write_text("id\nold\n")
    (tmp_path / ".per_image.csv.ab12.tmp").write_bytes(new_table)
    record = {"renames": [[".per_image.csv.ab12.tmp", "per_image.csv"]]}
    (tmp_path / ".results-commit.json").write_text(json.dumps(record))
    results, rows = read_results(tmp_path)
    assert results["run"] == "new" and rows == [{"id": "new"}]
    assert old != results
    write_results(tmp_path, {"run": "next"}, [{"id": "next"}])
    assert os.readlink(tmp_path / "results.json") == os.path.join("latest", "results.json")
    assert _plain_read(tmp_path) == {"plain": "next", "safe": "next"}


def test_a_latest_that_is_no_link_is_named_and_nothing_written(tmp_path):
    (tmp_path / "latest").mkdir()
    with pytest.raises(results_io.ResultsFolderError, match=r"latest' is not the link.*folder"):
        write_results(tmp_path, {"run": "a"}, [{"id": "a"}])
    assert sorted(os.listdir(tmp_path)) == ["latest"]


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
