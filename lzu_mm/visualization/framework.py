"""Predictions painted by the framework's own visualizer, as an array for the LZU panel figure.

The panels draw only what is specific to LZU (saliency, zoomed image, grid,
magnification, unzoom); the predictions are painted by the visualizer the
config already uses -- MMDetection's ``DetLocalVisualizer``, MMSegmentation's
``SegLocalVisualizer`` (or :class:`lzu_mm.mmseg.LZUSegLocalVisualizer`),
MMDetection3D's ``Det3DLocalVisualizer`` -- through its ``add_datasample``,
so boxes, masks, class maps and projected 3-D boxes look exactly as in the
frameworks' own ``--show-dir`` output. No framework is imported here.
"""
import inspect
import itertools
from typing import Optional

import numpy as np

_NAMES = itertools.count()


def _original_intrinsics(sample):
    """A copy of a mono-3D sample whose ``cam2img`` maps to original-image pixels.

    LZU's 3-D pipelines (``Resize3D``, ``FixedSaliencyZoom3D``) scale
    ``cam2img`` to the network input; the panel draws on the original image,
    so rows 0 and 1 are divided by ``scale_factor`` ``(sx, sy)`` (the sample
    itself is not modified).
    """
    meta = sample.metainfo
    if meta.get('cam2img') is None or meta.get('scale_factor') is None:
        return sample
    sf = np.asarray(meta['scale_factor'], dtype=np.float64).reshape(-1)
    sx, sy = (sf[0], sf[1]) if sf.size >= 2 else (sf[0], sf[0])
    cam2img = np.array(meta['cam2img'], dtype=np.float64)
    cam2img[0] /= sx
    cam2img[1] /= sy
    sample = sample.clone()
    sample.set_metainfo(dict(cam2img=cam2img.tolist()))
    return sample


def paint_predictions(visualizer, image: np.ndarray, sample, score_thr: float = 0.3,
                      name: str = 'lzu_predictions') -> np.ndarray:
    """The sample's predictions painted on ``image`` by the framework's ``visualizer``, without writing anything.

    Calls ``visualizer.add_datasample(name, image, data_sample=sample,
    draw_gt=False, draw_pred=True, show=False)`` (plus ``pred_score_thr`` where
    the visualizer takes it; ``Det3DLocalVisualizer``: ``dict(img=image)`` and
    ``vis_task='mono_det'``, with ``cam2img`` taken back to original-image
    pixels) and returns the image it hands to its ``add_image``; that call
    is intercepted for the duration, so no backend (``LocalVisBackend``,
    TensorBoard, ...) saves an extra image.

    Args:
        visualizer: an mmengine ``Visualizer`` of the framework (e.g.
            ``runner.visualizer``) with its ``dataset_meta`` set.
        image: ``[H, W, 3]`` uint8 RGB original image, in the frame of the
            sample's predictions (``ori_shape``).
        sample: ``DetDataSample`` / ``SegDataSample`` / ``Det3DDataSample``
            after ``predict``.
        score_thr: boxes below this score are not drawn (detection).
        name: image name passed to ``add_datasample``.

    Returns:
        ``[H', W', 3]`` uint8 RGB painted image (``image`` itself when the
        visualizer drew nothing, e.g. no 3-D box above ``score_thr``).
    """
    params = inspect.signature(visualizer.add_datasample).parameters
    kwargs = dict(draw_gt=False, draw_pred=True, show=False)
    if 'pred_score_thr' in params:
        kwargs['pred_score_thr'] = score_thr
    data = image
    if 'vis_task' in params:  # MMDetection3D: an input dict, monocular task
        data, kwargs['vis_task'] = dict(img=image), 'mono_det'
        sample = _original_intrinsics(sample)
    drawn = []

    def capture(_name, drawn_image, step=0):
        drawn.append(drawn_image)

    visualizer.add_image = capture  # instance attribute: shadows the backends' add_image during this call
    try:
        visualizer.add_datasample(name, data, data_sample=sample, **kwargs)
    finally:
        del visualizer.add_image
    painted = drawn[-1] if drawn else None
    return image if painted is None else np.asarray(painted)


def build_framework_visualizer(cfg, dataset_meta: Optional[dict] = None):
    """The config's ``visualizer`` (e.g. ``DetLocalVisualizer``) without storage backends, or None if it has none.

    Built in the current default scope (call ``init_default_scope`` first),
    under a fresh instance name, with ``dataset_meta`` (classes, palette) set.
    """
    vis_cfg = cfg.get('visualizer', None)
    if not vis_cfg:
        return None
    from mmengine.registry import VISUALIZERS

    vis_cfg = dict(vis_cfg, name=f'lzu_panels_{next(_NAMES)}', vis_backends=None, save_dir=None)
    visualizer = VISUALIZERS.build(vis_cfg)
    if dataset_meta:
        visualizer.dataset_meta = dataset_meta
    return visualizer
