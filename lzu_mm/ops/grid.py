"""LZ grids: the saliency-guided downsampler of LZU's zoom step.

Coordinates follow :func:`torch.nn.functional.grid_sample` with
``align_corners=True``: a grid holds normalised ``(x, y)`` points (x first) in
``[-1, 1]``, where ``-1`` / ``+1`` are the centres of the first / last pixel.
"""
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ._validate import check_grid, check_saliency, check_shape_2d


def _gaussian(radius: int, fwhm: float, like: Tensor) -> Tensor:
    """Unnormalised attraction kernel ``exp(-4 ln2 d^2 / fwhm^2)`` at ``d = -radius..radius``."""
    d = torch.arange(-radius, radius + 1, device=like.device, dtype=like.dtype)
    return torch.exp(-4.0 * math.log(2.0) * d.square() / fwhm**2)


def _separable_axis(marginal: Tensor, radius: int, kernel: Tensor, pad_mode: str) -> Tensor:
    """One axis of the separable LZ grid.

    Computes ``x[j] = sum_k g[k] px[j+k] S[j+k] / sum_k g[k] S[j+k]`` with the
    basis split as ``px[j+k] = (j + (k - P)) / (n - 1)``, which is the same sum
    but keeps float32 rounding at the level of the (small) offsets.

    Args:
        marginal: ``[B, n]`` saliency summed over the other axis.
        radius: padding ``P`` on both ends.
        kernel: ``[2P + 1]`` attraction kernel.
        pad_mode: ``'reflect'`` (anti-crop) or ``'replicate'``.

    Returns:
        ``[B, n]`` normalised coordinates in ``[-1, 1]``.
    """
    n = marginal.shape[-1]
    padded = F.pad(marginal[:, None], (radius, radius), mode=pad_mode)  # [B, 1, n + 2P]
    offsets = torch.arange(-radius, radius + 1, device=marginal.device, dtype=marginal.dtype)
    weights = torch.stack([kernel, kernel * offsets])[:, None]  # [2, 1, 2P + 1]
    den, num = F.conv1d(padded, weights).unbind(1)  # valid cross-correlation -> [B, n] each
    pos = torch.arange(n, device=marginal.device, dtype=marginal.dtype)
    return (2 * (pos + num / den) / (n - 1) - 1).clamp(-1, 1)


def saliency_to_grid(saliency: Tensor,
                     separable: bool = True,
                     attraction_fwhm: float = 13.,
                     anti_crop: bool = True) -> Tensor:
    """Turn a saliency map into an LZ sampling grid (the zoom's downsampler).

    Implements the saliency-weighted attraction of Recasens et al. (ECCV 2018,
    "Learning to Zoom") as used by LZU (Thavamani et al., CVPR 2023, §3,
    eq. 1-4), with FOVEA's separable and anti-crop variants (Thavamani et al.,
    ICCV 2021, §3). With ``P = min(h, w) - 1`` and the unnormalised attraction
    kernel ``k(d) = exp(-4 ln2 d^2 / fwhm^2)``, each output point is the
    kernel- and saliency-weighted mean of the (padded) pixel positions around
    it. Numerically identical to the formulation released by the paper's
    authors.

    Args:
        saliency: ``[B, 1, h, w]`` non-negative saliency (any scale; only the
            ratios matter), ``h, w >= 2``.
        separable: if True, x depends only on the column marginal
            ``sum_i S[i, :]`` and y only on the row marginal (FOVEA's separable
            warp: axis-aligned lines stay axis-aligned); else the full 2-D
            attraction (Recasens et al.).
        attraction_fwhm: full width at half maximum of the attraction kernel,
            in grid cells (> 0).
        anti_crop: pad the saliency by reflection (the grid's border then maps
            exactly to the image border, so nothing is cropped) instead of by
            replication.

    Returns:
        ``[B, h, w, 2]`` grid of normalised ``(x, y)`` source coordinates in
        ``[-1, 1]`` (``grid_sample`` convention with ``align_corners=True``):
        grid point ``(i, j)`` is where zoomed-image position ``(i, j)`` of an
        ``h x w`` lattice samples the original image.

    Raises:
        ValueError: ``saliency`` is not ``[B, 1, h, w]`` with ``h, w >= 2``,
            not floating point, has NaN/Inf or negative values, or a map sums
            to zero; ``attraction_fwhm`` is not positive.
    """
    check_saliency(saliency)
    if not (isinstance(attraction_fwhm, (int, float)) and math.isfinite(attraction_fwhm) and attraction_fwhm > 0):
        raise ValueError(f'attraction_fwhm must be a positive number of grid cells, got {attraction_fwhm!r}')
    b, _, h, w = saliency.shape
    radius = min(h, w) - 1
    pad_mode = 'reflect' if anti_crop else 'replicate'
    kernel = _gaussian(radius, float(attraction_fwhm), saliency)

    if separable:
        x = _separable_axis(saliency.sum(dim=2)[:, 0], radius, kernel, pad_mode)  # [B, w]
        y = _separable_axis(saliency.sum(dim=3)[:, 0], radius, kernel, pad_mode)  # [B, h]
        return torch.stack([x[:, None, :].expand(b, h, w), y[:, :, None].expand(b, h, w)], dim=-1)

    # The 2-D kernel g[k] g[l] and the bases factor per axis, so each sum is two 1-D passes.
    padded = F.pad(saliency, (radius, radius, radius, radius), mode=pad_mode)  # [B, 1, h + 2P, w + 2P]
    offsets = torch.arange(-radius, radius + 1, device=saliency.device, dtype=saliency.dtype)
    along_x = torch.stack([kernel, kernel * offsets])[:, None, None, :]  # [2, 1, 1, 2P + 1]
    rows = F.conv2d(padded, along_x)  # [B, 2, h + 2P, w]: (sum g S, sum g (l - P) S) along x
    along_y = torch.stack([kernel, kernel, kernel * offsets])[:, None, :, None]  # [3, 1, 2P + 1, 1]
    sums = F.conv2d(rows[:, [0, 1, 0]], along_y, groups=3)  # [B, 3, h, w]
    den, num_x, num_y = sums.unbind(1)
    j = torch.arange(w, device=saliency.device, dtype=saliency.dtype)
    i = torch.arange(h, device=saliency.device, dtype=saliency.dtype)[:, None]
    x = (j + num_x / den) / (w - 1)
    y = (i + num_y / den) / (h - 1)
    return torch.stack([x, y], dim=-1).mul(2).sub(1).clamp(-1, 1)


