"""The fixed-saliency zoom as a pipeline transform core (LZU §3, fixed saliency, §5).

:class:`LZZoomMixin` replaces the image resampling of a framework's ``Resize``
transform by an LZ zoom with a fixed saliency. Everything else of that
``Resize`` stays: the target size (``scale`` / ``scale_factor`` /
``keep_ratio``), and the *uniform* rescaling of boxes, masks, segmentation
maps, intrinsics and keypoints by ``target / original``. Labels therefore stay
in un-warped coordinates; the model unzooms its features with exactly the
recorded warp. The transform records, in ``results['lzu_zoom']``::

    dict(grid=<float32 ndarray [h, w, 2]: the LZ grid, normalised (x, y)>,
         separable=bool, attraction_fwhm=float, anti_crop=bool,
         align_corners=bool,         # pixel convention of the zoom (lzu_mm.ops.warp)
         saliency=<path of the saliency file or None>,
         img_shape=(h, w),           # what the grid applies to: the zoomed image ...
         flip=bool, flip_direction=<str or None>,  # ... its flip state at zoom time ...
         homography_matrix=<3x3 float64 ndarray or None>)  # ... and MMDetection's homography then

so that the model can tell what happened to the image after the zoom (see
:func:`lzu_mm.common.model.post_zoom_flip`): a flip is composed into the grid,
anything else that changed the image is refused. Add ``'lzu_zoom'`` (and, for
MMDetection, ``'homography_matrix'``) to the ``meta_keys`` of the packing
transform so the model receives it.
"""
from typing import Sequence

import mmcv
import numpy as np
import torch

from lzu_mm.ops import LZWarp, load_saliency, uniform_saliency

from .checkpoint_warp import check_config_warp

#: Class names of the transforms that write an ``lzu_zoom`` record (every :class:`LZZoomMixin` and
#: :class:`SourceResizeMixin` subclass, also before its module is imported), for config checks
#: (:mod:`lzu_mm.common.pipeline`).
ZOOM_TRANSFORMS = {'FixedSaliencyZoom', 'FixedSaliencyZoom3D', 'ResizeWithSource', 'ResizeWithSource3D'}
#: Those of them that hand the model the full-resolution source (every :class:`SourceResizeMixin` subclass).
SOURCE_TRANSFORMS = {'ResizeWithSource', 'ResizeWithSource3D'}


def _frame_record(results: dict) -> dict:
    """What a record applies to: the image's ``img_shape``, flip state and MMDetection homography now."""
    flip = bool(results.get('flip', False))
    homography = results.get('homography_matrix')
    return dict(img_shape=tuple(int(v) for v in results['img_shape'][:2]), flip=flip,
                flip_direction=results.get('flip_direction') if flip else None,
                homography_matrix=None if homography is None else np.array(homography, dtype=np.float64))


