"""``num_workers`` / ``pin_memory`` ``"auto"``: derived from the machine and the accelerator."""

from __future__ import annotations

import pytest

from scouter.data import ScouterDataModule
from scouter.data.loading import resolve_num_workers, resolve_pin_memory, trainer_accelerator


@pytest.mark.parametrize(
    "accelerator, cpus, processes, expected",
    [
        ("cpu", 1, 1, 0),
        ("cpu", 2, 1, 0),  # the steps use both cores: workers would only compete
        ("cpu", 16, 1, 4),
        ("cpu", 64, 1, 4),
        ("gpu", 2, 1, 1),  # one core left for the main process
        ("gpu", 16, 1, 8),
        ("gpu", 16, 4, 3),  # four processes share 16 cores
        ("gpu", 1, 1, 0),
    ],
)
def test_auto_workers_follow_the_rules(accelerator, cpus, processes, expected):
    got = resolve_num_workers("auto", accelerator=accelerator, processes=processes, cpus=cpus)
    assert got == expected
    assert resolve_num_workers(3, accelerator=accelerator, cpus=cpus) == 3  # explicit wins


def test_auto_pins_memory_on_gpus_only():
    assert resolve_pin_memory("auto", accelerator="gpu") is True
    assert resolve_pin_memory("auto", accelerator="cpu") is False
    assert resolve_pin_memory(True, accelerator="cpu") is True


def test_datamodule_defaults_are_auto_and_resolve_per_accelerator(monkeypatch):
    monkeypatch.setattr("scouter.data.loading.available_cpus", lambda: 8)
    data = ScouterDataModule(dataset="fashion_mnist")
    assert (data.num_workers, data.pin_memory) == ("auto", "auto")
    assert data.loader_settings() == {  # no trainer: CPU
        "num_workers": 2,
        "pin_memory": False,
        "persistent_workers": True,
    }
    assert data.loader_settings("gpu") == {
        "num_workers": 7,
        "pin_memory": True,
        "persistent_workers": True,
    }
    assert trainer_accelerator(None) == ("cpu", 1)


@pytest.mark.parametrize("value", [-1, 1.5, "four", True])
def test_bad_num_workers_names_the_setting(value):
    with pytest.raises(ValueError, match=r"data.num_workers must be an integer >= 0 or 'auto'"):
        ScouterDataModule(dataset="fashion_mnist", num_workers=value)


def test_bad_pin_memory_names_the_setting():
    with pytest.raises(ValueError, match=r"data.pin_memory must be true, false or 'auto'"):
        ScouterDataModule(dataset="fashion_mnist", pin_memory="yes")
