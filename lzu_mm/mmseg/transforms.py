"""Pipeline transforms of the LZU segmentation experiment (paper §5.2).

* :class:`CenterSquareCrop` -- the centred square crop the paper's inputs are
  taken from ("resizing a centered square crop of the input image": the
  1024x1024 centre of Cityscapes' 1024x2048 frames).
* :class:`FixedSaliencyZoom` -- mmcv's ``Resize`` (as mmseg uses it) with the
  image LZ-zoomed by a fixed saliency instead of resized; ``gt_seg_map`` is
  resized *uniformly* with nearest neighbour by ``Resize`` itself, so labels
  stay un-warped, and ``results['lzu_zoom']`` records the warp for the model.
* :class:`ResizeWithSource` -- mmcv's ``Resize`` that also hands the model the
  image before the resize, for a segmentor that zooms it itself.
"""
from typing import Optional, Sequence

import numpy as np
from mmcv.transforms import CenterCrop, Resize
from mmseg.registry import TRANSFORMS

from lzu_mm.common import LZZoomMixin, SourceResizeMixin

_CROP_KEYS = ('img', 'gt_seg_map')


def center_square_box(height: int, width: int, side: int):
    """``(x1, y1)`` of the centred ``side x side`` square of a ``height x width`` image (CenterCrop's rounding)."""
    return int(round((width - side) / 2.)), int(round((height - side) / 2.))


def _where(results: dict) -> str:
    path = results.get('img_path') or results.get('seg_map_path')
    return f' ({path})' if path else ''


@TRANSFORMS.register_module()
class CenterSquareCrop(CenterCrop):
    """Crop the centred ``crop_size x crop_size`` square of the image and its label map.

    mmcv's ``CenterCrop`` with a square crop that must fit in the image: the
    crop box is ``x1 = round((W - s) / 2)``, ``y1 = round((H - s) / 2)``, in
    pixels. Cropping the image sets ``img_shape`` (and ``pad_shape``) to
    ``(s, s)`` and, with ``update_ori_shape``, ``ori_shape`` too: the crop is
    the experiment's original image, so mmseg returns predictions at the
    crop's full resolution and evaluates them against the cropped labels.
    Cropping the image also records ``results['crop_box'] = (x1, y1, x2, y2)``
    (ints, pixels of the loaded image, half-open: the crop is
    ``img[y1:y2, x1:x2]``); put ``'crop_box'`` in ``PackSegInputs.meta_keys``
    so that :class:`lzu_mm.mmseg.LZUSegLocalVisualizer` can draw predictions
    on the same crop of an image re-read from ``img_path`` (mmseg's
    ``SegVisualizationHook``, ``MMSegInferencer``).

    Args:
        crop_size: side ``s`` of the square in pixels, or ``None`` for the
            largest centred square (``min(H, W)``: 1024 for Cityscapes'
            1024x2048 frames, the paper's crop).
        keys: which of ``'img'`` and ``'gt_seg_map'`` to crop (those present).
            A test pipeline that loads the labels after the zoom crops them
            with a second ``CenterSquareCrop(keys=('gt_seg_map', ))``.
        update_ori_shape: set ``ori_shape`` to ``(s, s)`` when cropping the
            image.

    Raises:
        ValueError: at build time, a non-positive ``crop_size`` or unknown
            ``keys``; per sample, ``crop_size`` larger than the image, or an
            image and label map of different sizes (message names the file).
        KeyError: none of ``keys`` is in the results, when ``keys`` includes
            ``'img'``. A label-only crop (``keys=('gt_seg_map', )``) without a
            label map passes the results through unchanged: the frameworks'
            inference APIs (``mmseg.apis.inference_model``,
            ``MMSegInferencer``) drop ``LoadAnnotations`` from the test
            pipeline.
    """

    def __init__(self,
                 crop_size: Optional[int] = None,
                 keys: Sequence[str] = _CROP_KEYS,
                 update_ori_shape: bool = True) -> None:
        if crop_size is not None and (isinstance(crop_size, bool) or not isinstance(crop_size, int) or crop_size <= 0):
            raise ValueError(f'crop_size must be a positive int (pixels) or None (largest centred square), '
                             f'got {crop_size!r}')
        keys = tuple(keys)
        if not keys or set(keys) - set(_CROP_KEYS):
            raise ValueError(f'keys must be a non-empty subset of {_CROP_KEYS}, got {keys!r}')
        super().__init__(crop_size=crop_size or 1)
        self.side = crop_size
        self.keys = keys
        self.update_ori_shape = update_ori_shape

    def transform(self, results: dict) -> dict:
        present = [k for k in self.keys if results.get(k, None) is not None]
        if not present and 'img' not in self.keys:
            return results  # a label-only crop without labels: inference (the APIs drop LoadAnnotations)
        if not present:
            raise KeyError(f'CenterSquareCrop: none of {self.keys} found in the results{_where(results)}')
        shapes = {k: tuple(results[k].shape[:2]) for k in present}
        if len(set(shapes.values())) > 1:
            raise ValueError(f'CenterSquareCrop: the label map and the image differ in size{_where(results)}: '
                             + ', '.join(f'{k} {h}x{w}' for k, (h, w) in shapes.items())
                             + '; expected the same (H, W)')
        h, w = shapes[present[0]]
        side = self.side or min(h, w)
        if side > h or side > w:
            raise ValueError(f'CenterSquareCrop: crop_size {side} is larger than the {present[0]} ({h}x{w} pixels)'
                             f'{_where(results)}; expected crop_size <= min(H, W) = {min(h, w)}')
        x1, y1 = center_square_box(h, w, side)
        box = np.array([x1, y1, x1 + side - 1, y1 + side - 1])
        if 'img' in present:
            self._crop_img(results, box)
            self._crop_bboxes(results, box)
            self._crop_keypoints(results, box)
            if self.update_ori_shape:
                results['ori_shape'] = (side, side)
            results['crop_box'] = (x1, y1, x1 + side, y1 + side)
        if 'gt_seg_map' in present:
            self._crop_seg_map(results, box)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(crop_size={self.side}, keys={self.keys}, '
                f'update_ori_shape={self.update_ori_shape})')


