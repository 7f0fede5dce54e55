"""bench/stylex.py: the fits side by side, and the results table it writes."""

from __future__ import annotations

import sys

import pytest

from bench import stylex as bench


def test_fits_side_by_side_time_each_and_name_the_failing_one(tmp_path):
    seconds = bench.fit_side_by_side(
        {
            "quick": [sys.executable, "-c", "print('quick')"],
            "slow": [sys.executable, "-c", "import time; time.sleep(1.5); print('slow')"],
        },
        tmp_path,
    )
    assert set(seconds) == {"quick", "slow"} and seconds["slow"] >= 1.5 > seconds["quick"]
    assert (tmp_path / "slow.log").read_text().strip() == "slow"  # each fit's output in its log
    with pytest.raises(SystemExit, match="broken training failed \\(exit 3\\)"):
        bench.fit_side_by_side({"broken": [sys.executable, "-c", "raise SystemExit(3)"]}, tmp_path)


def bench_results(attfind: dict, **extra) -> dict:
    """What bench/stylex.py collects around one AttFind run's metrics."""
    return {
        "machine": "m",
        "command": "c",
        "classifier_steps": 300,
        "classifier_seconds": 20.0,
        "steps": 20000,
        "stylex_seconds": 1200.0,
        "baseline_seconds": 1100.0,
        "attfind_command_seconds": 600.0,
        "attfind": attfind,
        **extra,
    }


def run_metrics(**extra) -> dict:
    """The run-level entries of an AttFind metrics.json."""
    return {
        "images": 200,
        "style_space_size": 336,
        "attfind_seconds": 120.0,
        "reconstruction_l1": 0.1,
        "agreement": 0.97,
        "kl": 0.01,
        **extra,
    }


def test_table_shows_held_out_rows_and_the_attfind_settings():
    curve = [0.1 * k for k in range(1, 11)]
    attfind = run_metrics(
        stable_images=190,
        baseline_stable_images=180,
        effect="probability",
        shift=2.0,
        threshold=0.3,
        explained_threshold=0.2,
        held_out_images=1000,
        **{f"mean_{k}": curve for k in ("sufficiency", "random", "baseline")},
        **{f"mean_held_out_{k}": curve for k in ("sufficiency", "random", "baseline")},
    )
    results = bench_results(
        attfind,
        classifier_config="configs/fashion_mnist/scouter_pos.yaml",
        classifier_accuracy=0.8427,
        classifier_test_images=10000,
        fits_side_by_side=True,
    )
    text = bench.table(results)
    assert "| StylEx, 1000 held-out images | 0.10 | 0.20 |" in text
    assert "| baseline, 1000 held-out images |" in text
    assert (
        "classifier training (300 steps, `configs/fashion_mnist/scouter_pos.yaml`) | 20 s |" in text
    )
    assert "(both at once, sharing the CPU) | 20.0 min |" in text
    assert "effects in probability change (signed means), shift 2, thresholds 0.3" in text
    assert "stable images: StylEx 190, baseline 180" in text


def test_table_shows_how_far_the_attributes_together_move_the_images():
    def entry(pixel, change, refused):
        return {
            "pixel_l1": pixel,
            "discriminator_change": change,
            "discriminator_rejected": refused,
        }

    attfind = run_metrics(
        stable_images=200,
        discriminator_filter=True,
        discriminator_threshold=0.2,
        discriminator_images=10,
        discriminator_scale=0.25,
        baseline_discriminator_scale=0.2,
        targets={
            "a": {"realism": entry(0.1, 0.2, [5]), "baseline_realism": entry(0.3, 0.4, [])},
            "b": {"realism": entry(0.3, 0.4, [7, 9]), "baseline_realism": entry(0.5, None, [1])},
        },
    )
    results = bench_results(attfind)
    text = bench.table(results)
    assert "| mean pixel change |x_edit − x_recon| ([-1, 1] scale) | 0.200 | 0.400 |" in text
    assert "| mean |ΔD| on the model's own discriminator | 0.300 | 0.400 |" in text
    assert "| std of D over real images (the unit of |ΔD|) | 0.250 | 0.200 |" in text
    assert "| coordinates refused by the discriminator filter (all classes) | 3 | 1 |" in text
    assert "discriminator filter on (|ΔD| ≤ 0.2 on 10 images per direction)" in text


def test_table_shows_the_baseline_reconstruction_only_when_measured():
    measured = run_metrics(
        stable_images=200,
        baseline_reconstruction={"reconstruction_l1": 0.117, "agreement": 0.936, "kl": 0.0335},
    )
    text = bench.table(bench_results(measured))
    assert "| baseline: reconstruction L1 / agreement / KL | 0.117 / 0.936 / 0.034 |" in text
    assert "baseline: reconstruction" not in bench.table(
        bench_results(run_metrics(stable_images=200))
    )
