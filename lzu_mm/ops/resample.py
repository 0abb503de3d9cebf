"""Resampling an image at given positions: the interpolation half of "positions x interpolation".

A model that downsamples the full-resolution image itself (``ResizeWithSource``
and :class:`lzu_mm.common.LZUMixin`) separates *where* each output pixel
samples the input (a uniform grid, or a fixed / adaptive / learned LZ grid:
:func:`lzu_mm.ops.warp.zoom_sampling_grid`, :meth:`lzu_mm.ops.LZWarp.zoom_sampling_grid`)
from *how* the input is interpolated there: bilinearly
(:func:`bilinear_resample`, i.e. ``grid_sample``) or with learned coefficients
over the same four neighbours (DownsizeNet, Mai et al.;
:class:`lzu_mm.common.resampling.DownsizeNet`), built on
:func:`bilinear_neighbours`.

Sampling grids here are ``grid_sample`` grids over the whole input tensor
with ``align_corners=True``: normalised ``(x, y)``, x first, ``-1`` / ``+1``
the centres of the first / last pixel (the pixel convention of the *zoom*,
half-pixel by default, is already in the positions). Points outside the
tensor read zeros (``padding_mode='zeros'``), as :func:`lzu_mm.ops.zoom` does
for the padding of a zoomed batch.
"""
from typing import NamedTuple

import torch
from torch import Tensor

from ._validate import check_batch
from .warp import _grid_sample


def _check_sampling(grid) -> None:
    """A ``grid_sample`` grid ``[B, Ho, Wo, 2]`` (floating, any ``Ho, Wo >= 1``)."""
    if not isinstance(grid, Tensor) or grid.dim() != 4 or grid.shape[-1] != 2 or not grid.is_floating_point():
        shape = tuple(grid.shape) if isinstance(grid, Tensor) else type(grid).__name__
        raise ValueError(f'sampling_grid must have shape [B, Ho, Wo, 2] (floating, normalised (x, y)), got {shape}')


def bilinear_resample(images: Tensor, sampling_grid: Tensor) -> Tensor:
    """Bilinear interpolation of ``images`` at a sampling grid (what :func:`lzu_mm.ops.zoom` does).

    ``grid_sample`` (bilinear, zero padding, ``align_corners=True``) in float32
    for float16 / bfloat16 images (float64 stays), autocast off.

    Args:
        images: ``[B, C, H, W]`` floating maps.
        sampling_grid: ``[B, Ho, Wo, 2]`` (or ``[1, Ho, Wo, 2]``) normalised
            ``(x, y)`` over the ``H x W`` tensor (module docstring).

    Returns:
        ``[B, C, Ho, Wo]`` in the dtype of ``images``.

    Raises:
        ValueError: malformed ``images`` / ``sampling_grid`` or mismatched batch sizes.
    """
    _check_sampling(sampling_grid)
    check_batch(images, sampling_grid, 'images', '[B, C, H, W]')
    return _grid_sample(images, sampling_grid)


class Neighbours(NamedTuple):
    """The four input pixels around each sampling point and their bilinear weights (:func:`bilinear_neighbours`).

    Order of the four: ``q1`` top-left (``P1``), ``q2`` top-right, ``q3``
    bottom-left, ``q4`` bottom-right.
    """
    values: Tensor  # [B, 4, C, Ho, Wo]: q1..q4 (zero outside the tensor)
    weights: Tensor  # [B, 4, Ho, Wo]: bilinear weights of q1..q4 (sum 1), differentiable w.r.t. the positions
    top_left: Tensor  # [B, Ho * Wo] int64: flat index y * W + x of P1, clamped into the tensor


def bilinear_neighbours(images: Tensor, sampling_grid: Tensor) -> Neighbours:
    """Split bilinear interpolation into its four neighbours and weights, exactly as ``grid_sample`` computes them.

    At a sampling point with input pixel coordinates ``(ix, iy) = ((x + 1) /
    2 (W - 1), (y + 1) / 2 (H - 1))`` the neighbours are the pixels
    ``(floor(ix) + {0, 1}, floor(iy) + {0, 1})`` and the weights the products
    of the relative distances, ``(1 - dx)(1 - dy), dx (1 - dy), (1 - dx) dy,
    dx dy`` with ``dx = ix - floor(ix)``; a neighbour outside the tensor reads
    zero. ``(values * weights[:, :, None]).sum(1)`` is
    :func:`bilinear_resample` to float rounding.

    Args:
        images: ``[B, C, H, W]`` floating maps.
        sampling_grid: ``[B, Ho, Wo, 2]`` or ``[1, Ho, Wo, 2]`` (module docstring).

    Returns:
        :class:`Neighbours` (values in the dtype of ``images``; weights in the
        grid's sampling dtype, float32 or float64).

    Raises:
        ValueError: malformed ``images`` / ``sampling_grid`` or mismatched batch sizes.
    """
    _check_sampling(sampling_grid)
    check_batch(images, sampling_grid, 'images', '[B, C, H, W]')
    bsz, channels, h, w = images.shape
    dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
    grid = sampling_grid.to(dtype).expand(bsz, -1, -1, -1)
    out_h, out_w = grid.shape[1:3]
    ix = (grid[..., 0] + 1) / 2 * (w - 1)  # grid_sample's unnormalisation (align_corners=True)
    iy = (grid[..., 1] + 1) / 2 * (h - 1)
    x0, y0 = ix.detach().floor(), iy.detach().floor()
    dx, dy = ix - x0, iy - y0  # in [0, 1), differentiable w.r.t. the positions
    weights = torch.stack([(1 - dx) * (1 - dy), dx * (1 - dy), (1 - dx) * dy, dx * dy], 1)
    x = x0.long()[:, None] + x0.new_tensor([0, 1, 0, 1], dtype=torch.long)[None, :, None, None]  # [B, 4, Ho, Wo]
    y = y0.long()[:, None] + y0.new_tensor([0, 0, 1, 1], dtype=torch.long)[None, :, None, None]
    inside = ((x >= 0) & (x < w) & (y >= 0) & (y < h)).reshape(bsz, 1, -1)
    index = (y.clamp(0, h - 1) * w + x.clamp(0, w - 1)).reshape(bsz, 1, -1)
    gathered = images.reshape(bsz, channels, h * w).gather(2, index.expand(-1, channels, -1)) * inside
    values = gathered.view(bsz, channels, 4, out_h, out_w).transpose(1, 2)  # one gather; a view, no stacking copy
    top_left = index[:, 0, :out_h * out_w]  # q1's index: P1, clamped into the tensor
    return Neighbours(values, weights, top_left)


def interpolate(neighbours: Neighbours, coefficients: Tensor) -> Tensor:
    """``sum_i a_i q_i``: the four neighbours combined with per-pixel coefficients.

    Args:
        neighbours: from :func:`bilinear_neighbours`.
        coefficients: ``[B, 4, Ho, Wo]`` (``neighbours.weights`` gives bilinear interpolation).

    Returns:
        ``[B, C, Ho, Wo]`` in the dtype of the neighbours' values.
    """
    out = (neighbours.values * coefficients[:, :, None].to(neighbours.values.dtype)).sum(1)
    return out
