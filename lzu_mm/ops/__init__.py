"""``lzu_mm.ops``: the LZU warp core in pure PyTorch (no mmcv / mm* imports).

Device- and dtype-agnostic, batched and differentiable. Coordinates are
``grid_sample``'s with ``align_corners=True``: normalised ``(x, y)``, x first,
``-1`` / ``+1`` at the centres of the first / last pixel.
"""
from .grid import saliency_to_grid, upsample_grid
from .invert import invert_1d, invert_grid, invert_points
from .saliency import kde_box_saliency, load_saliency, uniform_saliency
from .warp import LZWarp, apply_unzoom, sample_bilinear, sampling_grid, unzoom, unzoom_positions, zoom

__all__ = [
    'saliency_to_grid', 'upsample_grid', 'invert_grid', 'invert_points', 'invert_1d', 'zoom', 'unzoom',
    'unzoom_positions', 'apply_unzoom', 'sample_bilinear', 'sampling_grid', 'LZWarp', 'load_saliency', 'uniform_saliency', 'kde_box_saliency'
]
