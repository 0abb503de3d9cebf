"""LZU for MMSegmentation (paper §5.2, Tables 3-4: PSPNet on Cityscapes with a fixed saliency).

Importing this module registers, in MMSegmentation's registries:

* ``MODELS``: ``LZU`` (``dict(type='LZU', base='EncoderDecoder', ...)``, any ``EncoderDecoder``
  subclass, :mod:`lzu_mm.common.factory`); :class:`LZUEncoderDecoder` -- an ``EncoderDecoder`` whose
  features are unzoomed after the neck (decode and auxiliary heads see
  un-warped features); :class:`LZUCascadeEncoderDecoder` -- the same for
  ``CascadeEncoderDecoder`` (OCRNet, PointRend).
* ``TRANSFORMS``: :class:`CenterSquareCrop` (the paper's centred square crop)
  and :class:`FixedSaliencyZoom` (mmcv's ``Resize`` with the image LZ-zoomed
  by a fixed saliency; ``gt_seg_map`` resized uniformly, nearest neighbour);
  :class:`ResizeWithSource` (``Resize`` handing the model the full-resolution
  image to zoom itself).
* ``VISUALIZERS``: :class:`LZUSegLocalVisualizer` -- ``SegLocalVisualizer``
  that draws a sample on the crop (``crop_box``, :class:`CenterSquareCrop`) of
  the full image re-read by ``SegVisualizationHook`` / ``MMSegInferencer``.
* ``METRICS``: :class:`CenterCropCityscapesMetric` -- cityscapesscripts'
  evaluation against the same centred crop of the gtFine files;
  :class:`ClasswiseIoUMetric` -- ``IoUMetric`` with the per-class IoUs in its results.

Only mmseg, mmcv, mmengine and ``lzu_mm.ops`` / ``lzu_mm.common`` are imported.
"""
from .metrics import CenterCropCityscapesMetric, ClasswiseIoUMetric
from .segmentors import LZUCascadeEncoderDecoder, LZUEncoderDecoder
from .transforms import CenterSquareCrop, FixedSaliencyZoom, ResizeWithSource
from .visualizer import LZUSegLocalVisualizer

__all__ = [
    'register_all_modules',
    'LZUEncoderDecoder', 'LZUCascadeEncoderDecoder', 'CenterSquareCrop', 'FixedSaliencyZoom', 'ResizeWithSource',
    'CenterCropCityscapesMetric', 'ClasswiseIoUMetric', 'LZUSegLocalVisualizer'
]


def register_all_modules(init_default_scope: bool = True) -> None:
    """Register MMSegmentation's modules and this package's (``LZU``, the aliases, transforms, ...), as OpenMMLab does.

    Calls ``mmseg.utils.register_all_modules(init_default_scope)`` (which also
    sets mmengine's default scope to ``'mmseg'`` when ``init_default_scope``);
    this package's modules are registered when it is imported (configs:
    ``custom_imports = dict(imports=['lzu_mm.mmseg'])``), so calling it again
    is harmless.
    """
    from mmseg.utils import register_all_modules as register_framework
    register_framework(init_default_scope)
