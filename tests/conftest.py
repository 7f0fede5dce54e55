"""Shared fixtures: the original implementation's test vectors and small deterministic settings."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
#: The original implementation's test vectors: ``$SCOUTER_ORACLE_DIR``, else where CI puts them.
ORACLE_ENV = "SCOUTER_ORACLE_DIR"
ORACLE_DIR = Path(os.environ.get(ORACLE_ENV) or SHARED / "oracle" / "head_vectors")
ORACLE_MISSING = (
    f"the original SCOUTER implementation's test vectors (head_vectors/*.pt) are not at "
    f"{ORACLE_DIR}: they are not part of this repository — they were produced by running the "
    "original code (github.com/wbw520/scouter, commit 5885b82) on random inputs and weights, and "
    f"CI provides them; to run these exactness tests, set {ORACLE_ENV} to a folder of those files"
)

# One thread per process, for the tests and for every process they start (train.py, evaluate.py,
# DDP workers and bench drivers inherit os.environ). Every OpenMP parallel region waits for its
# slowest thread: on a busy machine the scheduler sets one of two threads aside for other processes
# and every small op stalls, spinning meanwhile. The suite collapsed so (one test 18 s alone,
# 1 056 s beside a training); one thread per process degrades only as much as the machine does.
# bench/RESULTS.md "Test suite threads" has the measurements; SCOUTER_TEST_THREADS=N compares.
TEST_THREADS = os.environ.get("SCOUTER_TEST_THREADS", "1")
for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_name] = TEST_THREADS
torch.set_num_threads(int(TEST_THREADS))

# Dataset caches (composites) of the whole session, subprocesses included, go to a temporary
# folder, never into the user's home.
_CACHE = tempfile.mkdtemp(prefix="scouter-test-cache-")
os.environ["SCOUTER_CACHE_DIR"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)


def oracle_files() -> list[Path]:
    """The oracle vector files, or an empty list when ../shared is absent."""
    return sorted(ORACLE_DIR.glob("*.pt")) if ORACLE_DIR.is_dir() else []


@pytest.fixture(autouse=True)
def _command_line_of_its_own(monkeypatch):
    """Commands run in-process (``main([...])``) see no pytest arguments in ``sys.argv``.

    LightningCLI warns when it is given ``args`` while ``sys.argv`` holds more (pytest's own
    arguments), and would parse pytest's arguments where ``args`` is None.
    """
    monkeypatch.setattr(sys, "argv", sys.argv[:1])


@pytest.fixture(scope="session")
def oracle_dir() -> Path:
    """The oracle vectors (:data:`ORACLE_DIR`); skipped in a user's clone, required in CI."""
    if not ORACLE_DIR.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide the oracle vectors at {ORACLE_DIR}")
        pytest.skip(ORACLE_MISSING)
    return ORACLE_DIR
