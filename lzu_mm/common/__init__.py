"""Framework-agnostic OpenMMLab integration (imports mmengine/mmcv only).

The MMDetection, MMSegmentation and MMDetection3D subpackages compose these:
:class:`LZZoomMixin` turns a framework's ``Resize`` into the fixed-saliency
zoom, :class:`LZUMixin` adds zoom/unzoom around a model's ``extract_feat``.
"""
from .checkpoint import allow_mmengine_checkpoints
from .model import LZUMixin, build_lzu_warp
from .transforms import LZZoomMixin

__all__ = ['allow_mmengine_checkpoints', 'LZUMixin', 'LZZoomMixin', 'build_lzu_warp']
