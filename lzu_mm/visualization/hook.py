"""An mmengine hook that writes the LZU panel figure during validation / testing.

Enable it from a config::

    custom_hooks = [dict(type='LZUVisualizationHook', interval=50)]

(``import lzu_mm`` registers it in mmengine's root ``HOOKS`` registry, which
the MMDetection / MMSegmentation / MMDetection3D registries fall back to.)
Every ``interval``-th sample of a val / test run gets a panel figure
(:func:`lzu_mm.visualization.plot_lzu_panels`) with its predictions, written
through the runner's ``Visualizer`` backends -- ``LocalVisBackend`` saves
``<log_dir>/vis_data/vis_image/lzu_<mode>_<image>_<index>.png``,
``TensorboardVisBackend`` adds an image summary.
"""
import os.path as osp
from typing import Optional, Sequence

import numpy as np
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from lzu_mm.ops import load_saliency

from .config_warp import image_before_zoom
from .panels import figure_to_array, plot_lzu_panels
from .predictions import predictions_from_sample
from .warp_maps import compute_warp_panels


def _meta(sample) -> dict:
    return sample.metainfo if hasattr(sample, 'metainfo') else dict(sample)


def read_rgb(path: str) -> np.ndarray:
    """Read an image file as ``[H, W, 3]`` uint8 RGB (mmengine file backends: local paths, URLs, ...)."""
    import mmcv
    from mmengine.fileio import get

    return mmcv.imfrombytes(get(path), flag='color', channel_order='rgb')


@HOOKS.register_module()
class LZUVisualizationHook(Hook):
    """Write the LZU panels (saliency, zoomed image, sampling grid, magnification, unzoom, predictions).

    The warp of a sample is the grid its pipeline recorded in the metainfo
    (``lzu_zoom``, written by the fixed-saliency zoom transform) or, when the
    model zooms itself, the model's ``lzu_warp``. Samples with neither are
    skipped (logged once). The original image is read from the sample's
    ``img_path`` and passed through the test-pipeline transforms before the
    zoom (e.g. a centre crop); the zoomed size is its ``img_shape``.

    Args:
        interval: draw every ``interval``-th sample (by index in the loop's
            dataset order, batch size included), >= 1.
        draw_val: draw during validation.
        draw_test: draw during testing.
        score_thr: boxes below this score are not drawn.
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
        self._warned = False

    def _model_warp(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        return getattr(model, 'lzu_warp', None)

    def _saliency(self, path: Optional[str], grid_shape):
        if not path:
            return None
        if path not in self._saliency_cache:
            try:
                self._saliency_cache[path] = load_saliency(path, grid_shape)[0, 0].numpy()
            except (OSError, ValueError):
                self._saliency_cache[path] = None
        return self._saliency_cache[path]

    def warp_of(self, runner, meta: dict):
        """``(grid [h, w, 2], saliency [h, w] or None, separable)`` of a sample, or None if it was not zoomed."""
        record = meta.get('lzu_zoom')
        if record is not None:
            grid = np.asarray(record['grid'], dtype=np.float32)
            return grid, self._saliency(record.get('saliency'), grid.shape[:2]), bool(record.get('separable', True))
        warp = self._model_warp(runner)
        if warp is None:
            return None
        return warp.grid()[0].cpu().numpy(), warp.saliency[0, 0].cpu().numpy(), bool(warp.separable)

    def _draw(self, runner, batch_idx: int, outputs: Sequence, mode: str) -> None:
        if not outputs:
            return
        dataset_meta = getattr(runner.visualizer, 'dataset_meta', None) or {}
        classes = dataset_meta.get('classes')
        palette = dataset_meta.get('palette')
        for k, sample in enumerate(outputs):
            index = batch_idx * len(outputs) + k
            if index % self.interval:
                continue
            meta = _meta(sample)
            found = self.warp_of(runner, meta)
            img_path = meta.get('img_path')
            if isinstance(img_path, (list, tuple)):
                img_path = img_path[0] if img_path else None
            if found is None or img_path is None:
                if not self._warned:
                    print_log(f'LZUVisualizationHook: sample {index} has no LZ warp (no lzu_zoom metainfo and no '
                              'model.lzu_warp) or no img_path; nothing drawn', logger='current')
                    self._warned = True
                continue
            grid, saliency, separable = found
            image = image_before_zoom(runner.cfg, read_rgb(img_path), img_path)  # e.g. a centre crop first
            out_shape = tuple(meta.get('img_shape', image.shape[:2]))[:2]
            panels = compute_warp_panels(image, grid, out_shape, saliency, separable, self.max_side)
            preds = predictions_from_sample(sample, self.score_thr, classes, palette)
            stem = osp.splitext(osp.basename(img_path))[0]
            fig = plot_lzu_panels(panels, preds, show_predictions=True, title=f'{stem} ({mode}, sample {index})')
            runner.visualizer.add_image(f'{self.name_prefix}_{mode}_{stem}', figure_to_array(fig), step=index)

    def after_val_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.draw_val:
            self._draw(runner, batch_idx, outputs, 'val')

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.draw_test:
            self._draw(runner, batch_idx, outputs, 'test')
