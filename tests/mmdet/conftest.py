"""Fixtures of the MMDetection integration tests: a small Argoverse-HD-format dataset made from real images.

There is no Argoverse-HD sample beside the repository; ``argoverse_hd_root``
builds one in a temporary folder from the real nuScenes sample in
``../shared/data/nuscenes``: the 6 camera images (symlinked, not copied) as
the 6 frames of one sequence, their ``cam_instances`` 2D boxes as
annotations, the nuScenes classes mapped to the 8 Argoverse-HD classes.
"""
import json
import os
import os.path as osp
import pickle

import numpy as np
import pytest
import torch

from tests.conftest import shared_path

pytest.importorskip('mmdet', reason='MMDetection is not installed')
from mmengine.registry import DefaultScope  # noqa: E402

ARGOVERSE_HD_CLASSES = ('person', 'bicycle', 'car', 'motorcycle', 'bus', 'truck', 'traffic_light', 'stop_sign')
#: nuScenes detection classes -> Argoverse-HD classes (traffic_cone and barrier have no counterpart)
NUSCENES_TO_ARGOVERSE = {
    'pedestrian': 'person',
    'bicycle': 'bicycle',
    'car': 'car',
    'motorcycle': 'motorcycle',
    'bus': 'bus',
    'truck': 'truck',
    'trailer': 'truck',
    'construction_vehicle': 'truck',
}
CAMERAS = ('CAM_FRONT_LEFT', 'CAM_FRONT', 'CAM_FRONT_RIGHT', 'CAM_BACK_RIGHT', 'CAM_BACK', 'CAM_BACK_LEFT')
SEQ_DIR = 'val/n015-2018-07-24-11-22-45/ring_front_center'
REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(REPO_ROOT, 'configs', 'lzu_retinanet')


def build_argoverse_hd_from_nuscenes(nuscenes_root: str, out_root: str) -> dict:
    """Write an Argoverse-HD-format set (json + image folder) into ``out_root``; returns its paths."""
    with open(osp.join(nuscenes_root, 'nuscenes_infos_mini.pkl'), 'rb') as f:
        infos = pickle.load(f)
    label_names = {v: k for k, v in infos['metainfo']['categories'].items()}
    info = infos['data_list'][0]
    img_dir = osp.join(out_root, 'Argoverse-1.1', 'tracking', SEQ_DIR)
    os.makedirs(img_dir, exist_ok=True)
    images, annotations = [], []
    for fid, cam in enumerate(CAMERAS):
        src = osp.join(nuscenes_root, 'samples', cam, info['images'][cam]['img_path'])
        name = f'{fid:06d}_{cam}.jpg'
        os.symlink(osp.abspath(src), osp.join(img_dir, name))
        width, height = 1600, 900
        images.append(dict(id=fid, name=name, sid=0, fid=fid, width=width, height=height))
        for inst in info['cam_instances'].get(cam, []):
            cls = NUSCENES_TO_ARGOVERSE.get(label_names[inst['bbox_label']])
            if cls is None:
                continue
            x1, y1, x2, y2 = np.clip(inst['bbox'], 0, [width, height, width, height]).tolist()
            if x2 - x1 < 1 or y2 - y1 < 1:
                continue
            annotations.append(dict(id=len(annotations), image_id=fid, category_id=ARGOVERSE_HD_CLASSES.index(cls),
                                    bbox=[x1, y1, x2 - x1, y2 - y1], area=(x2 - x1) * (y2 - y1), iscrowd=0,
                                    ignore=0, track=0))
    ann = dict(
        categories=[dict(id=i, name=n) for i, n in enumerate(ARGOVERSE_HD_CLASSES)],
        images=images,
        annotations=annotations,
        sequences=['n015-2018-07-24-11-22-45'],
        seq_dirs=[SEQ_DIR],
        n_images=len(images))
    ann_dir = osp.join(out_root, 'Argoverse-HD', 'annotations')
    os.makedirs(ann_dir, exist_ok=True)
    for split in ('train', 'val'):  # the same 6 frames serve as both splits
        with open(osp.join(ann_dir, f'{split}.json'), 'w') as f:
            json.dump(ann, f)
    return dict(root=out_root, train=osp.join(ann_dir, 'train.json'), val=osp.join(ann_dir, 'val.json'),
                img_prefix='Argoverse-1.1/tracking/', num_boxes=len(annotations), num_images=len(images))


@pytest.fixture(autouse=True)
def _mmdet_default_scope():
    """Datasets build their pipelines from mmdet's registries; scoped to these tests only."""
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield


@pytest.fixture(scope='session')
def argoverse_hd(tmp_path_factory) -> dict:
    """A 6-frame Argoverse-HD-format dataset built from the real nuScenes images (see the module docstring)."""
    nuscenes_root = shared_path('nuscenes')
    return build_argoverse_hd_from_nuscenes(nuscenes_root, str(tmp_path_factory.mktemp('argoverse_hd')))


def save_pickled_saliency(saliency: torch.Tensor, path) -> str:
    """Write a saliency in the authors' format (a pickled ``(1, 1, h, w)`` tensor)."""
    with open(path, 'wb') as f:
        pickle.dump(saliency, f)
    return str(path)


def bump_saliency(grid_shape=(31, 51), centre=(0.3, 0.7), sigma=0.08, floor=0.02) -> torch.Tensor:
    """A non-uniform ``(1, 1, h, w)`` saliency: a Gaussian bump at ``centre`` = (y, x) in [0, 1] plus a floor."""
    h, w = grid_shape
    y = torch.linspace(0, 1, h)[:, None]
    x = torch.linspace(0, 1, w)[None]
    s = torch.exp(-((y - centre[0])**2 + (x - centre[1])**2) / (2 * sigma**2)) + floor
    return (s / s.sum())[None, None]
