"""Boxes through an LZ warp: into the zoomed image (exact inverse) and back (forward warp).

FOVEA (Thavamani et al., ICCV 2021) runs a whole detector on the zoomed
image and maps its boxes back to the original image with the *forward* warp
(the zoom samples original point ``T(u)`` for zoomed point ``u``, so a box
corner found at ``u`` lies at ``T(u)``). Training needs the ground truth in
the zoomed image, i.e. the *inverse* ``T^-1``, which FOVEA avoided; here it is
the exact inverse of the piecewise-bilinear warp (:func:`lzu_mm.ops.invert_points`,
LZU §4.1).

Coordinates: boxes ``(x1, y1, x2, y2)`` in continuous pixels of an image of
``img_shape = (h, w)`` per batch element (pixel ``i`` covers ``[i, i + 1)``),
the frame of the labels; with the half-pixel convention (``align_corners=False``, the
default) continuous ``x`` is the normalised ``2 x / w - 1``, with
``align_corners=True`` (pixel centres at +-1) it is ``2 (x - 0.5) / (w - 1) - 1``.
The zoomed image has the same ``img_shape`` (the zoom replaces a resize to
that size). For a separable warp an axis-aligned box maps to an axis-aligned
box exactly (corners map to corners); for a non-separable one the result is
the box enclosing the mapped outline (``edge_points`` points per edge).
"""
import torch
import torch.nn.functional as F
from torch import Tensor

from ._validate import check_grid, check_separable, check_shape_2d, shape_pairs
from .invert import invert_points


def _check_batched(t, grid: Tensor, name: str, last: int, expected: str) -> None:
    """``t`` is ``[B, N, last]`` and ``grid`` a valid LZ grid of batch size 1 or B; else ``ValueError``."""
    check_grid(grid)
    if not isinstance(t, Tensor) or t.dim() != 3 or t.shape[-1] != last:
        shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
        raise ValueError(f'{name} must have shape {expected}, got {shape}')
    if grid.shape[0] not in (1, t.shape[0]):
        raise ValueError(f'{name} has batch size {t.shape[0]} but grid has {grid.shape[0]}')


def warp_points(grid: Tensor, points: Tensor) -> Tensor:
    """The forward piecewise-bilinear warp ``T~`` (the bilinear interpolation of ``grid``) at scattered points.

    Args:
        grid: ``[B, h, w, 2]`` (or ``[1, h, w, 2]``) normalised LZ grid.
        points: ``[B, N, 2]`` normalised ``(x, y)`` points of the zoomed image.

    Returns:
        ``[B, N, 2]`` normalised ``(x, y)`` points of the original image
        (border-extended outside ``[-1, 1]``). Differentiable.

    Raises:
        ValueError: malformed ``grid`` / ``points`` or mismatched batch sizes.
    """
    _check_batched(points, grid, 'points', 2, '[B, N, 2]')
    g = grid.to(points.dtype).expand(points.shape[0], -1, -1, -1).permute(0, 3, 1, 2)
    out = F.grid_sample(g, points[:, None], mode='bilinear', padding_mode='border', align_corners=True)
    return out[:, :, 0].permute(0, 2, 1)


def _to_normalised(xy: Tensor, size: Tensor, align_corners: bool) -> Tensor:
    return 2 * (xy - 0.5) / (size - 1).clamp_min(1) - 1 if align_corners else 2 * xy / size - 1


def _to_pixels(u: Tensor, size: Tensor, align_corners: bool) -> Tensor:
    return (u + 1) / 2 * (size - 1) + 0.5 if align_corners else (u + 1) / 2 * size


def _outline(boxes: Tensor, edge_points: int) -> Tensor:
    """``[B, N, 4 k, 2]`` points on the outline of each box (``k = edge_points`` per edge, corners included)."""
    t = torch.linspace(0, 1, edge_points, dtype=boxes.dtype, device=boxes.device)
    x1, y1, x2, y2 = boxes.unbind(-1)
    xs = x1[..., None] + (x2 - x1)[..., None] * t
    ys = y1[..., None] + (y2 - y1)[..., None] * t
    top = torch.stack([xs, y1[..., None].expand_as(xs)], -1)
    bottom = torch.stack([xs, y2[..., None].expand_as(xs)], -1)
    left = torch.stack([x1[..., None].expand_as(ys), ys], -1)
    right = torch.stack([x2[..., None].expand_as(ys), ys], -1)
    return torch.cat([top, bottom, left, right], -2)


