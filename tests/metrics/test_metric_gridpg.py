"""GridPG known answers: the cell itself → 1, uniform → 1/n², elsewhere → 0, all-zero → 0 (and
counted); SCOUTER−'s "against" reading; the grid geometry shared by composing and scoring."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from scouter.metrics import (
    GridPointingGame,
    cell_edges,
    cell_masks,
    compose_grid,
    grid_image_size,
    gridpg_scores,
)


def _cell_maps(n: int, size: tuple[int, int], target_of_map: list[int]) -> torch.Tensor:
    """``(1, n², H, W)``: map ``k`` is 1 on cell ``target_of_map[k]`` and 0 elsewhere."""
    masks = cell_masks(size, n).float()
    return torch.stack([masks[t] for t in target_of_map])[None]


@pytest.mark.parametrize("n", [2, 3])
def test_map_equal_to_its_cell_scores_one(n):
    metric = GridPointingGame(n=n)
    metric.update(_cell_maps(n, (12, 12), list(range(n * n))), size=(12, 12))
    assert metric.per_image().tolist() == [1.0] * (n * n)
    assert metric.compute().item() == 1.0


@pytest.mark.parametrize("n", [2, 3])
def test_uniform_map_scores_one_over_n_squared(n):
    metric = GridPointingGame(n=n)
    metric.update(torch.full((2, n * n, 12, 12), 0.3), size=(12, 12))
    torch.testing.assert_close(metric.per_image(), torch.full((2 * n * n,), 1 / n**2))
    assert metric.chance == pytest.approx(1 / n**2)


def test_mass_in_another_cell_scores_zero_and_partial_mass_its_share():
    maps = _cell_maps(2, (8, 8), [1, 0, 3, 2])  # every class's map on a neighbour's cell
    metric = GridPointingGame(n=2)
    metric.update(maps)
    assert metric.per_image().tolist() == [0.0] * 4
    half = maps.clone()
    half[0, 0] = half[0, 0] * 3 + cell_masks((8, 8), 2)[0].float()  # 1 inside vs 3 outside
    scores, _ = gridpg_scores(half, (8, 8), 2)
    assert scores[0, 0].item() == pytest.approx(0.25)


def test_all_zero_map_scores_zero_and_is_counted_and_nan_is_excluded():
    maps = _cell_maps(2, (8, 8), [0, 1, 2, 3])
    maps[0, 1] = 0
    maps[0, 2] = -torch.rand(8, 8)  # only negative evidence: positive part all zero
    metric = GridPointingGame(n=2)
    metric.update(maps)
    nan_maps = maps.clone()
    nan_maps[0, 3, 0, 0] = float("nan")
    metric.update(nan_maps)
    values = metric.per_image()
    assert values[:4].tolist() == [1.0, 0.0, 0.0, 1.0]
    assert math.isnan(values[7].item())
    summary = metric.summary()
    assert summary["zero_count"] == 4 and summary["nan_count"] == 1 and summary["count"] == 7
    assert summary["value"] == pytest.approx(3 / 7)
    assert summary["median"] == 0.0 and summary["q1"] == 0.0 and summary["q3"] == 1.0


def test_negative_values_are_dropped_before_the_share():
    maps = _cell_maps(2, (8, 8), [0, 1, 2, 3])
    maps[0, 0] -= 5 * cell_masks((8, 8), 2)[3].float()  # strong negative evidence elsewhere
    scores, _ = gridpg_scores(maps, (8, 8), 2)
    assert scores[0, 0].item() == 1.0


def test_feature_maps_are_upsampled_bilinearly_to_the_grid():
    maps = torch.zeros(1, 4, 2, 2)
    maps[0, 0, 0, 0] = 1.0  # cell 0 at feature resolution, upsampled 2 -> 4
    scores, _ = gridpg_scores(maps, (4, 4), 2)
    w = torch.tensor([1.0, 0.75, 0.25, 0.0])  # bilinear weights, align_corners=False
    expected = w[:2].sum() ** 2 / w.sum() ** 2
    assert scores[0, 0].item() == pytest.approx(expected.item())


def test_against_evidence_scores_the_share_outside_the_cell():
    metric = GridPointingGame(n=3, evidence="against")
    metric.update(_cell_maps(3, (9, 9), list(range(9))))  # evidence against c on c's cell: worst
    metric.update(torch.ones(1, 9, 9, 9))
    metric.update(_cell_maps(3, (9, 9), [1, 2, 3, 4, 5, 6, 7, 8, 0]))  # on other cells: best
    metric.update(torch.zeros(1, 9, 9, 9))
    values = metric.per_image()
    assert values[:9].tolist() == [0.0] * 9
    torch.testing.assert_close(values[9:18], torch.full((9,), 8 / 9))
    assert values[18:27].tolist() == [1.0] * 9
    assert values[27:].tolist() == [0.0] * 9 and metric.zero_count == 9
    assert metric.chance == pytest.approx(8 / 9)


def test_cell_edges_and_masks_partition_the_grid():
    assert cell_edges(64, 3) == [0, 21, 42, 64]
    assert cell_edges(12, 2) == [0, 6, 12]
    masks = cell_masks((64, 50), 3)
    assert masks.shape == (9, 64, 50)
    assert torch.equal(masks.sum(dim=0), torch.ones(64, 50, dtype=torch.long))
    assert masks[4, 21:42, 16:33].all() and masks[4].sum() == 21 * 17
    with pytest.raises(ValueError, match="cannot cut"):
        cell_edges(2, 3)


def test_tile_keeps_each_image_in_its_cell():
    cells = torch.rand(2, 4, 3, 5, 6)
    grid = compose_grid(cells, 2, "tile")
    assert grid.shape == (2, 3, 10, 12)
    assert torch.equal(grid[:, :, 5:, :6], cells[:, 2])  # row 1, column 0 = cell 2
    assert torch.equal(grid[:, :, :5, 6:], cells[:, 1])
    assert grid_image_size((5, 6), 2, "tile") == (10, 12)


def test_rescale_shrinks_each_image_into_its_cell():
    cells = torch.rand(1, 9, 3, 64, 64)
    grid = compose_grid(cells, 3, "rescale")
    assert grid.shape == (1, 3, 64, 64)
    expected = F.interpolate(
        cells[:, 4], size=(21, 21), mode="bilinear", align_corners=False, antialias=True
    )
    assert torch.equal(grid[:, :, 21:42, 21:42], expected)
    with pytest.raises(ValueError, match="geometry must be one of"):
        grid_image_size((64, 64), 3, "stretch")


def test_geometries_agree_where_they_must():
    # rescale of 2H×2W images = tile of the same images brought to H×W first
    big = torch.rand(2, 4, 3, 16, 16)
    small = F.interpolate(
        big.flatten(0, 1), size=(8, 8), mode="bilinear", align_corners=False, antialias=True
    ).view(2, 4, 3, 8, 8)
    assert torch.equal(compose_grid(big, 2, "rescale"), compose_grid(small, 2, "tile"))
    # a map constant on each cell scores the same at 2×2 cells of 8 px and of 64 px
    coarse = torch.rand(1, 4, 2, 2)
    a, _ = gridpg_scores(coarse.repeat_interleave(4, -1).repeat_interleave(4, -2), (8, 8), 2)
    b, _ = gridpg_scores(coarse.repeat_interleave(32, -1).repeat_interleave(32, -2), (64, 64), 2)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(
        a[0],
        coarse[0, torch.arange(4), torch.arange(4) // 2, torch.arange(4) % 2]
        / coarse[0].sum(dim=(-2, -1)),
    )


def test_bad_shapes_and_settings_fail_clearly():
    with pytest.raises(ValueError, match=r"maps must be \(B, 4, h, w\)"):
        GridPointingGame(n=2).update(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="n must be at least 2"):
        GridPointingGame(n=1)
    with pytest.raises(ValueError, match="evidence must be one of"):
        GridPointingGame(n=2, evidence="why")
