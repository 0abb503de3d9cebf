"""LZU detectors: zoom the input, unzoom every FPN level (LZU §4, Figure 3).

Each class is the MMDetection detector with :class:`lzu_mm.common.LZUMixin`
as first base. Any other single- or two-stage detector becomes an LZU one in
the same four lines::

    @MODELS.register_module()
    class LZUMyDetector(LZUMixin, MyDetector):
        def __init__(self, *args, lzu=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.init_lzu(lzu)

The ``lzu`` argument: ``None`` (the pipeline's :class:`FixedSaliencyZoom`
zooms; the model unzooms with the warp recorded in each sample's
``lzu_zoom`` metainfo), or ``dict(saliency=<file or 'uniform'>,
grid_shape=(h, w), separable=True, attraction_fwhm=..., anti_crop=True)`` to
zoom model-side, on the device and differentiably, the images of a batch
that the pipeline resized uniformly. LZU adds no parameters: a checkpoint of
the base detector loads with ``strict=True``.
"""
from typing import Optional

from mmdet.models.detectors import FCOS, FasterRCNN, RetinaNet
from mmdet.registry import MODELS

from lzu_mm.common import AdaptiveSaliencyMixin, LZUMixin


class _LZUDetector(LZUMixin):

    def __init__(self, *args, lzu: Optional[dict] = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.init_lzu(lzu)


@MODELS.register_module()
class LZURetinaNet(_LZUDetector, RetinaNet):
    """RetinaNet (ResNet + FPN) with LZU: every FPN level is unzoomed before the head.

    Args:
        lzu: see the module docstring.
        *args, **kwargs: ``RetinaNet`` arguments.

    Raises:
        ValueError / FileNotFoundError: bad ``lzu`` config or saliency file.
    """


@MODELS.register_module()
class LZUFCOS(_LZUDetector, FCOS):
    """FCOS with LZU (single-stage, anchor-free): every FPN level is unzoomed before the head."""


@MODELS.register_module()
class LZUFasterRCNN(_LZUDetector, FasterRCNN):
    """Faster R-CNN with LZU (two-stage): the RPN and the RoI head see unzoomed FPN levels."""


@MODELS.register_module()
class LZUAdaptiveRetinaNet(AdaptiveSaliencyMixin, RetinaNet):
    """RetinaNet with LZU and an adaptive saliency per frame (LZU Table 1 "LZU, adaptive"; FOVEA KDE SI / LKDE / SC).

    Zooms the full-resolution image (``ResizeWithSource`` in the pipeline)
    with a saliency built from boxes: jittered ground truth (then, cascaded,
    its own detections) in training, the previous frame's detections online
    (:class:`lzu_mm.common.AdaptiveSaliencyMixin`); every FPN level is
    unzoomed with that frame's inverse.

    Args:
        lzu: the LZ grid (``grid_shape``, ``separable``, ``attraction_fwhm``,
            ``anti_crop``, ``align_corners``) and the fixed saliency
            (``saliency``: a file for the composite / fixed fallback, or
            ``'uniform'``); see :func:`lzu_mm.common.build_lzu_warp`.
        adaptive: see :meth:`lzu_mm.common.AdaptiveSaliencyMixin.init_adaptive`.
        *args, **kwargs: ``RetinaNet`` arguments.

    Raises:
        ValueError / FileNotFoundError: bad ``lzu`` / ``adaptive`` config or saliency file.
    """

    def __init__(self, *args, lzu: Optional[dict] = None, adaptive: Optional[dict] = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.init_lzu(lzu)
        self.init_adaptive(adaptive)
