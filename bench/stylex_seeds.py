"""StylEx over training seeds: sufficiency@k of StylEx vs the unconditioned baseline vs random
coordinates, as mean ± standard deviation over the seeds of each setting, and the paired
difference (StylEx − baseline of the same seed and classifier).

Reads what ``bench/stylex.py`` writes (``results.json``, the AttFind metrics under ``attfind``) or
what ``stylex.py attfind`` writes (``metrics.json``). Each argument is ``LABEL=PATH[,PATH…]``: the
runs of one setting, one per seed. Example (the table in bench/RESULTS.md):

    python bench/stylex_seeds.py \\
        "FC pair=bench/stylex/results.json,bench/stylex/seed1/results.json,bench/stylex/seed2/results.json"

``--json`` also writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence
from pathlib import Path


def attfind_metrics(path: Path) -> dict:
    """The AttFind metrics of one run: ``results.json``'s ``attfind`` or a ``metrics.json``."""
    if not path.is_file():
        raise SystemExit(
            f"{path} does not exist: give a bench/stylex.py results.json or a metrics.json"
        )
    document = json.loads(path.read_text())
    metrics = document.get("attfind", document)
    missing = [
        key for key in ("mean_sufficiency", "mean_baseline", "mean_random") if key not in metrics
    ]
    if missing:
        raise SystemExit(
            f"{path} lacks {', '.join(missing)}: it is not an AttFind run with a baseline "
            "(run stylex.py attfind with --baseline)"
        )
    return metrics


def parse_setting(argument: str) -> tuple[str, list[Path]]:
    """``LABEL=PATH[,PATH…]`` → the label and its runs' paths."""
    label, separator, paths = argument.partition("=")
    if not separator or not label.strip() or not paths.strip():
        raise SystemExit(
            f"{argument!r} is not LABEL=PATH[,PATH…] (e.g. 'FC pair=a/results.json,b/results.json')"
        )
    return label.strip(), [Path(p.strip()) for p in paths.split(",") if p.strip()]


def _spread(values: Sequence[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": list(values),
    }


def summarise(runs: Sequence[dict], k: int) -> dict:
    """Sufficiency@k of StylEx, baseline and random over ``runs`` (one per seed), and the paired
    StylEx − baseline difference; ``held_out`` the same on the held-out images where recorded."""
    if not 1 <= k <= min(len(r["mean_sufficiency"]) for r in runs):
        raise SystemExit(
            f"--k {k} is outside the runs' curves (k = 1…{len(runs[0]['mean_sufficiency'])})"
        )
    at = {
        name: [r[key][k - 1] for r in runs]
        for name, key in (
            ("stylex", "mean_sufficiency"),
            ("baseline", "mean_baseline"),
            ("random", "mean_random"),
        )
    }
    difference = [s - b for s, b in zip(at["stylex"], at["baseline"], strict=True)]
    summary = {name: _spread(values) for name, values in at.items()}
    summary["difference"] = _spread(difference)
    summary["stylex_ahead"] = sum(d > 0 for d in difference)
    summary["seeds"] = len(runs)
    if all("mean_held_out_sufficiency" in r for r in runs):
        summary["held_out"] = {
            "stylex": _spread([r["mean_held_out_sufficiency"][k - 1] for r in runs]),
            "baseline": _spread([r["mean_held_out_baseline"][k - 1] for r in runs]),
        }
    return summary


def table(summaries: dict[str, dict], k: int) -> str:
    """Markdown table of :func:`summarise` per setting."""

    def cell(entry: dict) -> str:
        return f"{entry['mean']:.2f} ± {entry['sd']:.2f}"

    lines = [
        f"| setting | seeds | StylEx@{k} | baseline@{k} | random@{k} | StylEx − baseline (per seed) "
        "| seeds StylEx > baseline | held-out StylEx / baseline |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, s in summaries.items():
        per_seed = ", ".join(f"{d:+.3f}" for d in s["difference"]["values"])
        held = s.get("held_out")
        held_cell = f"{cell(held['stylex'])} / {cell(held['baseline'])}" if held else "—"
        lines.append(
            f"| {label} | {s['seeds']} | {cell(s['stylex'])} | {cell(s['baseline'])} | "
            f"{cell(s['random'])} | {s['difference']['mean']:+.2f} ({per_seed}) | "
            f"{s['stylex_ahead']} of {s['seeds']} | {held_cell} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("settings", nargs="+", help="LABEL=PATH[,PATH…]: one setting's runs")
    parser.add_argument("--k", type=int, default=10, help="sufficiency@k (default 10)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    summaries = {}
    for argument in args.settings:
        label, paths = parse_setting(argument)
        summaries[label] = summarise([attfind_metrics(p) for p in paths], args.k)
    text = table(summaries, args.k)
    if args.json:
        args.json.write_text(json.dumps(summaries, indent=2) + "\n")
    print(text, end="")


if __name__ == "__main__":
    main()
