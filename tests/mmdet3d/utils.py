"""Builders shared by the MMDetection3D tests (real nuScenes sample in ../shared/data/nuscenes)."""
import copy
import os.path as osp

from tests.conftest import REPO_ROOT

CONFIG_DIR = osp.join(REPO_ROOT, 'configs', 'lzu_fcos3d')
UNIFORM_025 = osp.join(CONFIG_DIR, 'fcos3d_r50-caffe-dcn_fpn_head-gn_8xb2-1x_nus-mono3d-0.25x.py')
LZU_025 = osp.join(CONFIG_DIR, 'fcos3d_r50-caffe-dcn_fpn_head-gn_lzu-fixed_8xb2-1x_nus-mono3d-0.25x.py')

LOAD_ANNOTATIONS = dict(type='LoadAnnotations3D', with_bbox=True, with_label=True, with_attr_label=True,
                        with_bbox_3d=True, with_label_3d=True, with_bbox_depth=True)
TRAIN_KEYS = ['img', 'gt_bboxes', 'gt_bboxes_labels', 'attr_labels', 'gt_bboxes_3d', 'gt_labels_3d', 'centers_2d',
              'depths']


def zoom_cfg(saliency: str, scale=(400, 225), **kwargs) -> dict:
    """The fixed-saliency zoom with the authors' nuScenes LZ hyper-parameters."""
    cfg = dict(type='FixedSaliencyZoom3D', scale=scale, keep_ratio=True, saliency=saliency, grid_shape=(27, 48),
               separable=True, attraction_fwhm=10., anti_crop=True)
    cfg.update(kwargs)
    return cfg


def nuscenes_mono3d_dataset(root: str, pipeline: list, test_mode: bool = False, **kwargs):
    """The stock ``nus-mono3d.py`` dataset on the real sample (6 images), with ``pipeline`` (``kwargs``: more
    ``NuScenesDataset`` arguments, e.g. ``with_velocity=False`` for 7-dim boxes)."""
    from mmengine.hub import get_config
    from mmengine.registry import init_default_scope

    import lzu_mm.mmdet3d  # noqa: F401  (registers the LZU modules)
    from mmdet3d.registry import DATASETS
    init_default_scope('mmdet3d')
    cfg = copy.deepcopy(get_config('mmdet3d::_base_/datasets/nus-mono3d.py').train_dataloader.dataset)
    cfg.update(data_root=root, ann_file='nuscenes_infos_mini.pkl', pipeline=pipeline, test_mode=test_mode, **kwargs)
    return DATASETS.build(cfg)


def fcos3d_model_cfg(config: str = UNIFORM_025, **test_cfg):
    """The model config of a ``configs/lzu_fcos3d`` file, without pretrained weights."""
    from mmengine.config import Config
    cfg = Config.fromfile(config).model
    cfg.backbone.init_cfg = None
    cfg.test_cfg.update(test_cfg)
    return cfg


def unpacked_samples(dataset) -> list:
    """The pipeline's results dicts of every item, as ``Det3DDataset.prepare_data`` feeds them (not packed)."""
    out = []
    for i in range(len(dataset)):
        results = copy.deepcopy(dataset.get_data_info(i))
        results.update(box_type_3d=dataset.box_type_3d, box_mode_3d=dataset.box_mode_3d)
        out.append(dataset.pipeline(results))
    return out
