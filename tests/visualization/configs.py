"""The task configs the visualisation / demo / benchmark tests use, and how to point them at the shared data."""
import os.path as osp

import pytest

from tests.conftest import REPO_ROOT

#: task -> (framework module, uniform 0.25x config, LZU 0.25x config)
TASK_CONFIGS = {
    'det': ('mmdet', 'configs/lzu_retinanet/retinanet_r50_fpn_3e_argoverse-hd-0.25x.py',
            'configs/lzu_retinanet/retinanet_r50_fpn_lzu-fixed_3e_argoverse-hd-0.25x.py'),
    'seg': ('mmseg', 'configs/lzu_pspnet/pspnet_r50-fpn_4xb2-80k_cityscapes-256x256.py',
            'configs/lzu_pspnet/pspnet_r50-fpn_lzu-fixed_4xb2-80k_cityscapes-256x256.py'),
    '3d': ('mmdet3d', 'configs/lzu_fcos3d/fcos3d_r50-caffe-dcn_fpn_head-gn_8xb2-1x_nus-mono3d-0.25x.py',
           'configs/lzu_fcos3d/fcos3d_r50-caffe-dcn_fpn_head-gn_lzu-fixed_8xb2-1x_nus-mono3d-0.25x.py'),
}
#: the small segmentation configs used for the short tools/test.py runs
SEG_SMALL = ('configs/lzu_pspnet/pspnet_r50-fpn_4xb2-80k_cityscapes-64x64.py',
             'configs/lzu_pspnet/pspnet_r50-fpn_lzu-fixed_4xb2-80k_cityscapes-64x64.py')


def task_configs(task: str):
    """``(uniform, lzu)`` absolute config paths of a task; skips the test if the framework is not installed.

    A config missing from the repository is a failure, not a skip.
    """
    framework, uniform, lzu = TASK_CONFIGS[task]
    pytest.importorskip(framework, reason=f'{framework} is not installed')
    paths = tuple(osp.join(REPO_ROOT, p) for p in (uniform, lzu))
    missing = [p for p in paths if not osp.isfile(p)]
    assert not missing, f'{task} configs missing from the repository: {missing}'
    return paths


def zoom_transform_index(config: str) -> int:
    """Index of the fixed-saliency zoom transform in the config's test pipeline (for --cfg-options overrides)."""
    from mmengine.config import Config

    from lzu_mm.visualization.config_warp import ZOOM_KEYS

    cfg = Config.fromfile(config)
    pipeline = cfg.test_dataloader.dataset.pipeline
    for k, t in enumerate(pipeline):
        if all(key in t for key in ZOOM_KEYS):
            return k
    raise AssertionError(f'{config}: no zoom transform in the test pipeline')


def zoom_grid_shape(config: str):
    from mmengine.config import Config

    cfg = Config.fromfile(config)
    return tuple(cfg.test_dataloader.dataset.pipeline[zoom_transform_index(config)].grid_shape)
