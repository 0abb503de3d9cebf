"""LZU for MMDetection 3.x (LZU §5.1: 2D detection on Argoverse-HD).

Importing this module registers, in MMDetection's registries:

* ``ArgoverseHDDataset`` (``DATASETS``): COCO json plus Argoverse-HD sequence
  fields; ``sid`` / ``fid`` in every sample's metainfo.
* ``FixedSaliencyZoom`` (``TRANSFORMS``): the fixed-saliency LZ zoom standing
  where ``Resize`` stands; ``ChainedResize``: a uniform ``Resize`` whose
  ``scale_factor`` stays relative to the original image after an earlier
  resize (the cross-scale regime of Table 2); ``ResizeWithSource``: a
  ``Resize`` that also hands the model the full-resolution image, for a
  detector that zooms it itself (``model.lzu``).
* ``LZU`` (``MODELS``): the LZU version of any registered detector, ``dict(type='LZU', base='ATSS', ...)``
  (:mod:`lzu_mm.common.factory`); ``LZURetinaNet``, ``LZUFCOS``, ``LZUFasterRCNN``: its aliases, detectors
  whose ``extract_feat`` unzooms every FPN level (:class:`lzu_mm.common.LZUMixin`);
  ``LZUAdaptiveRetinaNet``: the warp of every frame built from boxes (video,
  :class:`lzu_mm.common.AdaptiveSaliencyMixin`; its ``SequenceSampler``,
  ``OnlineTestLoop`` / ``OnlineValLoop`` and ``CascadeSaliencyHook`` are in
  mmengine's registries).
* ``FOVEARetinaNet``, ``FOVEAFasterRCNN`` (``MODELS``): the FOVEA baseline,
  the whole detector on the zoomed image, ground truth zoomed with the exact
  inverse, boxes mapped back with the forward warp (:mod:`lzu_mm.mmdet.fovea`).

Configs load it with ``custom_imports = dict(imports=['lzu_mm.mmdet'],
allow_failed_imports=False)``.
"""
from .datasets import ARGOVERSE_HD_CLASSES, ArgoverseHDDataset
from .detectors import LZUAdaptiveRetinaNet, LZUFasterRCNN, LZUFCOS, LZURetinaNet
from .fovea import FOVEAFasterRCNN, FOVEAMixin, FOVEARetinaNet
from .transforms import ChainedResize, FixedSaliencyZoom, ResizeWithSource

__all__ = [
    'register_all_modules',
    'ARGOVERSE_HD_CLASSES', 'ArgoverseHDDataset', 'FixedSaliencyZoom', 'ChainedResize', 'ResizeWithSource',
    'LZURetinaNet', 'LZUFCOS', 'LZUFasterRCNN', 'LZUAdaptiveRetinaNet', 'FOVEAMixin', 'FOVEARetinaNet',
    'FOVEAFasterRCNN'
]


def register_all_modules(init_default_scope: bool = True) -> None:
    """Register MMDetection's modules and this package's (``LZU``, the aliases, transforms, ...), as OpenMMLab does.

    Calls ``mmdet.utils.register_all_modules(init_default_scope)`` (which also
    sets mmengine's default scope to ``'mmdet'`` when ``init_default_scope``);
    this package's modules are registered when it is imported (configs:
    ``custom_imports = dict(imports=['lzu_mm.mmdet'])``), so calling it again
    is harmless.
    """
    from mmdet.utils import register_all_modules as register_framework
    register_framework(init_default_scope)
