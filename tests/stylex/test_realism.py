"""The discriminator filter refuses an attribute that fools the classifier by leaving the data,
the veto does not count towards k, and edit realism measures what it says."""

from __future__ import annotations

import pytest
import torch

from scouter.stylex import attfind as af
from scouter.stylex import realism
from scouter.stylex.errors import StylexInputError

SQUARE, FAKE = 3, 5  # FAKE paints a brighter square *and* lights a corner no real image has


def fake_model(calls: list[int] | None = None) -> af.StyleModel:
    """Six coordinates. Coordinate 3 paints a square (value = brightness); coordinate 5 paints
    it 1.5 times as bright and also lights the top-left corner. The classifier sees only the
    square; the judge (a stand-in discriminator) scores images lower the brighter the corner."""

    def synthesize(styles, extras, noise):
        images = torch.full((styles.shape[0], 1, 8, 8), -1.0) + 0.01 * noise
        square = (styles[:, SQUARE] + 1).clamp(min=0) + 1.5 * (styles[:, FAKE] + 1).clamp(min=0)
        images[:, :, 2:5, 2:5] += square[:, None, None, None]
        images[:, :, 0:2, 0:2] += (styles[:, FAKE] + 1).clamp(min=0)[:, None, None, None]
        return images

    def classify(images):
        square = images[:, 0, 2:5, 2:5].mean((1, 2)) + 1
        return torch.stack([-4 * (square - 0.5), 4 * (square - 0.5)], 1)

    def judge(images, originals):
        assert len(originals) == len(images)  # conditioned per image, as D(x, c(original))
        if calls is not None:
            calls.append(len(images))
        return -(images[:, 0, 0:2, 0:2].mean((1, 2)) + 1)

    return af.StyleModel(
        encode=lambda images: (images, None),
        synthesize=synthesize,
        classify=classify,
        make_noise=lambda batch, gen: torch.randn(batch, 1, 8, 8, generator=gen),
        judge=judge,
    )


def fake_setup(count: int = 12):
    generator = torch.Generator().manual_seed(0)
    styles = torch.rand(count, 6, generator=generator) * 2 - 1
    for c in (SQUARE, FAKE):  # mostly off; one image sets each maximum
        styles[:, c] = torch.rand(count, generator=generator) * 0.4 - 1.0
    styles[0, SQUARE], styles[1, FAKE] = 1.0, 1.0
    model = fake_model()
    noise = af.image_noise(model, count, seed=0, device=torch.device("cpu"))
    ranges = af.style_ranges(styles)
    table = af.effect_table(model, styles, [], noise, ranges, shift=1.0)
    originals = torch.zeros(count, 1, 8, 8)
    return model, styles, noise, ranges, table, originals


def test_the_discriminator_filter_refuses_the_attribute_that_leaves_the_data():
    model, styles, noise, ranges, table, originals = fake_setup()
    # Without the filter the brighter fake square wins: the classifier cannot tell.
    plain = af.select_attributes(table, target=1, k=1, explained_threshold=100.0)
    assert (plain[0].coordinate, plain[0].towards) == (FAKE, "max")
    check = realism.DiscriminatorFilter(
        model, styles, [], noise, originals, ranges, table, 1.0, 0.2, 10, shift=1.0
    )
    found = af.select_attributes(table, 1, k=1, explained_threshold=100.0, accept=check)
    assert (found[0].coordinate, found[0].towards) == (SQUARE, "max")
    assert check.rejected == {1: [FAKE]}
    # Lighting the corner to +1 moves the judge by about 2; the real square leaves it alone.
    assert check.worst[(FAKE, 1)] > 1.5
    assert check.worst[(SQUARE, 1)] < 0.05
    # The same edits together, measured: the fake one changes D, both change the pixels.
    rows = torch.arange(2, 12)
    view = (styles[rows], [], noise[rows], originals[rows])
    real = realism.mean_changes(*realism.edit_changes(model, *view, found, ranges, 1.0))
    fake = realism.mean_changes(*realism.edit_changes(model, *view, plain, ranges, 1.0))
    assert real["discriminator_change"] < 0.05 < 1.5 < fake["discriminator_change"]
    recon = model.synthesize(styles[rows], [], noise[rows])
    edited = model.synthesize(
        af.apply_attributes(styles[rows], found, ranges, 1.0), [], noise[rows]
    )
    assert real["pixel_l1"] == pytest.approx(float((edited - recon).abs().mean()))
    assert fake["pixel_l1"] > real["pixel_l1"]


def test_the_filter_checks_at_most_the_given_number_of_images_per_direction():
    calls: list[int] = []
    model, styles, noise, ranges, table, originals = fake_setup()
    model = fake_model(calls)
    check = realism.DiscriminatorFilter(
        model, styles, [], noise, originals, ranges, table, 1.0, 0.2, images=3, shift=1.0
    )
    assert check(SQUARE, 1)
    # Eleven images gain class 1 from the square: three judged, reconstruction and edit.
    assert calls == [3, 3]
    # An edit with no effect above the threshold on any image is never judged, and passes.
    calls.clear()
    assert check(2, 1) and calls == []


def test_a_vetoed_candidate_does_not_count_towards_k():
    table = torch.zeros(3, 3, 2, 1)
    table[0, 0, 1] = 3.0
    table[:, 1, 1] = 1.0
    table[1:, 2, 0] = 2.0  # the best candidate (mean 4/3), vetoed below
    asked: list[tuple[int, int]] = []

    def accept(coordinate, target):
        asked.append((coordinate, target))
        return coordinate != 2

    # Veto of coordinate 2: (0, max) and (1, max) tie at mean 1, the first is taken; image 0
    # is then explained (3 >= 2), images 1 and 2 get coordinate 1; then nothing is left.
    chosen = af.select_attributes(table, 0, k=5, explained_threshold=2.0, accept=accept)
    assert [(a.coordinate, a.towards) for a in chosen] == [(0, "max"), (1, "max")]
    assert asked == [(2, 0), (0, 0), (1, 0)]
    # k counts accepted attributes only.
    assert len(af.select_attributes(table, 0, k=2, explained_threshold=100.0, accept=accept)) == 2


def test_the_filter_refuses_bad_settings_and_a_model_without_a_discriminator():
    model, styles, noise, ranges, table, originals = fake_setup(4)
    args = (styles, [], noise, originals, ranges, table, 1.0)
    with pytest.raises(StylexInputError, match="change threshold must be > 0"):
        realism.DiscriminatorFilter(model, *args, 0.0)
    with pytest.raises(StylexInputError, match="needs >= 1 image"):
        realism.DiscriminatorFilter(model, *args, 0.2, 0)
    blind = af.StyleModel(model.encode, model.synthesize, model.classify, model.make_noise)
    with pytest.raises(StylexInputError, match="--no-discriminator-filter"):
        realism.DiscriminatorFilter(blind, *args)
    # Without a discriminator the pixel change is still measured; no images give NaN.
    picks = [af.Attribute(SQUARE, 1, 0.0, 0, 1)]
    changes, pixels = realism.edit_changes(blind, styles, [], noise, originals, picks, ranges)
    assert (pixels > 0).any() and changes.isnan().all()
    empty = realism.mean_changes(
        *realism.edit_changes(model, styles[:0], [], noise[:0], originals[:0], picks, ranges)
    )
    assert all(v != v for v in empty.values())
