"""An mmengine hook that writes the LZU panel figure during validation / testing.

Enable it from a config::

    custom_hooks = [dict(type='LZUVisualizationHook', interval=50)]

(``import lzu_mm`` registers it in mmengine's root ``HOOKS`` registry, which
the MMDetection / MMSegmentation / MMDetection3D registries fall back to.)
Every ``interval``-th sample of a val / test run gets a panel figure
(:func:`lzu_mm.visualization.plot_lzu_panels`) with its predictions painted by
the runner's visualizer (the config's ``DetLocalVisualizer`` /
``SegLocalVisualizer`` / ``Det3DLocalVisualizer``, which draws them as the
frameworks' own visualization hooks do), written through that visualizer's backends -- ``LocalVisBackend`` saves
``<log_dir>/vis_data/vis_image/lzu_<mode>_<image>_<index>.png``,
``TensorboardVisBackend`` adds an image summary.
"""
import os.path as osp
from typing import Sequence

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from lzu_mm.ops import interpolate, load_saliency, zoom_sampling_grid

from .config_warp import image_before_zoom, pre_zoom_transforms
from .framework import paint_predictions
from .panels import figure_to_array, plot_lzu_panels
from .predictions import predictions_note, summarize_predictions
from .warp_maps import compute_warp_panels


def _meta(sample) -> dict:
    return sample.metainfo if hasattr(sample, 'metainfo') else dict(sample)


def _img_path(meta: dict):
    path = meta.get('img_path')
    if isinstance(path, (list, tuple)):
        path = path[0] if path else None
    return path


def read_rgb(path: str) -> np.ndarray:
    """Read an image file as ``[H, W, 3]`` uint8 RGB (mmengine file backends: local paths, URLs, ...)."""
    import mmcv
    from mmengine.fileio import get

    return mmcv.imfrombytes(get(path), flag='color', channel_order='rgb')


