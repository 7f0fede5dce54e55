"""AttFind: a planted attribute is found first, the effect table equals a loop, the greedy
selection matches a hand-worked example, unstable images are dropped exactly."""

from __future__ import annotations

import pytest
import torch

from scouter.stylex import attfind as af
from scouter.stylex import metrics as sm
from scouter.stylex.errors import StylexInputError

SQUARE = 3  # the planted coordinate


def planted_model() -> af.StyleModel:
    """Six StyleSpace coordinates; only coordinate 3 paints a bright square (its value = the
    square's brightness); coordinate 0 shifts the whole image a little; the rest do nothing.
    The classifier's class 1 logit is 4 × (the square's mean brightness − 0.5), class 0's the negative."""

    def synthesize(styles, extras, noise):
        images = torch.full((styles.shape[0], 1, 8, 8), -1.0) + 0.05 * styles[:, :1, None, None]
        images = images + 0.01 * noise
        images[:, :, 2:5, 2:5] += (styles[:, SQUARE] + 1).clamp(min=0)[:, None, None, None]
        return images

    def classify(images):
        square = images[:, 0, 2:5, 2:5].mean((1, 2)) + 1
        return torch.stack([-4 * (square - 0.5), 4 * (square - 0.5)], 1)

    return af.StyleModel(
        encode=lambda images: (images, None),
        synthesize=synthesize,
        classify=classify,
        make_noise=lambda batch, gen: torch.randn(batch, 1, 8, 8, generator=gen),
    )


def planted_styles(count: int = 12) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    styles = torch.rand(count, 6, generator=generator) * 2 - 1
    styles[:, SQUARE] = torch.rand(count, generator=generator) * 0.4 - 1.0  # mostly no square
    styles[0, SQUARE] = 1.0  # one image with a bright square sets the maximum
    return styles


def test_attfind_ranks_the_planted_coordinate_first_in_the_right_direction():
    model, styles = planted_model(), planted_styles()
    noise = af.image_noise(model, len(styles), seed=0, device=torch.device("cpu"))
    ranges = af.style_ranges(styles)
    table = af.effect_table(model, styles, [], noise, ranges, chunk=5)
    keep = af.stable_images(table, threshold=100.0, max_unstable=0)
    found = af.select_attributes(table, target=1, k=3, explained_threshold=1.0, keep=keep)
    assert (found[0].coordinate, found[0].towards) == (SQUARE, "max")
    removing = af.select_attributes(table, target=0, k=1, explained_threshold=1.0)
    assert (removing[0].coordinate, removing[0].towards) == (SQUARE, "min")
    # Ranked by probability change (the default unit of `stylex.py attfind`) too.
    base = model.classify(model.synthesize(styles, [], noise))
    found_p = af.select_attributes(af.probability_effects(table, base), 1, 3, 0.2, keep)
    assert (found_p[0].coordinate, found_p[0].towards) == (SQUARE, "max")
    # Applied alone, the planted attribute flips every image not already class 1.
    curve = sm.sufficiency_curve(model, styles, [], noise, ranges, found, target=1, max_k=2)
    assert curve == [1.0, 1.0]
    random = sm.random_sufficiency_curve(model, styles, [], noise, ranges, 1, max_k=1, draws=12)
    assert random[0] < 0.5  # a random single coordinate is rarely the square


