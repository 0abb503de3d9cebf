"""Argument checks shared by the warp operators.

Every public operator checks its inputs up front and raises ``ValueError`` that
names the argument and what was expected, so that nothing fails later with an
opaque broadcasting error inside ``grid_sample`` or ``conv``.
"""
from typing import Sequence, Tuple

import torch
from torch import Tensor


def check_shape_2d(value, name: str) -> Tuple[int, int]:
    """Return ``value`` as an ``(H, W)`` tuple of positive ints or raise."""
    try:
        h, w = (int(v) for v in value)
        ok = all(float(v) == int(v) for v in value)
    except (TypeError, ValueError):
        ok = False
    if not ok or h <= 0 or w <= 0:
        raise ValueError(f'{name} must be a pair of positive ints (H, W), got {value!r}')
    return h, w


def check_saliency(saliency, name: str = 'saliency') -> Tensor:
    """Check a saliency batch ``[B, 1, h, w]``: floating, finite, >= 0, not all zero, h, w >= 2."""
    if not isinstance(saliency, Tensor):
        raise ValueError(f'{name} must be a torch.Tensor of shape [B, 1, h, w], got {type(saliency).__name__}')
    if saliency.dim() != 4 or saliency.shape[1] != 1:
        raise ValueError(f'{name} must have shape [B, 1, h, w], got {tuple(saliency.shape)}')
    if saliency.shape[0] == 0:
        raise ValueError(f'{name} must hold at least one map, got batch size 0')
    if saliency.shape[2] < 2 or saliency.shape[3] < 2:
        raise ValueError(f'{name} must be at least 2x2 (h, w >= 2), got {tuple(saliency.shape[2:])}')
    if not saliency.is_floating_point():
        raise ValueError(f'{name} must be a floating-point tensor, got dtype {saliency.dtype}')
    if not bool(torch.isfinite(saliency).all()):
        raise ValueError(f'{name} must be finite, got NaN or Inf values')
    if bool((saliency < 0).any()):
        raise ValueError(f'{name} must be non-negative, got min {float(saliency.min()):g}')
    if bool((saliency.flatten(1).sum(1) <= 0).any()):
        raise ValueError(f'{name} must have a positive sum for every batch element, got an all-zero map')
    return saliency


def check_grid(grid, name: str = 'grid') -> Tensor:
    """Check a sampling grid ``[B, h, w, 2]`` (floating, finite, h, w >= 2)."""
    if not isinstance(grid, Tensor):
        raise ValueError(f'{name} must be a torch.Tensor of shape [B, h, w, 2], got {type(grid).__name__}')
    if grid.dim() != 4 or grid.shape[-1] != 2:
        raise ValueError(f'{name} must have shape [B, h, w, 2], got {tuple(grid.shape)}')
    if grid.shape[1] < 2 or grid.shape[2] < 2:
        raise ValueError(f'{name} must be at least 2x2 (h, w >= 2), got {tuple(grid.shape[1:3])}')
    if not grid.is_floating_point():
        raise ValueError(f'{name} must be a floating-point tensor, got dtype {grid.dtype}')
    if not bool(torch.isfinite(grid).all()):
        raise ValueError(f'{name} must be finite, got NaN or Inf values')
    return grid


def check_batch(tensor: Tensor, grid: Tensor, name: str, expected: str) -> None:
    """Check that ``tensor`` is ``[B, ...]`` with ``grid``'s batch size B (or B == 1 grids broadcast)."""
    if not isinstance(tensor, Tensor) or tensor.dim() != 4:
        shape = tuple(tensor.shape) if isinstance(tensor, Tensor) else type(tensor).__name__
        raise ValueError(f'{name} must be a 4-D tensor {expected}, got {shape}')
    if grid.shape[0] not in (1, tensor.shape[0]):
        raise ValueError(f'{name} has batch size {tensor.shape[0]} but grid has batch size {grid.shape[0]}; '
                         f'expected equal sizes (or a grid of batch size 1, shared by the batch)')


def shape_pairs(shapes) -> list:
    """``(h, w)``, a list of pairs, or an ``[B, 2]`` tensor, as a list of pairs."""
    if isinstance(shapes, Tensor):
        return list(shapes.reshape(-1, 2))
    seq = list(shapes)
    if len(seq) == 2 and all(isinstance(v, (int, float)) for v in seq):
        return [seq]
    return seq


def check_valid_shapes(shapes, batch: int, full: Sequence[int], name: str) -> Tensor:
    """Return per-sample valid sizes as a float ``[B, 2]`` tensor ``(h, w)`` inside ``full``."""
    if isinstance(shapes, Tensor):
        shapes_t = shapes.detach().to('cpu', torch.float64).reshape(-1, 2)
    else:
        seq = shape_pairs(shapes)
        try:
            shapes_t = torch.tensor([[float(s[0]), float(s[1])] for s in seq], dtype=torch.float64)
        except (TypeError, IndexError, ValueError):
            raise ValueError(f'{name} must be (h, w) or a list of B pairs (h, w), got {shapes!r}') from None
    if shapes_t.shape[0] == 1 and batch > 1:
        shapes_t = shapes_t.expand(batch, 2)
    if shapes_t.shape[0] != batch:
        raise ValueError(f'{name} must give one (h, w) per batch element ({batch}), got {shapes_t.shape[0]}')
    if bool((shapes_t < 1).any()) or bool((shapes_t[:, 0] > full[0]).any()) or bool((shapes_t[:, 1] > full[1]).any()):
        raise ValueError(f'{name} must lie in [1, {full[0]}] x [1, {full[1]}] (the padded size), '
                         f'got {shapes_t.tolist()}')
    return shapes_t


#: Largest deviation (normalised units) of a separable grid's x along a column / y along a row.
SEPARABLE_TOL = 1e-5


def check_separable(grid: Tensor, name: str = 'grid') -> None:
    """Check that a ``[B, h, w, 2]`` grid is separable (x depends on the column only, y on the row only).

    A separable inversion of a non-separable grid silently misplaces rows and
    columns (by up to a quarter of the image for a strong 2-D warp), so the
    separable paths refuse such grids.

    Raises:
        ValueError: x varies along a column or y along a row by more than
            :data:`SEPARABLE_TOL`.
    """
    grid = grid.detach()
    dx = float((grid[..., 0] - grid[:, :1, :, 0]).abs().max())
    dy = float((grid[..., 1] - grid[:, :, :1, 1]).abs().max())
    if dx > SEPARABLE_TOL or dy > SEPARABLE_TOL:
        raise ValueError(f'{name} is not separable: its x varies along a column by up to {dx:.3g} and its y along '
                         f'a row by up to {dy:.3g} (normalised units, tolerance {SEPARABLE_TOL:g}); a separable '
                         'inversion would misplace it. Pass separable=False (a grid from '
                         'saliency_to_grid(..., separable=False) needs the non-separable inversion)')