@TRANSFORMS.register_module()
class FixedSaliencyZoom(LZZoomMixin, Resize):
    """mmcv ``Resize`` whose image resampling is the fixed-saliency LZ zoom (LZU §3, §5.2).

    The image (``[H, W, C]``, any dtype) is zoomed to the ``Resize`` target
    size with the LZ grid of a fixed saliency map (``grid_sample``,
    ``align_corners=True``); ``gt_seg_map`` is resized *uniformly* to the same
    size with nearest neighbour (mmcv ``Resize``), so labels stay in
    un-warped coordinates; ``img_shape`` / ``scale_factor`` are those of the
    uniform resize. ``results['lzu_zoom']`` records the grid (see
    :class:`lzu_mm.common.LZZoomMixin`); put ``'lzu_zoom'`` in
    ``PackSegInputs.meta_keys`` and use :class:`LZUEncoderDecoder`.

    Args:
        saliency: path of the saliency file (authors' ``.pkl`` tensor
            ``(1, 1, h, w)``, or ``.npy`` / ``.pth``), e.g. from
            ``tools/saliency/boundary_saliency.py``.
        grid_shape: expected ``(h, w)`` of the saliency (the LZ grid).
        separable, attraction_fwhm, anti_crop: LZ grid parameters.
        **kwargs: ``Resize`` arguments (``scale=(w, h)``, ``keep_ratio``, ...).

    Raises:
        FileNotFoundError / ValueError: at build time, a missing saliency file
            or one of another shape than ``grid_shape`` (naming the file).
        ValueError: per sample, a label map whose size differs from the
            image's (naming both sizes and the file).
    """

    def transform(self, results: dict) -> dict:
        img = results.get('img', None)
        if img is not None:
            for key in dict.fromkeys(['gt_seg_map', *results.get('seg_fields', [])]):
                seg = results.get(key, None)
                if seg is not None and tuple(seg.shape[:2]) != tuple(img.shape[:2]):
                    raise ValueError(f'FixedSaliencyZoom: {key} is {seg.shape[0]}x{seg.shape[1]} but the image is '
                                     f'{img.shape[0]}x{img.shape[1]}{_where(results)}; the label map must have '
                                     "the image's size to be resized with it")
        return super().transform(results)


@TRANSFORMS.register_module()
class ResizeWithSource(SourceResizeMixin, Resize):
    """mmcv ``Resize`` that also hands the model the full-resolution image (model-side zoom).

    The image and ``gt_seg_map`` are resized uniformly as by ``Resize`` (same
    arguments); the image before the resize goes to the model in
    ``results['lzu_zoom']`` (:class:`lzu_mm.common.SourceResizeMixin`), and an
    :class:`LZUEncoderDecoder` with a model-side warp (``model.lzu``) zooms it
    on the device. Add ``'lzu_zoom'`` to ``PackSegInputs.meta_keys``.
    """
