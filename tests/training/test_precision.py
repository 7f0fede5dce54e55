"""bf16 mixed precision and channels-last training on CPU: the step runs and the head stays sane."""

from __future__ import annotations

import pytest
import torch

from scouter.checkpoints import safe_torch_load
from scouter.training import main
from tests.training.conftest import tiny_config, write_config


@pytest.mark.parametrize("head", ["xslot", "fc"])
def test_bf16_mixed_channels_last_fit_trains_with_sane_outputs(tiny_folder, tmp_path, head):
    config = tiny_config(
        tiny_folder,
        tmp_path,
        trainer={"max_steps": 4, "precision": "bf16-mixed", "deterministic": False},
    )
    config["model"].update(head=head, channels_last=True, slots_per_class=2)
    cli = main(["fit", "--config", str(write_config(tmp_path / "c.yaml", config))])
    module = cli.model
    assert cli.trainer.global_step == 4
    assert cli.trainer.precision == "bf16-mixed"
    conv = next(m for m in module.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert conv.weight.dtype == torch.float32  # mixed: weights stay float32

    metrics = cli.trainer.logged_metrics
    assert torch.isfinite(metrics["train/loss_step"]), metrics
    run = "fc" if head == "fc" else "scouter_pos-lam1-s2"
    state = safe_torch_load(tmp_path / "ckpt" / run / "last.ckpt")["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())

    images = torch.randn(4, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = module.model.eval()(images)
    assert out.logits.dtype == torch.bfloat16
    assert torch.isfinite(out.logits.float()).all()
    if head == "xslot":
        attention = out.attention.float()
        # the sum of 2 sigmoid slots per class: strictly inside (0, s)
        assert attention.shape[1] == 3
        assert float(attention.min()) > 0.0 and float(attention.max()) < 2.0
        reference = module.model.float()(images.contiguous()).logits
        torch.testing.assert_close(out.logits.float(), reference, atol=0.1, rtol=0.05)
