"""Per-patch histograms of oriented gradients (HOG): the target of ``aucli pretrain -o target=hog``.

Masked feature prediction (MaskFeat, Wei et al., CVPR 2022) replaces the masked autoencoder's pixel
target with HOG descriptors. Oriented gradients are what classic AU detectors read (OpenFace
2.0: HOG of the aligned face and a linear SVM): brow raises, lid tightening, nasolabial furrows
and lip-corner pulls are changes of edge orientation and strength, while skin tone, lighting
level and colour (most of what tells two subjects apart) barely change them.

For an image batch ``(B, 3, H, W)``: the grey image's gradients (central differences), unsigned
orientation in ``bins`` bins over [0, pi) with linear interpolation between neighbouring bins,
magnitudes summed over ``cell`` x ``cell`` pixel cells, and per patch of ``patch`` x ``patch``
pixels the concatenation of its cells' histograms, L2-normalised (MaskFeat's per-patch
normalisation) and scaled to unit mean square, so that the loss is on the scale of MAE's
normalised pixels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["patch_hog", "hog_dims"]


def hog_dims(patch: int, cell: int, bins: int) -> int:
    """Length of one patch's descriptor: ``(patch / cell)^2 * bins``."""
    if patch % cell:
        raise ValueError(f"the HOG cell ({cell} px) must divide the patch ({patch} px)")
    return (patch // cell) ** 2 * bins


def patch_hog(images: Tensor, patch: int, *, cell: int = 4, bins: int = 9) -> Tensor:
    """HOG descriptors of every patch, ``(B, 3, H, W)`` -> ``(B, (H/patch) * (W/patch), hog_dims)``, row-major patches."""
    batch, _, height, width = images.shape
    if height % patch or width % patch:
        raise ValueError(f"image size {height}x{width} is not a multiple of the patch ({patch} px)")
    dims = hog_dims(patch, cell, bins)
    grey = images.float().mean(dim=1, keepdim=True)
    gx = F.pad(grey, (1, 1, 0, 0), mode="replicate")
    gx = gx[..., 2:] - gx[..., :-2]
    gy = F.pad(grey, (0, 0, 1, 1), mode="replicate")
    gy = gy[..., 2:, :] - gy[..., :-2, :]
    magnitude = (gx * gx + gy * gy).sqrt()
    angle = torch.atan2(gy, gx).remainder(math.pi)  # unsigned orientation in [0, pi)
    position = angle * (bins / math.pi) - 0.5  # bin centres at (k + 0.5) * pi / bins
    lower = torch.floor(position)
    upper_weight = position - lower
    lower = lower.long().remainder(bins)
    histogram = torch.zeros(batch, bins, height, width, dtype=magnitude.dtype, device=images.device)
    histogram.scatter_add_(1, lower, magnitude * (1.0 - upper_weight))
    histogram.scatter_add_(1, (lower + 1).remainder(bins), magnitude * upper_weight)
    cells = F.avg_pool2d(histogram, cell) * (cell * cell)  # (B, bins, H / cell, W / cell)
    per_side = patch // cell
    rows, cols = height // patch, width // patch
    descriptors = (
        cells.reshape(batch, bins, rows, per_side, cols, per_side).permute(0, 2, 4, 3, 5, 1).reshape(batch, rows * cols, dims)
    )
    return F.normalize(descriptors, dim=-1, eps=1e-6) * math.sqrt(dims)
