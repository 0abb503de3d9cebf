"""Seeing what LZU does: warp panels, a val/test hook and helpers for the demo and benchmarks.

* :mod:`~lzu_mm.visualization.warp_maps` -- arrays (torch + numpy): zoomed
  image, sampling grid, magnification ratio, ``unzoom(zoom(image))`` and its
  uncovered regions.
* :mod:`~lzu_mm.visualization.panels` -- matplotlib panels and the composed
  figure (paper Figures 2 and 6).
* :mod:`~lzu_mm.visualization.framework` -- the predictions panel's image,
  painted by the framework's own visualizer (``DetLocalVisualizer``,
  ``SegLocalVisualizer``, ``Det3DLocalVisualizer``) without saving a file.
* :mod:`~lzu_mm.visualization.hook` -- ``LZUVisualizationHook`` (mmengine
  ``HOOKS``), registered when mmengine is installed.
* :mod:`~lzu_mm.visualization.config_warp` -- the warp and zoomed size a config applies.

matplotlib is imported only when a figure is drawn.
"""
import importlib.util

from .config_warp import ConfigWarp, resized_shape, warp_from_config
from .panels import (draw_coefficient_deviation, draw_coefficients, draw_magnification, draw_predictions,
                     draw_saliency, draw_saliency_map, draw_sampling_grid, draw_unzoomed, draw_zoomed, figure_to_array,
                     plot_lzu_panels, save_panels, save_saliency_figure)
from .framework import build_framework_visualizer, paint_predictions
from .predictions import predictions_note, summarize_predictions
from .warp_maps import (WarpPanels, compute_warp_panels, coverage_mask, grid_lines_px, inverse_grid,
                        magnification_map, uniform_resize, unzoom_image, zoom_image)

__all__ = [
    'ConfigWarp', 'resized_shape', 'warp_from_config', 'draw_coefficients', 'draw_coefficient_deviation',
    'draw_magnification', 'draw_predictions', 'draw_saliency', 'draw_saliency_map', 'save_saliency_figure',
    'draw_sampling_grid', 'draw_unzoomed', 'draw_zoomed',
    'figure_to_array', 'plot_lzu_panels', 'save_panels',
    'build_framework_visualizer', 'paint_predictions', 'predictions_note', 'summarize_predictions', 'WarpPanels',
    'compute_warp_panels', 'coverage_mask',
    'grid_lines_px', 'inverse_grid', 'magnification_map', 'uniform_resize', 'unzoom_image', 'zoom_image'
]

if importlib.util.find_spec('mmengine') is not None:
    from .hook import LZUVisualizationHook  # noqa: F401  (registers the hook)
    __all__.append('LZUVisualizationHook')
