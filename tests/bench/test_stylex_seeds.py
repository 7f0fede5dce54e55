"""bench/stylex_seeds.py: sufficiency over seeds, the paired difference, and bad arguments."""

from __future__ import annotations

import json

import pytest

from bench import stylex_seeds


def write_run(path, stylex, baseline, random, held_out=True, wrapped=True):
    """A results.json (``wrapped``) or metrics.json whose curves end in the given values."""
    metrics = {
        "mean_sufficiency": [0.0] * 9 + [stylex],
        "mean_baseline": [0.0] * 9 + [baseline],
        "mean_random": [0.0] * 9 + [random],
    }
    if held_out:
        metrics["mean_held_out_sufficiency"] = [0.0] * 9 + [stylex - 0.01]
        metrics["mean_held_out_baseline"] = [0.0] * 9 + [baseline + 0.01]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"attfind": metrics} if wrapped else metrics))
    return path


def test_mean_sd_and_paired_difference_over_seeds(tmp_path, capsys):
    a = write_run(tmp_path / "s0" / "results.json", 0.9, 0.7, 0.05)
    b = write_run(tmp_path / "s1" / "metrics.json", 0.6, 0.8, 0.03, wrapped=False)
    out = tmp_path / "summary.json"
    stylex_seeds.main([f"pair={a},{b}", "--json", str(out)])
    summary = json.loads(out.read_text())["pair"]
    assert summary["seeds"] == 2
    assert summary["stylex"]["mean"] == pytest.approx(0.75)
    assert summary["stylex"]["sd"] == pytest.approx(0.212132, abs=1e-6)  # sample sd of 0.9, 0.6
    assert summary["difference"]["values"] == pytest.approx([0.2, -0.2])
    assert summary["difference"]["mean"] == pytest.approx(0.0, abs=1e-12)
    assert summary["stylex_ahead"] == 1
    assert summary["held_out"]["baseline"]["mean"] == pytest.approx(0.76)
    row = capsys.readouterr().out.splitlines()[-1]
    assert row.startswith("| pair | 2 | 0.75 ± 0.21 | 0.75 ± 0.07 | 0.04 ± 0.01 |")
    assert "(+0.200, -0.200)" in row and "| 1 of 2 |" in row


def test_held_out_column_only_when_every_run_has_it(tmp_path, capsys):
    a = write_run(tmp_path / "a.json", 0.9, 0.7, 0.05)
    b = write_run(tmp_path / "b.json", 0.8, 0.7, 0.05, held_out=False)
    stylex_seeds.main([f"x={a},{b}"])
    assert capsys.readouterr().out.splitlines()[-1].endswith("| — |")


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("no-equals-sign", "is not LABEL=PATH"),
        ("=a.json", "is not LABEL=PATH"),
        ("label=", "is not LABEL=PATH"),
        ("label={missing}", "does not exist: give a bench/stylex.py results.json"),
        ("label={no_baseline}", "lacks mean_baseline, mean_random: .*--baseline"),
    ],
)
def test_bad_arguments_name_the_problem(tmp_path, argument, message):
    no_baseline = tmp_path / "metrics.json"
    no_baseline.write_text(json.dumps({"mean_sufficiency": [0.5] * 10}))
    argument = argument.format(missing=tmp_path / "nope.json", no_baseline=no_baseline)
    with pytest.raises(SystemExit, match=message):
        stylex_seeds.main([argument])


def test_k_outside_the_curves_is_refused(tmp_path):
    run = write_run(tmp_path / "r.json", 0.9, 0.7, 0.05)
    with pytest.raises(SystemExit, match="--k 11 is outside the runs' curves"):
        stylex_seeds.main([f"x={run}", "--k", "11"])
