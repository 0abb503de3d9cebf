"""The fixed-saliency zoom for MMDetection pipelines (LZU §3, §5.1 "fixed saliency")."""
from mmdet.datasets.transforms import Resize
from mmdet.registry import TRANSFORMS

from lzu_mm.common import LZZoomMixin, SourceResizeMixin


class _ComposeScaleFactor:
    """Keep ``results['scale_factor']`` relative to the original image across chained resizes.

    MMDetection's ``Resize`` writes the factor of its own resize only, which is
    the right value when it is the first resize of the pipeline. When an
    earlier resize already changed the resolution (e.g. a camera of another
    resolution, Table 2's cross-scale regime), the factor is composed with
    the previous one, so that predictions divided by ``scale_factor`` come
    back in original-image coordinates. Boxes are still rescaled by the
    factor of this resize only (they are already in the previous resize's
    coordinates).
    """

    def transform(self, results: dict) -> dict:
        previous = results.get('scale_factor')
        results = super().transform(results)
        if previous is not None:
            sx, sy = results['scale_factor']
            results['scale_factor'] = (sx * float(previous[0]), sy * float(previous[1]))
        return results


@TRANSFORMS.register_module()
class FixedSaliencyZoom(_ComposeScaleFactor, LZZoomMixin, Resize):
    """Zoom the image with the LZ grid of a fixed, dataset-wide saliency (replaces ``Resize``).

    Stands exactly where the uniform baseline's ``Resize`` stands and takes
    the same arguments (``scale`` ``(w, h)`` or ``scale_factor``,
    ``keep_ratio``, ``clip_object_border``, ...). The image at its input
    resolution ``(H, W)`` is LZ-zoomed to the target ``(h, w)``; boxes, masks
    and segmentation maps are rescaled *uniformly* by ``(w / W, h / H)`` (they
    stay in un-warped coordinates, since the model unzooms its features);
    ``img_shape``, ``scale_factor``, ``keep_ratio`` and the homography are set
    as ``Resize`` sets them for a uniform resize. ``results['lzu_zoom']``
    records the grid (see :class:`lzu_mm.common.LZZoomMixin`): add
    ``'lzu_zoom'`` to ``PackDetInputs.meta_keys``.

    If an earlier transform already resized the image, ``scale_factor`` is
    composed with the earlier one (relative to the original image).

    Args:
        saliency: saliency file, loaded once at build time: the authors'
            pickled ``torch.Tensor`` ``(1, 1, h, w)`` (``.pkl``), ``.npy`` or
            ``.pth``; see ``tools/saliency/box_kde_saliency.py``.
        grid_shape: expected ``(h, w)`` of the saliency, the LZ grid shape.
        separable, attraction_fwhm, anti_crop: LZ grid parameters
            (:func:`lzu_mm.ops.saliency_to_grid`); ``attraction_fwhm`` in grid
            cells.
        **kwargs: ``Resize`` arguments.

    Raises:
        FileNotFoundError, ValueError: at build time, for a missing saliency
            file or one of the wrong shape / dtype / a different grid shape
            (the message names the file and the expected shape).
    """


@TRANSFORMS.register_module()
class ChainedResize(_ComposeScaleFactor, Resize):
    """MMDetection ``Resize`` whose ``scale_factor`` is composed with an earlier resize's.

    The uniform counterpart of :class:`FixedSaliencyZoom` in a pipeline that
    first changes the input resolution with a plain ``Resize`` (Table 2:
    test at another input scale than the model's), e.g.
    ``[LoadImageFromFile, Resize(scale=(480, 300)), ChainedResize(scale=(960, 600)), ...]``.
    Without an earlier resize it is exactly ``Resize``.
    """


@TRANSFORMS.register_module()
class ResizeWithSource(_ComposeScaleFactor, SourceResizeMixin, Resize):
    """MMDetection ``Resize`` that also hands the model the full-resolution image (model-side zoom).

    The image, boxes and masks are resized uniformly as by ``Resize`` (same
    arguments), and the image before the resize goes to the model in
    ``results['lzu_zoom']`` (:class:`lzu_mm.common.SourceResizeMixin`); an LZU
    detector with a model-side warp (``model.lzu=dict(...)``) zooms it on the
    device to the resized image's frame. ``scale_factor`` is composed with an
    earlier resize's. Add ``'lzu_zoom'`` (and ``'homography_matrix'``) to
    ``PackDetInputs.meta_keys``.
    """
