"""Framework-agnostic OpenMMLab integration (imports mmengine/mmcv only).

The MMDetection, MMSegmentation and MMDetection3D subpackages compose these:
:class:`LZZoomMixin` turns a framework's ``Resize`` into the fixed-saliency
zoom, :class:`LZUMixin` adds zoom/unzoom around a model's ``extract_feat``,
:class:`AdaptiveSaliencyMixin` builds the warp per image from boxes (video:
previous-frame detections), with its sampler, loops and hook in mmengine's
registries.
"""
from .adaptive import (AdaptiveSaliencyMixin, BoxSaliency, CascadeSaliencyHook, OnlineTestLoop, OnlineValLoop,
                       SequenceSampler)
from .checkpoint import allow_mmengine_checkpoints
from .checkpoint_warp import LZUCheckpointHook, read_checkpoint_warps, register_checkpoint_warps
from .model import LZUMixin, build_lzu_resampling, build_lzu_warp, post_zoom_flip
from .pipeline import check_lzu_config, check_lzu_pipeline, use_tta
from .resampling import BilinearInterpolation, DownsizeNet, SaliencyNet
from .transforms import LZZoomMixin, SourceResizeMixin

allow_mmengine_checkpoints()  # every integration imports this package: its checkpoints load with torch >= 2.6

__all__ = [
    'allow_mmengine_checkpoints', 'LZUMixin', 'LZZoomMixin', 'SourceResizeMixin', 'build_lzu_warp', 'post_zoom_flip',
    'check_lzu_config', 'check_lzu_pipeline', 'build_lzu_resampling', 'BilinearInterpolation', 'DownsizeNet',
    'SaliencyNet', 'AdaptiveSaliencyMixin', 'BoxSaliency', 'CascadeSaliencyHook', 'OnlineTestLoop', 'OnlineValLoop',
    'SequenceSampler', 'use_tta', 'LZUCheckpointHook', 'read_checkpoint_warps', 'register_checkpoint_warps'
]
