"""aucli.pretrain.hog: per-patch oriented-gradient histograms, the masked-feature target."""

from __future__ import annotations

import math

import pytest
import torch

from aucli.pretrain.hog import hog_dims, patch_hog


def _stripes(vertical: bool, size: int = 16) -> torch.Tensor:
    """A (1, 3, size, size) image of 2-px stripes: vertical stripes have horizontal gradients."""
    coords = torch.arange(size)
    wave = ((coords // 2) % 2).float()
    image = wave[None, :].expand(size, size) if vertical else wave[:, None].expand(size, size)
    return image[None, None].expand(1, 3, size, size).clone()


def test_orientation_lands_in_the_right_bin_and_each_patch_is_normalised():
    bins = 9
    vertical = patch_hog(_stripes(vertical=True), 8, cell=4, bins=bins)
    horizontal = patch_hog(_stripes(vertical=False), 8, cell=4, bins=bins)
    assert vertical.shape == (1, 4, hog_dims(8, 4, bins)) == (1, 4, 36)
    per_bin_v = vertical.reshape(1, 4, 4, bins).sum(dim=(0, 1, 2))
    per_bin_h = horizontal.reshape(1, 4, 4, bins).sum(dim=(0, 1, 2))
    # gradient angle 0 (along x) sits between the first and last bin centres (pi/18 and pi - pi/18)
    assert float(per_bin_v[[0, bins - 1]].sum()) == pytest.approx(float(per_bin_v.sum()), rel=1e-5)
    # gradient angle pi/2 (along y): the middle bin, centre 4.5 * pi / 9
    assert float(per_bin_h[bins // 2]) == pytest.approx(float(per_bin_h.sum()), rel=1e-5)
    assert torch.allclose(vertical.pow(2).mean(dim=-1), torch.ones(1, 4), atol=1e-5)


def test_brightness_and_contrast_leave_the_descriptor_unchanged_and_flat_patches_are_zero():
    torch.manual_seed(0)
    image = torch.rand(2, 3, 16, 16)
    assert torch.allclose(patch_hog(image, 8), patch_hog(2.0 * image + 0.3, 8), atol=1e-4)
    flat = patch_hog(torch.full((1, 3, 16, 16), 0.5), 8)
    assert torch.count_nonzero(flat) == 0 and not torch.isnan(flat).any()


def test_patches_are_row_major_and_sizes_are_checked():
    image = torch.zeros(1, 3, 16, 24)
    image[..., 8:16, 16:24] = _stripes(vertical=True)[..., :8, :8]  # only the last patch (row 1, col 2) has edges
    descriptors = patch_hog(image, 8)
    energy = descriptors.abs().sum(dim=-1)[0]
    # the block's top border (y = 8) also gives the patch above it (row 0, col 2) an edge row
    assert energy.argmax() == 5 and energy[[0, 1, 3, 4]].sum() == 0 and energy[2] > 0
    with pytest.raises(ValueError, match="multiple of the patch"):
        patch_hog(torch.zeros(1, 3, 15, 16), 8)
    with pytest.raises(ValueError, match="must divide"):
        hog_dims(8, 3, 9)
    assert math.isclose(hog_dims(16, 8, 9), 36)
