"""LZU for MMDetection3D 1.x (LZU §5.3: monocular 3D detection, FCOS3D on nuScenes, Tables 5 and 2).

Importing this module registers, in MMDetection3D's registries:

* ``LZU`` (``MODELS``): ``dict(type='LZU', base='FCOSMono3D', ...)``, any single-stage monocular 3D
  detector (:mod:`lzu_mm.common.factory`); ``LZUFCOSMono3D``, ``LZUSMOKEMono3D`` (``MODELS``): single-stage monocular
  3D detectors whose ``extract_feat`` unzooms every FPN level
  (:class:`lzu_mm.common.LZUMixin`); :func:`lzu_mono3d_detector` makes the LZU
  variant of any other ``SingleStageMono3DDetector``. ``ResizedFCOSMono3D``:
  the uniform baseline, ``FCOSMono3D`` decoding 3D boxes with the resized
  image's intrinsics.
* ``FixedSaliencyZoom3D`` (``TRANSFORMS``): the fixed-saliency LZ zoom
  standing where ``Resize3D`` stands (intrinsics, ``centers_2d`` and 2D boxes
  scale uniformly, depths stay); ``ChainedResize3D``: ``Resize3D`` after an
  earlier resize (Table 2's cross-scale regime); ``ResizeWithSource3D``:
  ``Resize3D`` handing the model the full-resolution image to zoom itself.
* ``NuScenesSubsetMetric`` (``METRICS``): mAP, mATE, mASE, mAOE, mAVE, mAAE
  and NDS of monocular predictions against the info file's annotations,
  with nuscenes-devkit's evaluation, on any subset.

Configs load it with ``custom_imports = dict(imports=['lzu_mm.mmdet3d'],
allow_failed_imports=False)``.
"""
from .detectors import (LZUFCOSMono3D, LZUMono3DMixin, LZUSMOKEMono3D, ResizedFCOSMono3D, ResizedInputMono3DMixin,
                        lzu_mono3d_detector)
from .metrics import NuScenesSubsetMetric
from .transforms import ChainedResize3D, FixedSaliencyZoom3D, ResizeWithSource3D

__all__ = [
    'register_all_modules',
    'LZUFCOSMono3D', 'LZUSMOKEMono3D', 'LZUMono3DMixin', 'ResizedFCOSMono3D', 'ResizedInputMono3DMixin',
    'lzu_mono3d_detector', 'FixedSaliencyZoom3D', 'ChainedResize3D', 'ResizeWithSource3D', 'NuScenesSubsetMetric'
]


def register_all_modules(init_default_scope: bool = True) -> None:
    """Register MMDetection3D's modules and this package's (``LZU``, the aliases, transforms, ...), as OpenMMLab does.

    Calls ``mmdet3d.utils.register_all_modules(init_default_scope)`` (which also
    sets mmengine's default scope to ``'mmdet3d'`` when ``init_default_scope``);
    this package's modules are registered when it is imported (configs:
    ``custom_imports = dict(imports=['lzu_mm.mmdet3d'])``), so calling it again
    is harmless.
    """
    from mmdet3d.utils import register_all_modules as register_framework
    register_framework(init_default_scope)
