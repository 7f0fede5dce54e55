"""Shared fixtures: the original implementation's test vectors and small deterministic settings."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
ORACLE_DIR = SHARED / "oracle" / "head_vectors"

# Two cores here: more threads than that only add contention.
torch.set_num_threads(min(2, os.cpu_count() or 1))

# Dataset caches (composites) of the whole session, subprocesses included, go to a temporary
# folder, never into the user's home.
_CACHE = tempfile.mkdtemp(prefix="scouter-test-cache-")
os.environ["SCOUTER_CACHE_DIR"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)


def oracle_files() -> list[Path]:
    """The oracle vector files, or an empty list when ../shared is absent."""
    return sorted(ORACLE_DIR.glob("*.pt")) if ORACLE_DIR.is_dir() else []


@pytest.fixture(scope="session")
def oracle_dir() -> Path:
    """``../shared/oracle/head_vectors``; skipped in a user's clone, required in CI."""
    if not ORACLE_DIR.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide the oracle vectors at {ORACLE_DIR}")
        pytest.skip(f"original-implementation test vectors not found at {ORACLE_DIR}")
    return ORACLE_DIR
