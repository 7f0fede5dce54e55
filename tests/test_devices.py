"""The --device setting of evaluate.py and stylex.py attfind: one resolver, errors naming the fix."""

from __future__ import annotations

import pytest
import torch

from scouter.devices import resolve_device
from scouter.evaluation.options import EvaluationError
from scouter.stylex.errors import StylexInputError


def test_auto_and_named_devices():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("error", [ValueError, EvaluationError, StylexInputError])
def test_a_bad_device_raises_the_callers_error_naming_the_fix(error):
    with pytest.raises(error, match=r"--device 'nonsense' is not a device .*use auto, cpu or cuda"):
        resolve_device("nonsense", error)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_says_to_use_the_cpu():
    with pytest.raises(EvaluationError, match="CUDA is not available here; use --device cpu"):
        resolve_device("cuda:0", EvaluationError)
