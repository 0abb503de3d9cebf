"""Helpers shared by the visualisation, demo and analysis-tool tests."""
import glob
import importlib.util
import os.path as osp

import numpy as np
import torch.nn.functional as F

from tests.conftest import REPO_ROOT, shared_path

#: LZ parameters the paper's authors released with their nuScenes saliency.
OFFICIAL_NUSCENES_LZ = dict(grid_shape=(27, 48), attraction_fwhm=10., separable=True, anti_crop=True)


def load_script(rel_path: str):
    """Import a script of the repository (``tools/...``, ``demo/...``) as a module."""
    path = osp.join(REPO_ROOT, rel_path)
    name = 'lzu_script_' + osp.splitext(osp.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def nuscenes_front_image() -> str:
    """The real nuScenes CAM_FRONT image (1600x900) of ``../shared/data``."""
    files = glob.glob(osp.join(shared_path('nuscenes', 'samples', 'CAM_FRONT'), '*.jpg'))
    assert files, 'no CAM_FRONT image in ../shared/data/nuscenes/samples/CAM_FRONT'
    return files[0]


def cityscapes_image() -> str:
    """The real Cityscapes val image (256x128) of ``../shared/data``."""
    return shared_path('cityscapes', 'leftImg8bit', 'val', 'frankfurt', 'frankfurt_000000_000294_leftImg8bit.png')


def resampled_official_saliency(official_path: str, grid_shape, out_path: str) -> str:
    """The authors' nuScenes saliency resampled (area-preserving bilinear) to ``grid_shape``, saved as ``.npy``.

    A real driving-scene saliency (mass on the horizon band) for configs whose
    own saliency file is computed from their training data, absent here.
    """
    from lzu_mm.ops import load_saliency

    sal = load_saliency(official_path, OFFICIAL_NUSCENES_LZ['grid_shape']).double()
    out = F.interpolate(sal, size=tuple(grid_shape), mode='bilinear', align_corners=True).clamp_min(0)
    out = (out / out.sum()).float()[0, 0].numpy()
    np.save(out_path, out)
    return out_path


def read_rgb(path: str) -> np.ndarray:
    import cv2
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    assert img is not None, f'cannot read {path}'
    return img[..., ::-1].copy()
