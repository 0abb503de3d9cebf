"""LZU for MMSegmentation (paper §5.2, Tables 3-4: PSPNet on Cityscapes with a fixed saliency).

Importing this module registers, in MMSegmentation's registries:

* ``MODELS``: :class:`LZUEncoderDecoder` -- an ``EncoderDecoder`` whose
  features are unzoomed after the neck (decode and auxiliary heads see
  un-warped features); :class:`LZUCascadeEncoderDecoder` -- the same for
  ``CascadeEncoderDecoder`` (OCRNet, PointRend).
* ``TRANSFORMS``: :class:`CenterSquareCrop` (the paper's centred square crop)
  and :class:`FixedSaliencyZoom` (mmcv's ``Resize`` with the image LZ-zoomed
  by a fixed saliency; ``gt_seg_map`` resized uniformly, nearest neighbour);
  :class:`ResizeWithSource` (``Resize`` handing the model the full-resolution
  image to zoom itself).
* ``METRICS``: :class:`CenterCropCityscapesMetric` -- cityscapesscripts'
  evaluation against the same centred crop of the gtFine files;
  :class:`ClasswiseIoUMetric` -- ``IoUMetric`` with the per-class IoUs in its results.

Only mmseg, mmcv, mmengine and ``lzu_mm.ops`` / ``lzu_mm.common`` are imported.
"""
from .metrics import CenterCropCityscapesMetric, ClasswiseIoUMetric
from .segmentors import LZUCascadeEncoderDecoder, LZUEncoderDecoder
from .transforms import CenterSquareCrop, FixedSaliencyZoom, ResizeWithSource

__all__ = [
    'LZUEncoderDecoder', 'LZUCascadeEncoderDecoder', 'CenterSquareCrop', 'FixedSaliencyZoom', 'ResizeWithSource',
    'CenterCropCityscapesMetric', 'ClasswiseIoUMetric'
]