class LZZoomMixin:
    """Turns a ``Resize`` subclass into the fixed-saliency LZ zoom.

    Use as the first base: ``class FixedSaliencyZoom(LZZoomMixin, Resize)``.

    Args:
        saliency: path of the saliency file (the authors' pickled ``(1, 1, h,
            w)`` tensor ``.pkl``, ``.npy`` or ``.pth``), loaded once when the
            transform is built (a missing file is taken from a loaded LZU
            checkpoint that stores it, :mod:`lzu_mm.common.checkpoint_warp`),
            or ``'uniform'`` (a uniform resize through the LZ machinery: the
            baseline that LZU must match).
        grid_shape: expected ``(h, w)`` of the saliency (= LZ grid shape).
        separable, attraction_fwhm, anti_crop: LZ grid parameters (see
            :func:`lzu_mm.ops.saliency_to_grid`).
        align_corners: pixel convention of the zoom (:mod:`lzu_mm.ops.warp`):
            False (default) samples at half-pixel centres like ``Resize``, so
            that the uniformly scaled labels line up with the image to the
            pixel; True is the LZU authors' convention (offset from the labels
            by up to ``(1 - s) / 2`` pixels at scale ``s``).
        **kwargs: the ``Resize`` arguments (``scale``, ``scale_factor``,
            ``keep_ratio``, ...).

    Raises:
        FileNotFoundError / ValueError: at build time, for a missing file or a
            saliency of the wrong shape or dtype (naming the file and the
            expected shape).
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        ZOOM_TRANSFORMS.add(cls.__name__)

    def __init__(self,
                 saliency: str,
                 grid_shape: Sequence[int],
                 separable: bool = True,
                 attraction_fwhm: float = 13.,
                 anti_crop: bool = True,
                 align_corners: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        if saliency is None:
            raise ValueError('saliency must be the path of a saliency file, got None')
        self.saliency_path = str(saliency)
        self.grid_shape = tuple(int(v) for v in grid_shape)
        # a missing file is read from a loaded self-contained LZU checkpoint (lzu_mm.common.checkpoint_warp)
        check_config_warp(self.saliency_path, self.grid_shape, type(self).__name__, separable=separable,
                          attraction_fwhm=attraction_fwhm, anti_crop=anti_crop, align_corners=align_corners)
        sal = uniform_saliency(self.grid_shape) if self.saliency_path == 'uniform' else load_saliency(
            saliency, self.grid_shape)
        self.warp = LZWarp(sal, separable=separable,
                           attraction_fwhm=attraction_fwhm, anti_crop=anti_crop, align_corners=align_corners)
        self._record = dict(grid=self.warp.grid()[0].numpy().astype(np.float32), separable=bool(separable),
                            attraction_fwhm=float(attraction_fwhm), anti_crop=bool(anti_crop),
                            align_corners=bool(align_corners), saliency=self.saliency_path)

    def transform(self, results: dict) -> dict:
        """The ``Resize`` transform with the image zoomed; records the warp and what it applies to."""
        zooms = results.get('img', None) is not None
        results = super().transform(results)
        if zooms:
            results['lzu_zoom'] = dict(self._record, **_frame_record(results))
        return results

    def zoom_image(self, img: np.ndarray, out_shape: Sequence[int]) -> np.ndarray:
        """Zoom an ``[H, W]`` or ``[H, W, C]`` image to ``out_shape = (h, w)`` pixels; keeps dtype (integers rounded).

        With a uniform saliency and ``align_corners=False`` this is mmcv's
        bilinear ``imresize`` (OpenCV ``INTER_LINEAR``) up to OpenCV's
        fixed-point rounding.
        """
        chw = torch.from_numpy(np.ascontiguousarray(img if img.ndim == 3 else img[..., None])).permute(2, 0, 1)
        out = self.warp.zoom(chw[None].float(), out_shape)[0].permute(1, 2, 0).numpy()
        if np.issubdtype(img.dtype, np.integer):
            info = np.iinfo(img.dtype)
            out = np.clip(np.rint(out), info.min, info.max)
        out = out.astype(img.dtype)
        return out if img.ndim == 3 else out[..., 0]

    def _target_size(self, results: dict, h: int, w: int):
        if self.keep_ratio:
            new_w, new_h = mmcv.rescale_size((w, h), results['scale'])
        else:
            new_w, new_h = results['scale']
        return int(new_h), int(new_w)

    def _resize_img(self, results: dict) -> None:
        if results.get('img', None) is None:
            return
        h, w = results['img'].shape[:2]
        new_h, new_w = self._target_size(results, h, w)
        results['img'] = self.zoom_image(results['img'], (new_h, new_w))
        results['img_shape'] = (new_h, new_w)
        results['scale_factor'] = (new_w / w, new_h / h)
        results['keep_ratio'] = self.keep_ratio

    def __repr__(self) -> str:
        return (super().__repr__()[:-1] + f', saliency={self.saliency_path!r}, grid_shape={self.grid_shape}, '
                f'separable={self.warp.separable}, attraction_fwhm={self.warp.attraction_fwhm}, '
                f'anti_crop={self.warp.anti_crop}, align_corners={self.warp.align_corners})')


class SourceResizeMixin:
    """Turns a ``Resize`` into a resize that also hands the model the image it resized from (model-side zoom).

    Use as the first base: ``class ResizeWithSource(SourceResizeMixin, Resize)``.
    Everything is the ``Resize``'s -- the image, boxes, masks, maps and
    intrinsics are resized uniformly to the target size, ``img_shape`` and
    ``scale_factor`` set as usual, so later transforms (flips, padding) and
    the labels work in the target frame -- and the image *before* the resize
    (the full-resolution source, in its dtype, uint8 for loaded images) goes
    to the model in the record::

        results['lzu_zoom'] = dict(mode='source', image=<[H, W, C] source>, src_shape=(H, W),
                                   img_shape=(h, w), flip=..., flip_direction=..., homography_matrix=...)

    The LZU model then zooms the source on its device, to exactly the target
    frame, with its own (fixed, adaptive or learned) warp, in place of the
    uniformly resized image (:class:`lzu_mm.common.LZUMixin`), and replaces
    the image in the record by the grid it used (``grid`` ``[h, w, 2]``,
    ``separable``, ``align_corners``, as the pipeline zoom's records), so
    predictions carry their warp. Put ``'lzu_zoom'`` in the packing
    transform's ``meta_keys``.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        ZOOM_TRANSFORMS.add(cls.__name__)
        SOURCE_TRANSFORMS.add(cls.__name__)

    def transform(self, results: dict) -> dict:
        """``Resize.transform``, then the source image recorded for the model."""
        source = results.get('img', None)
        results = super().transform(results)
        if source is not None:
            results['lzu_zoom'] = dict(mode='source', image=source, src_shape=tuple(source.shape[:2]),
                                       **_frame_record(results))
        return results
