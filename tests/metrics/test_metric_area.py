import torch

from scouter.metrics import AreaSize


def test_area_is_mean_of_prepared_map_per_image():
    maps = torch.zeros(2, 1, 2, 2)
    maps[0, 0] = torch.tensor([[0.0, 1.0], [0.0, 1.0]])  # area 0.5
    maps[1, 0] = torch.tensor([[2.0, 4.0], [6.0, 10.0]])  # -> [0, .25, .5, 1], area 0.4375
    metric = AreaSize()
    metric.update(maps)
    torch.testing.assert_close(metric.per_image(), torch.tensor([0.5, 0.4375]))
    torch.testing.assert_close(metric.compute(), torch.tensor((0.5 + 0.4375) / 2))


def test_area_is_accumulated_over_batches_as_dataset_mean():
    maps = torch.rand(7, 4, 3, 3)
    classes = torch.randint(0, 4, (7,))
    whole = AreaSize(input_size=(12, 12))
    whole.update(maps, classes)
    split = AreaSize(input_size=(12, 12))
    split.update(maps[:2], classes[:2])
    split.update(maps[2:], classes[2:])
    torch.testing.assert_close(split.compute(), whole.compute())
    torch.testing.assert_close(split.per_image(), whole.per_image())


def test_area_selects_explained_class():
    maps = torch.zeros(1, 2, 2, 2)
    maps[0, 1, 0, 0] = 1.0  # class 1: one hot pixel of four -> 0.25; class 0 constant -> 0
    metric = AreaSize()
    metric.update(maps, torch.tensor([1]))
    torch.testing.assert_close(metric.compute(), torch.tensor(0.25))


def test_reference_uint8_mode_matches_original_area_ratio(oracle_dir):
    data = torch.load(oracle_dir / "r18_s1_pos_p1_k1.pt", weights_only=True)
    target = data["target"]
    metric = AreaSize(mode="reference_uint8")
    metric.update(data["attn_maps"], target)
    # test.py's attention_ratio: Σ pixels / (9·9·255) of the label's uint8 map
    expected = torch.stack(
        [data["vis_uint8"][b, target[b]].float().sum() / (9 * 9 * 255) for b in range(2)]
    )
    torch.testing.assert_close(metric.per_image(), expected)


def test_nan_maps_give_a_nan_area_not_the_best_value_zero():
    maps = torch.rand(3, 1, 4, 4)
    maps[1] = float("nan")  # what a checkpoint of NaN weights explains
    for mode in ("prepared", "reference", "reference_uint8"):
        metric = AreaSize(mode=mode)
        metric.update(maps)
        values = metric.per_image()
        assert values[1].isnan() and torch.isfinite(values[[0, 2]]).all(), mode
