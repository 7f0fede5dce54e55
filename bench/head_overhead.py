"""SCOUTER head vs FC head on the same backbone: training step time, inference throughput, memory.

Run (CPU here, GPU unchanged with ``--device cuda``)::

    python bench/head_overhead.py --setting demo
    python bench/head_overhead.py --setting reference --rounds 3

Settings:
    reference: ResNeSt-26d, 260 px, K = 100 (the paper's ImageNet recipe,
        docs/method.md#reference-recipes).
    demo: timm test_resnet with output stride 8, 1×28×28, K = 10 (the Fashion-MNIST demo).

Each round times one training step (forward, loss, backward, AdamW step) and one inference batch
of every variant in turn, so the ratios compare variants under the same machine load. Peak memory
is measured per variant in a fresh subprocess (CPU: peak RSS growth; CUDA: max allocated).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import interleaved_timings, machine_description, markdown_table, median  # noqa: E402
from scouter.losses import ScouterLoss  # noqa: E402
from scouter.models.classifier import ModelConfig, build_classifier  # noqa: E402

SETTINGS = {
    "reference": dict(
        backbone="resnest26d", num_classes=100, in_chans=3, stem="default", size=260, to_k_layers=3
    ),
    "demo": dict(
        backbone="test_resnet",
        num_classes=10,
        in_chans=1,
        stem="default",
        size=28,
        to_k_layers=1,
        backbone_kwargs={"output_stride": 8},
    ),
}
VARIANTS = {
    "fc": dict(head="fc"),
    "scouter_s1": dict(head="xslot", slots_per_class=1),
    "scouter_s5": dict(head="xslot", slots_per_class=5),
}


def build(setting: str, variant: str, device: torch.device):
    s = SETTINGS[setting]
    config = ModelConfig(
        backbone=s["backbone"],
        num_classes=s["num_classes"],
        in_chans=s["in_chans"],
        stem=s["stem"],
        to_k_layers=s["to_k_layers"],
        backbone_kwargs=s.get("backbone_kwargs", {}),
        **VARIANTS[variant],
    )
    torch.manual_seed(0)
    return build_classifier(config).to(device)


def step_fns(setting: str, variant: str, batch: int, device: torch.device):
    s = SETTINGS[setting]
    model = build(setting, variant, device)
    loss_fn = ScouterLoss(lambda_area=1.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images = torch.randn(batch, s["in_chans"], s["size"], s["size"], device=device)
    target = torch.randint(0, s["num_classes"], (batch,), device=device)

    def train_step() -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(images), target).total.backward()
        optimizer.step()

    @torch.no_grad()
    def infer() -> None:
        model.eval()
        model(images)

    return model, train_step, infer


def peak_memory(setting: str, variant: str, batch: int, device: str) -> float:
    """Peak memory (MiB) of the first train step, measured in a fresh process."""
    code = (
        "import sys, torch;"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r});"
        "from bench.common import peak_rss_growth_mib;"
        "from bench.head_overhead import step_fns;"
        f"dev=torch.device({device!r});"
        f"m,t,i=step_fns({setting!r},{variant!r},{batch},dev);"
        "torch.cuda.reset_peak_memory_stats() if dev.type=='cuda' else None;"
        "grow=peak_rss_growth_mib(t);"
        "print(torch.cuda.max_memory_allocated()/2**20 if dev.type=='cuda' else grow)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="demo")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--batch", type=int, default=None, help="default: 8 (reference), 128 (demo)"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    batch = args.batch or (8 if args.setting == "reference" else 128)

    fns = {}
    params = {}
    for variant in VARIANTS:
        model, train_step, infer = step_fns(args.setting, variant, batch, device)
        params[variant] = sum(p.numel() for p in model.parameters())
        fns[f"{variant}/train"] = train_step
        fns[f"{variant}/infer"] = infer
    times = interleaved_timings(fns, rounds=args.rounds, device=device)
    memory = {}
    if not args.no_memory:
        for variant in VARIANTS:
            memory[variant] = peak_memory(args.setting, variant, batch, args.device)

    fc_train = median(times["fc/train"])
    fc_infer = median(times["fc/infer"])
    rows = []
    for variant in VARIANTS:
        train = median(times[f"{variant}/train"])
        infer = median(times[f"{variant}/infer"])
        rows.append(
            [
                variant,
                f"{params[variant] / 1e6:.2f} M",
                f"{train * 1000:.0f} ms",
                f"{train / fc_train:.3f}",
                f"{batch / infer:.1f} img/s",
                f"{fc_infer / infer:.3f}",
                f"{memory[variant]:.0f} MiB" if variant in memory else "–",
            ]
        )
    print(
        f"setting={args.setting} batch={batch} rounds={args.rounds} · {machine_description(device)}"
    )
    print(
        markdown_table(
            [
                "variant",
                "params",
                "train step",
                "step / FC",
                "inference",
                "throughput / FC",
                "peak memory, 1st train step (CPU: RSS growth)",
            ],
            rows,
        )
    )
    if args.json:
        args.json.write_text(
            json.dumps({"times": times, "params": params, "memory": memory}, indent=2)
        )


if __name__ == "__main__":
    main()