@pytest.mark.parametrize("shift", [1.0, 2.0, 0.5])
def test_effect_table_equals_one_edit_at_a_time(shift):
    torch.manual_seed(0)
    mix, head = torch.randn(5, 16), torch.randn(16, 3)
    model = af.StyleModel(
        encode=lambda images: (images, None),
        synthesize=lambda s, extras, noise: torch.tanh(s @ mix + extras + noise).view(-1, 1, 4, 4),
        classify=lambda images: images.flatten(1) @ head,
        make_noise=lambda batch, gen: 0.1 * torch.randn(batch, 16, generator=gen),
    )
    styles, extras = torch.randn(4, 5), torch.randn(4, 16)
    noise = af.image_noise(model, 4, seed=3, device=torch.device("cpu"))
    ranges = af.style_ranges(styles)
    # chunk=3 splits one image's 10 edits over batches
    table = af.effect_table(model, styles, extras, noise, ranges, chunk=3, shift=shift)
    expected = torch.zeros(4, 5, 2, 3)
    expected_p = torch.zeros(4, 5, 2, 3)
    bases = torch.zeros(4, 3)
    for n in range(4):
        base = model.classify(
            model.synthesize(styles[n : n + 1], extras[n : n + 1], noise[n : n + 1])
        )
        bases[n] = base[0]
        for i in range(5):
            for d in range(2):
                edited = styles[n : n + 1].clone()
                # shift 1: onto the extreme; 2: twice the distance; 0.5: half way
                edited[0, i] = styles[n, i] + shift * (ranges[d, i] - styles[n, i])
                logits = model.classify(
                    model.synthesize(edited, extras[n : n + 1], noise[n : n + 1])
                )
                expected[n, i, d] = (logits - base)[0]
                expected_p[n, i, d] = (logits.softmax(1) - base.softmax(1))[0]
    torch.testing.assert_close(table, expected)
    # The probability table is the change of the softmax of each edit's own logits.
    torch.testing.assert_close(af.probability_effects(table, bases), expected_p)
    assert af.probability_effects(table, bases).sum(-1).abs().max() < 1e-6  # K probabilities


def test_image_noise_is_per_image_and_reproducible():
    model = planted_model()
    first = af.image_noise(model, 3, seed=5, device=torch.device("cpu"))
    again = af.image_noise(model, 2, seed=5, device=torch.device("cpu"))
    torch.testing.assert_close(first[:2], again)
    assert not torch.equal(first[0], first[1])


def hand_table() -> torch.Tensor:
    """3 images × 3 coordinates × 2 directions × 1 class (target 0):

    coordinate 0: max +3 on image 0 only; coordinate 1: max +1 on every image;
    coordinate 2: min +2 on images 1 and 2; everything else 0 or negative.
    """
    table = torch.zeros(3, 3, 2, 1)
    table[0, 0, 1] = 3.0
    table[:, 1, 1] = 1.0
    table[1:, 2, 0] = 2.0
    table[:, 2, 1] = -1.0
    return table


def test_greedy_selection_matches_the_hand_worked_example():
    # Step 1, all images active: means (coordinate, direction) = (0,max) 1, (1,max) 1,
    # (2,min) 4/3 → coordinate 2 towards min; running sums become [0, 2, 2].
    # Step 2, threshold 2: only image 0 is unexplained; means there: (0,max) 3, (1,max) 1
    # → coordinate 0 towards max; running [3, 2, 2]: every image explained → stop.
    chosen = af.select_attributes(hand_table(), target=0, k=5, explained_threshold=2.0)
    assert [(a.coordinate, a.towards) for a in chosen] == [(2, "min"), (0, "max")]
    assert [a.images for a in chosen] == [3, 1]
    assert chosen[0].mean_effect == pytest.approx(4 / 3)
    # With a higher threshold every image stays active: coordinate 1 comes third (mean 1).
    chosen = af.select_attributes(hand_table(), target=0, k=5, explained_threshold=100.0)
    assert [(a.coordinate, a.towards) for a in chosen] == [(2, "min"), (0, "max"), (1, "max")]
    # Images left out by `keep` do not vote: without image 0, coordinate 0 has no effect.
    keep = torch.tensor([False, True, True])
    chosen = af.select_attributes(hand_table(), 0, 5, 100.0, keep)
    assert [(a.coordinate, a.towards) for a in chosen] == [(2, "min"), (1, "max")]


