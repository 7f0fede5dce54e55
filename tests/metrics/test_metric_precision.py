import math

import torch

from scouter.metrics import ExplanationPrecision
from scouter.metrics.precision import _box_union_mask as boxes_to_mask


def test_box_covers_pixels_whose_centre_is_inside_half_open_box():
    mask = boxes_to_mask(torch.tensor([[1.0, 0.0, 3.0, 2.0]]), (4, 5))
    expected = torch.zeros(4, 5, dtype=torch.bool)
    expected[0:2, 1:3] = True
    assert torch.equal(mask, expected)
    # centre 2.5 with x2 = 2.5 is outside (half-open); with x1 = 2.5 inside
    assert boxes_to_mask(torch.tensor([[0.0, 0.0, 2.5, 1.0]]), (1, 4)).tolist() == [
        [True, True, False, False]
    ]
    assert boxes_to_mask(torch.tensor([[2.5, 0.0, 4.0, 1.0]]), (1, 4)).tolist() == [
        [False, False, True, True]
    ]
    whole = boxes_to_mask(torch.tensor([[0, 0, 5, 4]]), (4, 5))
    assert whole.all()
    assert not boxes_to_mask(torch.zeros(0, 4), (4, 5)).any()


def test_precision_on_hand_built_map_and_union_of_boxes():
    m = torch.tensor([[0.0, 1.0, 2.0, 4.0], [0.0, 0.0, 1.0, 0.0]])  # max 4, min 0 -> /4
    maps = m.view(1, 1, 2, 4)
    # two overlapping boxes: columns 1-2 of row 0, and column 2 of both rows (pixel (0,2) once)
    boxes = [torch.tensor([[1.0, 0.0, 3.0, 1.0], [2.0, 0.0, 3.0, 2.0]])]
    metric = ExplanationPrecision()
    metric.update(maps, boxes, size=(2, 4))
    # inside: (1 + 2 + 1)/4, total (1 + 2 + 4 + 1)/4 -> 4/8
    torch.testing.assert_close(metric.compute(), torch.tensor(0.5))


def test_precision_with_mask_region_and_upsampling():
    maps = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, :2, :2] = True
    metric = ExplanationPrecision()
    metric.update(maps, mask)
    # Bilinear 2->4 (align_corners=False): rows/cols weights (1, .75, .25, 0) -> separable.
    w = torch.tensor([1.0, 0.75, 0.25, 0.0])
    up = torch.outer(w, w)
    expected = up[:2, :2].sum() / up.sum()
    torch.testing.assert_close(metric.compute(), expected)


def test_undefined_precision_is_nan_excluded_and_counted():
    maps = torch.zeros(3, 1, 2, 2)
    maps[0, 0, 0, 0] = 1.0
    maps[1, 0, 0, 0] = 1.0  # its region is empty
    # image 2: all-zero map -> Σ M = 0
    boxes = [torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.zeros(0, 4), torch.tensor([[0, 0, 2, 2]])]
    metric = ExplanationPrecision()
    metric.update(maps, boxes)
    values = metric.per_image()
    assert values[0] == 1.0 and math.isnan(values[1]) and math.isnan(values[2])
    assert metric.nan_count == 2
    assert metric.compute() == 1.0


def test_precision_selects_explained_class_and_matches_per_batch_updates():
    maps = torch.rand(6, 3, 4, 4)
    classes = torch.tensor([0, 1, 2, 2, 1, 0])
    boxes = [torch.tensor([[0.0, 0.0, float(i + 2), 8.0]]) for i in range(6)]
    whole = ExplanationPrecision()
    whole.update(maps, boxes, classes, size=(8, 8))
    split = ExplanationPrecision()
    for lo in (0, 4):
        split.update(maps[lo : lo + 4], boxes[lo : lo + 4], classes[lo : lo + 4], size=(8, 8))
    torch.testing.assert_close(split.per_image(), whole.per_image())
    selected = maps.gather(1, classes.view(-1, 1, 1, 1).expand(-1, 1, 4, 4))
    one = ExplanationPrecision()
    one.update(selected, boxes, size=(8, 8))
    torch.testing.assert_close(one.per_image(), whole.per_image())
