"""Generator, encoder, discriminator: modulation equals its definition, conditioning enters the
styles, StyleSpace is indexed as documented."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from scouter.stylex.discriminator import ProjectionDiscriminator
from scouter.stylex.encoder import Encoder
from scouter.stylex.generator import ModulatedConv, StyleGenerator
from scouter.stylex.losses import classifier_kl


def test_modulated_conv_equals_per_sample_modulated_demodulated_weights():
    torch.manual_seed(0)
    conv = ModulatedConv(5, 7, 3)
    x, style = torch.randn(4, 5, 8, 8), torch.randn(4, 5)
    expected = []
    for b in range(4):
        weight = conv.scale * conv.weight * style[b][None, :, None, None]
        weight = weight * torch.rsqrt(weight.pow(2).sum((1, 2, 3), keepdim=True) + 1e-8)
        expected.append(F.conv2d(x[b : b + 1], weight, padding=1))
    torch.testing.assert_close(conv(x, style), torch.cat(expected), atol=1e-5, rtol=1e-5)


def generator(c_dim: int = 3) -> StyleGenerator:
    torch.manual_seed(0)
    return StyleGenerator(
        16, 1, w_dim=8, c_dim=c_dim, channels=16, min_channels=8, mapping_layers=2
    )


def test_conditioning_enters_the_styles():
    gen = generator()
    w = torch.randn(2, 8)
    c1, c2 = torch.tensor([[1.0, 0, 0]] * 2), torch.tensor([[0, 0, 1.0]] * 2)
    s1, s2 = gen.styles(w, c1), gen.styles(w, c2)
    assert s1.shape == (2, gen.style_space_size)
    assert (s1 - s2).abs().amax() > 1e-3  # every layer's style moves with c
    for a, b in zip(
        torch.split(s1, gen.style_dims, 1), torch.split(s2, gen.style_dims, 1), strict=True
    ):
        assert (a - b).abs().amax() > 1e-4
    noise = gen.make_noise(2, torch.Generator().manual_seed(1))
    assert not torch.allclose(gen(w, c1, noise), gen(w, c2, noise))


def test_unconditioned_generator_has_no_condition():
    gen = generator(c_dim=0)
    w = torch.randn(2, 8)
    torch.testing.assert_close(gen.styles(w, None), gen.styles(w, torch.rand(2, 3)))
    with pytest.raises(ValueError, match=r"conditioned on c \(B, 3\)"):
        generator(3).styles(w, None)


def test_style_space_layout_and_same_noise_same_image():
    gen = generator()
    # 4x4: conv 16→16; 8x8: 16→16, 16→16; 16x16: 16→8, 8→8 (input channels are the styles).
    assert gen.style_dims == [16, 16, 16, 16, 8]
    assert gen.style_space_size == 72
    assert (
        gen.coordinate(0) == (0, 0)
        and gen.coordinate(17) == (1, 1)
        and gen.coordinate(71) == (4, 7)
    )
    with pytest.raises(IndexError):
        gen.coordinate(72)
    w, c = torch.randn(3, 8), torch.softmax(torch.randn(3, 3), 1)
    noise = gen.make_noise(3, torch.Generator().manual_seed(0))
    images = gen(w, c, noise)
    assert images.shape == (3, 1, 16, 16)
    torch.testing.assert_close(images, gen(w, c, noise))
    edited = gen.styles(w, c).clone()
    edited[:, 5] += 3.0
    changed = gen.synthesize(edited, gen.rgb_styles(w, c), noise)
    assert (changed - images).abs().amax() > 1e-4  # a StyleSpace coordinate changes the image


@pytest.mark.parametrize("size", [4, 12, 24])
def test_sizes_must_be_powers_of_two(size):
    with pytest.raises(ValueError, match="power of two >= 8"):
        StyleGenerator(size)
    with pytest.raises(ValueError, match="power of two >= 8"):
        Encoder(size, 1, 8)


def test_encoder_and_projection_discriminator_shapes():
    images = torch.randn(4, 1, 16, 16)
    assert Encoder(16, 1, 8, 16, 8)(images).shape == (4, 8)
    disc = ProjectionDiscriminator(16, 1, 3, 16, 8)
    c = torch.softmax(torch.randn(4, 3), 1)
    scores = disc(images, c)
    assert scores.shape == (4,)
    # Projection: the score is the class outputs dotted with c.
    torch.testing.assert_close(scores, (disc.stack(images) * c).sum(1))
    assert ProjectionDiscriminator(16, 1, 0, 16, 8)(images, None).shape == (4,)
    with pytest.raises(ValueError, match="needs c of shape"):
        disc(images, None)


def test_classifier_kl_uses_the_original_as_target():
    original, edited = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    p, q = torch.softmax(original, 1), torch.softmax(edited, 1)
    expected = (p * (p.log() - q.log())).sum()
    torch.testing.assert_close(classifier_kl(original, edited), expected)
    assert classifier_kl(original, original) == 0
