"""Fixtures of the MMDetection integration tests: a small Argoverse-HD-format dataset made from real images.

There is no Argoverse-HD sample beside the repository; ``argoverse_hd_root``
builds one in a temporary folder from the real nuScenes sample in
``../shared/data/nuscenes`` with ``tools/misc/nuscenes_to_argoverse_hd.py``:
the 6 camera images (symlinked, not copied) as the 6 frames of one sequence,
their ``cam_instances`` 2D boxes as annotations, the nuScenes classes mapped
to the 8 Argoverse-HD classes.
"""
import importlib.util
import os.path as osp
import pickle

import pytest
import torch

from tests.conftest import bump_saliency, shared_path  # noqa: F401 (bump_saliency: re-exported)

pytest.importorskip('mmdet', reason='MMDetection is not installed')
from mmengine.registry import DefaultScope  # noqa: E402

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(REPO_ROOT, 'configs', 'lzu_retinanet')


def _load_converter():
    """``tools/misc/nuscenes_to_argoverse_hd.py`` (the README's quick start uses the same tool)."""
    path = osp.join(REPO_ROOT, 'tools', 'misc', 'nuscenes_to_argoverse_hd.py')
    spec = importlib.util.spec_from_file_location('nuscenes_to_argoverse_hd', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_argoverse_hd_from_nuscenes(nuscenes_root: str, out_root: str) -> dict:
    """Write an Argoverse-HD-format set (json + image folder of symlinks) into ``out_root``; returns its paths."""
    return _load_converter().build_argoverse_hd_from_nuscenes(nuscenes_root, out_root, log=lambda msg: None)


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
