"""The fixed-saliency zoom for monocular 3D pipelines (LZU §3, §5.3 "fixed saliency").

FCOS3D's nuScenes pipeline resizes with a ``Resize``; at scales other than 1x
the resize must also scale the camera intrinsics and the projected centres,
which MMDetection3D's ``Resize3D`` does (MMDetection's ``Resize`` does not).
:class:`FixedSaliencyZoom3D` stands where that ``Resize3D`` stands.
"""
import numpy as np
from mmdet3d.datasets.transforms import Resize3D
from mmdet3d.registry import TRANSFORMS

from lzu_mm.common import LZZoomMixin, SourceResizeMixin


class _ComposeScaleFactor3D:
    """Keep ``results['scale_factor']`` relative to the original image across chained resizes.

    ``Resize3D`` scales ``cam2img``, ``centers_2d`` and the 2D boxes by the
    factor of its own resize (they are in the current image's pixels), which
    is right; only the recorded ``scale_factor`` is composed afterwards with
    an earlier resize's (Table 2: the input first resized to another scale),
    so that 2D predictions divided by it come back in original-image pixels.
    Also turns ``cam2img`` into a float64 array (a copy) before it is scaled.

    Raises:
        ValueError: the sample has no ``cam2img`` (a monocular 3D sample
            needs its camera intrinsics).
    """

    def transform(self, results: dict) -> dict:
        if results.get('cam2img') is None:
            raise ValueError(f'{type(self).__name__}: sample {results.get("img_path", "?")} has no cam2img (camera '
                             'intrinsics, 3x3 or 4x4, pixels); monocular 3D samples must come from an MMDetection3D '
                             "dataset with load_type='fov_image_based' or 'mv_image_based' and be loaded with "
                             'LoadImageFromFileMono3D')
        cam2img = np.array(results['cam2img'], dtype=np.float64)
        if cam2img.ndim != 2 or cam2img.shape[0] < 3 or cam2img.shape[1] < 3:
            raise ValueError(f'{type(self).__name__}: cam2img of sample {results.get("img_path", "?")} must be a '
                             f'3x3, 3x4 or 4x4 matrix, got shape {cam2img.shape}')
        results['cam2img'] = cam2img
        previous = results.get('scale_factor')
        results = super().transform(results)
        if previous is not None:
            sx, sy = results['scale_factor'][:2]
            results['scale_factor'] = (float(sx) * float(previous[0]), float(sy) * float(previous[1]))
        return results


@TRANSFORMS.register_module()
class FixedSaliencyZoom3D(_ComposeScaleFactor3D, LZZoomMixin, Resize3D):
    """Zoom a camera image with the LZ grid of a fixed, dataset-wide saliency (replaces ``Resize3D``).

    Takes ``Resize3D``'s arguments (``scale`` ``(w, h)`` or ``scale_factor``,
    ``keep_ratio``, ...). The ``(H, W)`` image is LZ-zoomed to the target
    ``(h, w)``; everything else is a *uniform* resize by ``(sx, sy) = (w / W,
    h / H)``: the 2D boxes ``gt_bboxes`` (pixels) and ``centers_2d`` (pixels)
    are multiplied by ``(sx, sy)``, rows 0 and 1 of ``cam2img`` (pixels) by
    ``sx`` and ``sy``, while ``depths`` and the 3D boxes (camera coordinates,
    metres) stay as they are -- the model unzooms its features, so its head
    works in the uniformly resized image. ``results['lzu_zoom']`` records the
    grid (:class:`lzu_mm.common.LZZoomMixin`): add ``'lzu_zoom'`` and
    ``'flip_direction'`` to ``Pack3DDetInputs.meta_keys``. If an earlier
    transform already resized the image, ``scale_factor`` is composed with
    the earlier one.

    Args:
        saliency: saliency file loaded once at build time: the authors'
            pickled ``torch.Tensor`` ``(1, 1, h, w)`` (``.pkl``, e.g. their
            ``nuscenes_fixed_saliency.pkl``), ``.npy`` or ``.pth``.
        grid_shape: expected ``(h, w)`` of the saliency (the LZ grid shape;
            27x48 for nuScenes in the paper).
        separable, attraction_fwhm, anti_crop: LZ grid parameters
            (:func:`lzu_mm.ops.saliency_to_grid`), ``attraction_fwhm`` in grid
            cells.
        **kwargs: ``Resize3D`` arguments.

    Raises:
        FileNotFoundError, ValueError: at build time, for a missing saliency
            file or one of the wrong shape / dtype (the message names the file
            and the expected shape).
        ValueError: a sample without ``cam2img``.
    """


@TRANSFORMS.register_module()
class ChainedResize3D(_ComposeScaleFactor3D, Resize3D):
    """``Resize3D`` whose ``scale_factor`` is composed with an earlier resize's.

    The uniform counterpart of :class:`FixedSaliencyZoom3D` after a first
    resize to another input scale (Table 2), e.g. ``[LoadImageFromFileMono3D,
    Resize3D(scale=(400, 225)), ChainedResize3D(scale=(800, 450)), ...]``.
    Without an earlier resize it is ``Resize3D`` (with the ``cam2img`` check).

    Raises:
        ValueError: a sample without ``cam2img``.
    """


@TRANSFORMS.register_module()
class ResizeWithSource3D(_ComposeScaleFactor3D, SourceResizeMixin, Resize3D):
    """``Resize3D`` that also hands the model the full-resolution image (model-side zoom).

    Intrinsics, ``centers_2d``, 2D boxes and the image are resized uniformly
    as by ``Resize3D`` (same arguments); the image before the resize goes to
    the model in ``results['lzu_zoom']`` (:class:`lzu_mm.common.SourceResizeMixin`),
    and an LZU monocular detector with a model-side warp (``model.lzu``) zooms
    it on the device. Add ``'lzu_zoom'`` to ``Pack3DDetInputs.meta_keys``.

    Raises:
        ValueError: a sample without ``cam2img``.
    """