def identity_grid(grid_shape: Sequence[int] = (2, 2), dtype=torch.float64, device=None) -> Tensor:
    """The ``[1, h, w, 2]`` identity LZ grid (the grid of a uniform saliency).

    Point ``(i, j)`` is ``(2j/(w-1) - 1, 2i/(h-1) - 1)`` (x before y, normalised).

    Its piecewise-bilinear warp is the identity, so :func:`lzu_mm.ops.zoom`
    with it is a uniform (bilinear) resize; ``(2, 2)`` is the smallest.
    """
    h, w = check_shape_2d(grid_shape, 'grid_shape')
    if h < 2 or w < 2:
        raise ValueError(f'grid_shape must be at least (2, 2), got {(h, w)}')
    x = torch.linspace(-1, 1, w, dtype=dtype, device=device)
    y = torch.linspace(-1, 1, h, dtype=dtype, device=device)
    return torch.stack([x[None].expand(h, w), y[:, None].expand(h, w)], -1)[None]


def upsample_grid(grid: Tensor, out_shape: Sequence[int], align_corners: bool = False) -> Tensor:
    """Sample the piecewise-bilinear warp at every pixel of the output resolution.

    This is the piecewise-bilinear warp ``T~`` of LZU §4.1 (eq. 5), the
    bilinear interpolation of ``grid`` (whose ``h x w`` points span the
    normalised square ``[-1, 1]^2`` edge to edge), evaluated at the normalised
    coordinate of every output pixel: ``(2j + 1) / W - 1`` with
    ``align_corners=False`` (half-pixel centres, the default of
    :func:`~lzu_mm.ops.zoom`), ``2j / (W - 1) - 1`` with ``align_corners=True``
    (the LZU authors' convention: pixel ``j`` sits at grid position
    ``j (w-1)/(W-1)``).

    Args:
        grid: ``[B, h, w, 2]`` normalised ``(x, y)`` grid.
        out_shape: ``(H, W)`` output size in pixels.
        align_corners: pixel convention (see :mod:`lzu_mm.ops.warp`).

    Returns:
        ``[B, H, W, 2]`` normalised ``(x, y)`` grid.

    Raises:
        ValueError: malformed ``grid`` or non-positive ``out_shape``.
    """
    check_grid(grid)
    out_shape = check_shape_2d(out_shape, 'out_shape')
    if align_corners:
        return _upsample_grid(grid, out_shape)
    qy = (2 * torch.arange(out_shape[0], device=grid.device, dtype=grid.dtype) + 1) / out_shape[0] - 1
    qx = (2 * torch.arange(out_shape[1], device=grid.device, dtype=grid.dtype) + 1) / out_shape[1] - 1
    where = torch.stack(torch.broadcast_tensors(qx[None, :], qy[:, None]), -1)[None].expand(grid.shape[0], -1, -1, -1)
    return F.grid_sample(grid.permute(0, 3, 1, 2), where, mode='bilinear', padding_mode='border',
                         align_corners=True).permute(0, 2, 3, 1)


def _upsample_grid(grid: Tensor, out_shape) -> Tensor:
    """``upsample_grid(..., align_corners=True)`` without checks."""
    if tuple(grid.shape[1:3]) == tuple(out_shape):
        return grid
    up = F.interpolate(grid.permute(0, 3, 1, 2), size=tuple(out_shape), mode='bilinear', align_corners=True)
    return up.permute(0, 2, 3, 1)
