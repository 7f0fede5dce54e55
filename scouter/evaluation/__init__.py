"""The loop behind ``evaluate.py``: model × data × explainers × metrics → results files and report.

    from scouter.evaluation import EvaluationOptions, evaluate
    results = evaluate(EvaluationOptions(checkpoint="run.ckpt", config="configs/x/y.yaml",
                                         explainers=["slot", "gradcam"], out="results/"))

Everything a user can get wrong (names, paths, class counts, explainer/model combinations) is
checked by :func:`prepare` before the first image is explained. The results follow
docs/metrics.md#results-files: ``results.json`` (full config, checkpoint SHA-256, dataset and
split, number of images, each metric's value with settings and NaN count) and ``per_image.csv``
(id, label, explained class, prediction, per-image values per explainer), replaced together
(all old or all new, :func:`scouter.export.write_results`). With ``export``, overlays, a grid figure and a self-contained ``report.html`` are
written too.

The package, one concern per module:

* :mod:`~scouter.evaluation.options`: the accepted names, :class:`EvaluationOptions`,
  :class:`PreparedEvaluation`, :class:`EvaluationError`;
* :mod:`~scouter.evaluation.preparation`: :func:`prepare` (loading and every check before work);
* :mod:`~scouter.evaluation.checks`: what evaluation refuses (non-finite weights, logits or maps,
  a metric needing boxes or masks on a dataset without them, unknown ``model:`` keys);
* :mod:`~scouter.evaluation.running`: :func:`run` (the per-batch loop, the results document and
  files) and :func:`evaluate`;
* :mod:`~scouter.evaluation.metric_specs`: the metric table (one ``MetricSpec`` per metric:
  how it is built, what its update takes, what it records), which every loop runs over;
* :mod:`~scouter.evaluation.explainer_metrics`: one explainer's explanation metrics;
* :mod:`~scouter.evaluation.outputs`: the export folder and the versions in ``results.json``;
* :mod:`~scouter.evaluation.cli`: ``evaluate.py``'s argument parser and :func:`main`.
"""

# build_parser, EXPLAINED_CLASS_MODES and SPLITS stay importable here, outside __all__ as before.
from scouter.evaluation.cli import build_parser, main  # noqa: F401
from scouter.evaluation.options import (  # noqa: F401
    DEFAULT_METRICS,
    EXPLAINED_CLASS_MODES,
    METRICS,
    PREPROCESSING_SOURCES,
    SPLITS,
    DataConfigMismatchWarning,
    EvaluationError,
    EvaluationOptions,
    PreparedEvaluation,
)
from scouter.evaluation.preparation import prepare
from scouter.evaluation.running import evaluate, run

__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "DataConfigMismatchWarning",
    "EvaluationError",
    "EvaluationOptions",
    "PreparedEvaluation",
    "evaluate",
    "main",
    "prepare",
    "run",
]
