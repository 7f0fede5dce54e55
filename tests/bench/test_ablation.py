"""bench/ablation.py: variant configs, run names per seed and the table (no training here)."""

from __future__ import annotations

import argparse
import json

from bench import ablation


def _args(tmp_path, seed: int = 0) -> argparse.Namespace:
    return argparse.Namespace(samples=2000, epochs=3, seed=seed, out=tmp_path)


def test_a_variant_changes_only_what_it_names(tmp_path):
    recipe = ablation.variant_config("pos_recipe_lam3", _args(tmp_path))
    power1 = ablation.variant_config("pos_recipe_power1", _args(tmp_path))
    assert recipe["model"]["power"] == 2 and power1["model"]["power"] == 1
    assert {**power1["model"], "power": 2} == recipe["model"]
    slots = ablation.variant_config("pos_recipe_s2", _args(tmp_path))
    assert slots["model"]["slots_per_class"] == 2
    assert slots["data"]["dataset_options"]["num_samples"] == 2000
    fc = ablation.variant_config("fc_os16_headlr", _args(tmp_path))
    assert fc["model"]["head"] == "fc" and "fc_warmup_epochs" not in fc["model"]


def test_seed_zero_keeps_the_variant_name():
    assert ablation.run_name("pos_recipe_lam3", 0) == "pos_recipe_lam3"
    assert ablation.run_name("pos_recipe_lam3", 2) == "pos_recipe_lam3-seed2"


def _row(variant: str, seed: int, precision: float, contribution: float | None) -> dict:
    row = {
        "variant": ablation.run_name(variant, seed),
        "seed": seed,
        "what": "stale label",
        "accuracy": 0.5,
        "explainer": "slot",
        "area": 0.4,
        "precision": precision,
        "train_seconds": 12.0,
        "val_acc": [0.3, 0.4],
    }
    if contribution is not None:
        row.update(contribution_area=0.25, contribution_precision=contribution)
    return row


def test_tables_follow_variant_order_with_seeds_and_contribution_column(tmp_path):
    rows = tmp_path / "rows"
    rows.mkdir()
    for row in (
        _row("pos_recipe_lam3", 1, 0.2, 0.33),
        _row("pos_recipe_lam3", 0, 0.3, 0.40),
        {**_row("fc_os16_headlr", 0, 0.39, None), "explainer": "gradcam"},
    ):
        (rows / f"{row['variant']}.json").write_text(json.dumps(row))
    ablation.write_tables(tmp_path)
    ordered = json.loads((tmp_path / "ablation.json").read_text())
    assert [r["variant"] for r in ordered] == [
        "fc_os16_headlr",
        "pos_recipe_lam3",
        "pos_recipe_lam3-seed1",
    ]
    assert ordered[1]["what"] == ablation.VARIANTS["pos_recipe_lam3"][2]
    table = (tmp_path / "ablation.md").read_text().splitlines()
    assert "`slot_contribution` area ↓ / precision ↑" in table[0]
    assert "| 0.250 / 0.400 |" in table[3] and "| – |" in table[2]