def _map_boxes(boxes: Tensor, grid: Tensor, img_shapes, separable: bool, align_corners: bool,
               edge_points: int, forward: bool) -> Tensor:
    _check_batched(boxes, grid, 'boxes', 4, '[B, N, 4] (x1, y1, x2, y2)')
    pairs = shape_pairs(img_shapes)
    if len(pairs) not in (1, boxes.shape[0]):
        raise ValueError(f'img_shapes must give one (h, w) or one per batch element ({boxes.shape[0]}), '
                         f'got {len(pairs)}')
    hw = [check_shape_2d(p, 'img_shapes') for p in pairs]
    if boxes.shape[1] == 0:
        return boxes.clone()
    dtype = torch.float64
    size = torch.tensor([[w, h] for h, w in hw], dtype=dtype, device=boxes.device)[:, None]  # [B or 1, 1, 2]
    b = boxes.to(dtype)
    grid = grid.to(dtype).expand(b.shape[0], -1, -1, -1)
    if separable:
        pts = torch.stack([b[..., :2], b[..., 2:]], -2)  # [B, N, 2 corners, 2]
    else:
        pts = _outline(b, max(int(edge_points), 2))
    n, k = pts.shape[1:3]
    u = _to_normalised(pts.reshape(b.shape[0], n * k, 2), size, align_corners)
    mapped = warp_points(grid, u) if forward else invert_points(grid, u, separable=separable)
    xy = _to_pixels(mapped.clamp(-1, 1), size, align_corners)
    if align_corners:
        xy = torch.minimum(xy.clamp_min(0), size)  # the outermost half pixels
    xy = xy.reshape(b.shape[0], n, k, 2)
    out = torch.cat([xy.amin(2), xy.amax(2)], -1)
    return out.to(boxes.dtype)


def zoom_boxes(boxes: Tensor,
               grid: Tensor,
               img_shapes,
               separable: bool = True,
               align_corners: bool = False,
               edge_points: int = 9) -> Tensor:
    """Boxes of the un-warped image -> where they lie in the zoomed image (exact inverse of the warp).

    Used for training a detector on the zoomed image (FOVEA) with the ground
    truth moved into the zoomed frame; clamped to the image.

    Args:
        boxes: ``[B, N, 4]`` ``(x1, y1, x2, y2)`` continuous pixels of the
            un-warped ``img_shape`` frame (module docstring).
        grid: ``[B, h, w, 2]`` or ``[1, h, w, 2]`` normalised LZ grid of the zoom.
        img_shapes: ``(h_img, w_img)`` of both frames, pixels: one pair, or
            one per batch element (padded batches).
        separable: separable warp (corners map exactly) or not (enclosing box
            of ``edge_points`` points per edge, non-separable inversion).
        align_corners: pixel convention of the zoom.
        edge_points: outline points per edge for non-separable warps.

    Returns:
        ``[B, N, 4]`` boxes in continuous pixels of the zoomed image, dtype of ``boxes``.

    Raises:
        ValueError: malformed arguments, mismatched batch sizes, or (separable)
            a grid that is not separable / monotone.
    """
    if separable:
        check_separable(grid)
    return _map_boxes(boxes, grid, img_shapes, separable, align_corners, edge_points, forward=False)


def unzoom_boxes(boxes: Tensor,
                 grid: Tensor,
                 img_shapes,
                 separable: bool = True,
                 align_corners: bool = False,
                 edge_points: int = 9) -> Tensor:
    """Boxes found in the zoomed image -> the un-warped image (the forward warp; FOVEA's box unwarping).

    Args and returns: as :func:`zoom_boxes`, in the other direction.
    """
    if separable:
        check_separable(grid)
    return _map_boxes(boxes, grid, img_shapes, separable, align_corners, edge_points, forward=True)