@HOOKS.register_module()
class LZUVisualizationHook(Hook):
    """Write the LZU panels (saliency, zoomed image, sampling grid, magnification, unzoom) and the predictions.

    The predictions panel is the original image as ``runner.visualizer``
    paints the sample (:func:`lzu_mm.visualization.paint_predictions`: its
    ``add_datasample`` with ``draw_gt=False``, no extra file written).

    The warp of a sample is the grid recorded in its metainfo (``lzu_zoom``:
    written by the fixed-saliency zoom transform, or by a model that zoomed
    the full-resolution source itself, with the per-image saliency when the
    model learns it) or, when the model zooms itself, the model's
    ``lzu_warp``. Samples with neither are skipped (logged once). A model
    that interpolates with a learned module (``model.lzu.interpolation``,
    e.g. DownsizeNet) gets its zoomed image and coefficient maps drawn. The original image is read from the sample's
    ``img_path`` and passed through the test-pipeline transforms before the
    zoom (e.g. a centre crop; built once per hook); the zoomed size is its ``img_shape``.

    Args:
        interval: draw every ``interval``-th sample (by index in the loop's
            dataset order, batch size included), >= 1.
        draw_val: draw during validation.
        draw_test: draw during testing.
        score_thr: boxes at or below this score are not drawn (the visualizer's ``pred_score_thr``).
        max_side: longest side, in pixels, of the original-image panels.
        name_prefix: image names are ``<prefix>_<mode>_<image stem>``.

    Raises:
        ValueError: ``interval`` < 1.
    """

    priority = 'LOW'

    def __init__(self,
                 interval: int = 50,
                 draw_val: bool = True,
                 draw_test: bool = True,
                 score_thr: float = 0.3,
                 max_side: int = 800,
                 name_prefix: str = 'lzu'):
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f'interval must be an int >= 1, got {interval!r}')
        self.interval = interval
        self.draw_val = draw_val
        self.draw_test = draw_test
        self.score_thr = score_thr
        self.max_side = max_side
        self.name_prefix = name_prefix
        self._saliency_cache = {}
        self._pre_zoom = None  # the test-pipeline transforms before the zoom, built once
        self._warned = False

    def _model_warp(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        return getattr(model, 'lzu_warp', None)

    def _saliency(self, path, grid_shape):
        if path is None or isinstance(path, str) and not path:
            return None
        if not isinstance(path, str):  # a per-image (learned) saliency recorded by the model
            sal = np.asarray(path, dtype=np.float64)
            return sal.reshape(sal.shape[-2:])
        if path not in self._saliency_cache:
            try:
                self._saliency_cache[path] = load_saliency(path, grid_shape)[0, 0].numpy()
            except (OSError, ValueError):
                self._saliency_cache[path] = None
        return self._saliency_cache[path]

    def warp_of(self, runner, meta: dict):
        """``(grid [h, w, 2], saliency [h, w] or None, separable, align_corners)`` of a sample; None if not zoomed."""
        record = meta.get('lzu_zoom')
        if record is not None and record.get('grid') is not None:
            grid = np.asarray(record['grid'], dtype=np.float32)
            return (grid, self._saliency(record.get('saliency'), grid.shape[:2]), bool(record.get('separable', True)),
                    bool(record.get('align_corners', False)))
        warp = self._model_warp(runner)
        if warp is None:
            return None
        return (warp.grid()[0].cpu().numpy(), warp.saliency[0, 0].cpu().numpy(), bool(warp.separable),
                warp.align_corners)

    def _interpolation(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        interp = getattr(model, 'lzu_interpolation', None)
        return interp if hasattr(interp, 'coefficient_maps') else None

    @torch.no_grad()
    def _learned_zoom(self, interp, image: np.ndarray, grid: np.ndarray, out_shape, align_corners: bool):
        """``(zoomed [h, w, 3] RGB uint8, coefficients [4, h, w], bilinear weights [4, h, w])`` of a learned
        interpolation on the full-resolution image, at the warp's positions (the model sees BGR sources)."""
        param = next(interp.parameters())
        src = torch.from_numpy(np.ascontiguousarray(image[..., ::-1])).permute(2, 0, 1)[None].to(param)
        sampling = zoom_sampling_grid(torch.from_numpy(np.asarray(grid, dtype=np.float64))[None].to(param.device),
                                      src.shape[-2:], out_shape, align_corners=align_corners).to(param.dtype)
        a, w, neighbours = interp.coefficient_maps(src, sampling)
        zoomed = interpolate(neighbours, a)[0].permute(1, 2, 0).flip(-1).clamp(0, 255).round()
        return zoomed.byte().cpu().numpy(), a[0].cpu().numpy(), w[0].cpu().numpy()

    def figure_for(self, runner, sample, index: int = 0, mode: str = 'test'):
        """The panel figure of one predicted sample, or None when it has no warp or no ``img_path``."""
        meta = _meta(sample)
        found = self.warp_of(runner, meta)
        img_path = _img_path(meta)
        if found is None or img_path is None:
            if not self._warned:
                print_log(f'LZUVisualizationHook: sample {index} has no LZ warp (no lzu_zoom metainfo and no '
                          'model.lzu_warp) or no img_path; nothing drawn', logger='current')
                self._warned = True
            return None
        grid, saliency, separable, align_corners = found
        if self._pre_zoom is None:
            self._pre_zoom = pre_zoom_transforms(runner.cfg)
        image = image_before_zoom(runner.cfg, read_rgb(img_path), img_path, self._pre_zoom)  # e.g. a centre crop
        out_shape = tuple(meta.get('img_shape', image.shape[:2]))[:2]
        learned = dict()
        interp = self._interpolation(runner)
        if interp is not None and (meta.get('lzu_zoom') or {}).get('mode') == 'source':
            zoomed, coefficients, bilinear = self._learned_zoom(interp, image, grid, out_shape, align_corners)
            learned = dict(zoomed=zoomed, coefficients=coefficients, bilinear=bilinear)
        kind = 'learned' if isinstance((meta.get('lzu_zoom') or {}).get('saliency'), np.ndarray) else 'fixed'
        panels = compute_warp_panels(image, grid, out_shape, saliency, separable, self.max_side, align_corners,
                                     saliency_kind=kind, **learned)
        painted = paint_predictions(runner.visualizer, image, sample, self.score_thr)
        stem = osp.splitext(osp.basename(img_path))[0]
        return plot_lzu_panels(panels, painted, show_predictions=True, title=f'{stem} ({mode}, sample {index})',
                               predictions_by=type(runner.visualizer).__name__,
                               predictions_note=predictions_note(summarize_predictions(sample, self.score_thr)))

    def _draw(self, runner, batch_idx: int, outputs: Sequence, mode: str) -> None:
        if not outputs:
            return
        for k, sample in enumerate(outputs):
            index = batch_idx * len(outputs) + k
            if index % self.interval:
                continue
            fig = self.figure_for(runner, sample, index, mode)
            if fig is None:
                continue
            stem = osp.splitext(osp.basename(_img_path(_meta(sample))))[0]
            runner.visualizer.add_image(f'{self.name_prefix}_{mode}_{stem}', figure_to_array(fig), step=index)

    def after_val_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.draw_val:
            self._draw(runner, batch_idx, outputs, 'val')

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.draw_test:
            self._draw(runner, batch_idx, outputs, 'test')
