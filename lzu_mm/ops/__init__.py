"""``lzu_mm.ops``: the LZU warp core in pure PyTorch (no mmcv / mm* imports).

Device- and dtype-agnostic, batched and differentiable. Coordinates are
normalised ``(x, y)``, x first, in ``[-1, 1]``; how pixels map to them is
``grid_sample``'s ``align_corners`` (default False: half-pixel centres, the
convention of ``Resize`` and of label scaling; see :mod:`lzu_mm.ops.warp`).
"""
from .boxes import unzoom_boxes, warp_points, zoom_boxes
from .grid import identity_grid, saliency_to_grid, upsample_grid
from .invert import invert_1d, invert_grid, invert_points
from .resample import Neighbours, bilinear_neighbours, bilinear_resample, interpolate
from .saliency import bbox_kde_saliency, fovea_uniform_weight, kde_box_saliency, load_saliency, uniform_saliency
from .warp import (LZWarp, apply_unzoom, level_strides, sample_bilinear, sampling_grid, unzoom, unzoom_positions, zoom,
                   zoom_sampling_grid)

__all__ = [
    'saliency_to_grid', 'upsample_grid', 'identity_grid', 'invert_grid', 'invert_points', 'invert_1d', 'zoom', 'unzoom',
    'unzoom_positions', 'apply_unzoom', 'level_strides', 'sample_bilinear', 'sampling_grid', 'LZWarp', 'load_saliency',
    'uniform_saliency', 'kde_box_saliency', 'bbox_kde_saliency', 'fovea_uniform_weight', 'zoom_sampling_grid',
    'bilinear_resample', 'bilinear_neighbours', 'interpolate', 'Neighbours', 'warp_points', 'zoom_boxes', 'unzoom_boxes'
]
