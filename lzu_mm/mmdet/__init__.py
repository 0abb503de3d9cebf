"""LZU for MMDetection 3.x (LZU §5.1: 2D detection on Argoverse-HD).

Importing this module registers, in MMDetection's registries:

* ``ArgoverseHDDataset`` (``DATASETS``): COCO json plus Argoverse-HD sequence
  fields; ``sid`` / ``fid`` in every sample's metainfo.
* ``FixedSaliencyZoom`` (``TRANSFORMS``): the fixed-saliency LZ zoom standing
  where ``Resize`` stands; ``ChainedResize``: a uniform ``Resize`` whose
  ``scale_factor`` stays relative to the original image after an earlier
  resize (the cross-scale regime of Table 2).
* ``LZURetinaNet``, ``LZUFCOS``, ``LZUFasterRCNN`` (``MODELS``): detectors
  whose ``extract_feat`` unzooms every FPN level (:class:`lzu_mm.common.LZUMixin`).

Configs load it with ``custom_imports = dict(imports=['lzu_mm.mmdet'],
allow_failed_imports=False)``.
"""
from .datasets import ARGOVERSE_HD_CLASSES, ArgoverseHDDataset
from .detectors import LZUFasterRCNN, LZUFCOS, LZURetinaNet
from .transforms import ChainedResize, FixedSaliencyZoom

__all__ = [
    'ARGOVERSE_HD_CLASSES', 'ArgoverseHDDataset', 'FixedSaliencyZoom', 'ChainedResize', 'LZURetinaNet', 'LZUFCOS',
    'LZUFasterRCNN'
]
