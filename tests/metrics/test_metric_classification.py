import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from scouter.metrics import BinaryClassificationReport, ClassificationAccuracy


def test_top1_is_over_the_whole_set_not_a_mean_of_batch_accuracies():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(23, 4, generator=g)
    target = torch.randint(0, 4, (23,), generator=g)
    metric = ClassificationAccuracy(num_classes=4)
    for lo, hi in [(0, 3), (3, 20), (20, 23)]:  # unequal batches
        metric.update(logits[lo:hi], target[lo:hi])
    result = metric.compute()
    pred = logits.argmax(-1)
    assert result["top1"].item() == pytest.approx(accuracy_score(target, pred))
    assert result["macro"].item() == pytest.approx(balanced_accuracy_score(target, pred))


@pytest.mark.parametrize("as_logits", [True, False])
def test_binary_report_matches_scikit_learn(as_logits):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(40, 2, generator=g)
    target = torch.randint(0, 2, (40,), generator=g)
    prob = logits.softmax(-1)[:, 1]
    report = BinaryClassificationReport()
    report.update(logits[:15] if as_logits else prob[:15], target[:15])
    report.update(logits[15:] if as_logits else prob[15:], target[15:])
    result = report.compute()
    pred = (prob > 0.5).long()
    expected = {
        "roc_auc": roc_auc_score(target, prob),
        "accuracy": accuracy_score(target, pred),
        "precision": precision_score(target, pred),
        "recall": recall_score(target, pred),
        "f1": f1_score(target, pred),
        "cohen_kappa": cohen_kappa_score(target, pred),
    }
    assert set(result) == set(expected)
    for name, value in expected.items():
        assert result[name].item() == pytest.approx(value, abs=1e-6), name


def test_binary_report_rejects_unnormalised_scores():
    with pytest.raises(ValueError, match="logits"):
        BinaryClassificationReport().update(torch.tensor([2.0, -1.0]), torch.tensor([1, 0]))
