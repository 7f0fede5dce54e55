"""Checks of ``evaluate.py`` that refuse results which would look good but mean nothing.

* :func:`check_model_section`: a misspelled key of the config's ``model:`` section is an error
  (a bare state_dict takes its architecture from it, so a typo would silently build the default).
* :func:`metrics_for_dataset`: metrics whose update takes ``regions`` (``precision``) need boxes or
  masks; they are dropped from the default metrics (with a note) and an error when asked for on a
  dataset without them.
* :func:`check_finite_weights` / :func:`check_finite_outputs`: NaN or ±inf weights, logits or
  explanation maps stop the evaluation, naming the checkpoint and the batch (NaN logits all
  ``argmax`` to class 0, and NaN maps used to score as the best possible area).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from scouter.evaluation.metric_specs import needs_of
from scouter.evaluation.options import EvaluationError
from scouter.suggest import with_hint

log = logging.getLogger("scouter.evaluation")

#: ``model:`` keys of a training config that only ScouterModule reads (the loss, the optimiser,
#: the schedule); tests/evaluation/test_evaluation_checks.py keeps this equal to ScouterModule's signature.
TRAINING_ONLY_KEYS = (
    "zoo",
    "lambda_area",
    "power",
    "area",
    "lr",
    "backbone_lr",
    "weight_decay",
    "scheduler",
    "lr_step_size",
    "lr_gamma",
    "warmup_steps",
    "lr_min_factor",
    "freeze_stages",
    "init_backbone_from",
    "fc_warmup_epochs",
    "fc_aux_weight",
    "channels_last",
)


def _error(message: str) -> Exception:
    return EvaluationError(message)


def check_model_section(section: dict[str, Any]) -> None:
    """Reject unknown keys of the config's ``model:`` section, suggesting the closest valid one."""
    from scouter.models.classifier import ModelConfig

    valid = [f.name for f in dataclasses.fields(ModelConfig)] + list(TRAINING_ONLY_KEYS)
    unknown = [key for key in section if key not in valid]
    if not unknown:
        return
    hints = [with_hint(str(key), valid) for key in unknown]
    raise _error(
        f"unknown key(s) in the config's model section: {', '.join(hints)}; valid keys: "
        f"{', '.join(sorted(valid))}"
    )


def metrics_for_dataset(
    metrics: list[str], explicit: bool, dataset: Any, dataset_name: str
) -> tuple[list[str], str | None]:
    """Fit the metric list to what the evaluated split provides.

    Args:
        metrics: the metric names (validated).
        explicit: whether the user chose them (``--metrics``) or they are the defaults.
        dataset: the evaluated split (a ``TransformedDataset`` or a reader).
        dataset_name: ``data.dataset``, for the messages.

    Returns:
        The metrics to compute and a note to show the user (or None).

    Raises:
        EvaluationError: a metric that needs regions (``precision``) asked for on a dataset
            without boxes or masks.
    """
    reader = getattr(dataset, "dataset", dataset)
    need_regions = [m for m in metrics if "regions" in needs_of([m])]
    if not need_regions or getattr(reader, "has_regions", True):
        return metrics, None
    option = getattr(reader, "regions_option", None)
    fix = f"; set data.dataset_options.{option} in the config to give it masks" if option else ""
    named = ", ".join(repr(m) for m in need_regions)
    if explicit:
        raise _error(
            f"metric {named} needs boxes or masks, but dataset {dataset_name!r} (as "
            f"configured) has none{fix}, or leave {named} out of --metrics"
        )
    note = (
        f"{', '.join(need_regions)} left out of the default metrics: dataset {dataset_name!r} "
        f"(as configured) has no boxes or masks{fix}"
    )
    log.info(note)
    return [m for m in metrics if m not in need_regions], note


def _non_finite_names(named: Sequence[tuple[str, Tensor]]) -> list[str]:
    return [
        name
        for name, value in named
        if value.is_floating_point() and not bool(torch.isfinite(value).all())
    ]


def check_finite_weights(model: nn.Module, checkpoint: str | Path) -> None:
    """Refuse a model with NaN or ±inf weights or buffers (a diverged or corrupted training)."""
    named = [*model.named_parameters(), *model.named_buffers()]
    bad = _non_finite_names(named)
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise _error(
            f"checkpoint {str(checkpoint)!r} has non-finite (NaN or inf) values in {len(bad)} of "
            f"its {len(named)} tensors ({shown}): the training diverged or the file is damaged; "
            "evaluate an earlier checkpoint of the run"
        )


def check_finite_outputs(
    what: str, values: Tensor, batch_index: int, ids: Sequence[str], checkpoint: str | Path
) -> None:
    """Stop at the first batch whose ``values`` (logits or maps) hold NaN or ±inf."""
    finite = torch.isfinite(values.detach()).flatten(1).all(dim=1)
    if bool(finite.all()):
        return
    bad = [str(ids[i]) for i in torch.nonzero(~finite).flatten().tolist()]
    shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    why = " (NaN logits all predict class 0)" if what == "logits" else ""
    raise _error(
        f"the {what} of batch {batch_index} are non-finite (NaN or inf) for {len(bad)} image(s) "
        f"({shown}) with checkpoint {str(checkpoint)!r}: the metrics would be meaningless{why}; "
        "check the checkpoint (try an earlier one of the run) and the data's normalisation; "
        "nothing was written"
    )