def test_selection_uses_signed_means_or_counts_negative_effects_as_zero():
    # Coordinate 0 (max): +3 on image 0, -2 on image 1; coordinate 1 (max): +1 on both.
    table = torch.zeros(2, 2, 2, 1)
    table[:, 0, 1, 0] = torch.tensor([3.0, -2.0])
    table[:, 1, 1, 0] = 1.0
    # Positive parts (the authors' rule): means 1.5 vs 1 → coordinate 0; its clipped running
    # sums [3, 0] leave image 1 unexplained (threshold 2), where coordinate 1 adds 1.
    chosen = af.select_attributes(table, 0, k=2, explained_threshold=2.0, positive_only=True)
    assert [(a.coordinate, a.images) for a in chosen] == [(0, 2), (1, 1)]
    assert chosen[0].mean_effect == pytest.approx(1.5)
    # Signed means (the default): 0.5 vs 1 → coordinate 1 first.
    signed = af.select_attributes(table, 0, k=2, explained_threshold=2.0)
    assert [(a.coordinate, a.images) for a in signed] == [(1, 2), (0, 2)]
    assert signed[1].mean_effect == pytest.approx(0.5)


def test_selection_refuses_a_target_the_classifier_lacks():
    with pytest.raises(StylexInputError, match="target class 4 is not an output"):
        af.select_attributes(hand_table(), target=4, k=1, explained_threshold=1.0)


def test_unstable_filter_drops_exactly_the_images_over_the_limit():
    table = torch.zeros(4, 5, 2, 2)
    table[0, 0, 0, 0] = 2.0  # image 0: one large coordinate → kept with max_unstable=1
    table[1, 0, 1, 1] = -2.0  # image 1: two (any direction, any class, either sign) → dropped
    table[1, 3, 0, 0] = 1.5
    table[2, :, :, :] = 1.0  # image 2: exactly at the threshold is not large → kept
    table[3, 1, 0, 0] = table[3, 2, 1, 1] = table[3, 4, 0, 1] = 9.0  # image 3: three → dropped
    keep = af.stable_images(table, threshold=1.0, max_unstable=1)
    assert keep.tolist() == [True, False, True, False]
    assert af.stable_images(table, threshold=1.0, max_unstable=0).tolist() == [
        False,
        False,
        True,
        False,
    ]


def test_two_class_merge_interleaves_and_skips_repeated_coordinates():
    def attrs(*coords):
        return [af.Attribute(c, 0, 1.0, 1, 0) for c in coords]

    merged = af.merge_two_classes(attrs(4, 7, 9), attrs(7, 2), k=4)
    assert [a.coordinate for a in merged] == [4, 7, 2, 9]
    assert [a.coordinate for a in af.merge_two_classes(attrs(1), attrs(), k=3)] == [1]


def test_per_image_top_k_takes_each_coordinate_once():
    table = hand_table()
    top = af.image_top_k(table, index=1, target=0, k=2)
    assert [(a.coordinate, a.towards) for a in top] == [(2, "min"), (1, "max")]


def test_apply_attributes_moves_every_coordinate_towards_its_extreme():
    styles = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.0, -1.0]])
    ranges = torch.tensor([[-1.0, -2.0, -3.0], [1.0, 2.0, 3.0]])
    attributes = [af.Attribute(0, 1, 0, 0, 0), af.Attribute(2, 0, 0, 0, 0)]
    edited = af.apply_attributes(styles, attributes, ranges, shift=1.0)
    assert edited.tolist() == [[1.0, 0.0, -3.0], [1.0, 0.0, -3.0]]  # onto the extremes
    edited = af.apply_attributes(styles, attributes, ranges)  # default: the authors' shift 2
    assert af.DEFAULT_SHIFT == 2.0
    assert edited.tolist() == [[2.0, 0.0, -6.0], [1.5, 0.0, -5.0]]  # s + 2 (extreme - s)
    assert styles.tolist() == [[0.0, 0.0, 0.0], [0.5, 0.0, -1.0]]  # the input is not modified


def test_effect_table_refuses_a_chunk_below_one_or_a_shift_not_above_zero():
    model = planted_model()
    with pytest.raises(StylexInputError, match="chunk"):
        af.effect_table(model, planted_styles(2), [], torch.zeros(2, 1, 8, 8), torch.zeros(2, 6), 0)
    with pytest.raises(StylexInputError, match="shift must be > 0"):
        af.effect_table(
            model, planted_styles(2), [], torch.zeros(2, 1, 8, 8), torch.zeros(2, 6), shift=0.0
        )
