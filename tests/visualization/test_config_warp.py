"""lzu_mm.visualization.config_warp: the test-pipeline transforms before the zoom, built once and reused."""
import os.path as osp

import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from tests.visualization.configs import SEG_SMALL


def test_pre_zoom_transforms_are_built_once_and_reused():
    pytest.importorskip('mmseg')
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from lzu_mm.visualization.config_warp import image_before_zoom, pre_zoom_transforms

    cfg = Config.fromfile(osp.join(REPO_ROOT, SEG_SMALL[1]))
    init_default_scope(cfg.default_scope)
    transforms = pre_zoom_transforms(cfg)
    assert transforms, 'the centre-crop config crops before the zoom'
    image = np.random.default_rng(0).integers(0, 255, (1024, 2048, 3), dtype=np.uint8)
    once = image_before_zoom(cfg, image, 'a.png', transforms)
    again = image_before_zoom(cfg, image, 'a.png', transforms)
    built_here = image_before_zoom(cfg, image, 'a.png')
    assert once.shape[:2] != image.shape[:2]  # cropped
    assert np.array_equal(once, again) and np.array_equal(once, built_here)
    # the crop is the centre of the image, in RGB as given
    h, w = once.shape[:2]
    top, left = (1024 - h) // 2, (2048 - w) // 2
    assert np.array_equal(once, image[top:top + h, left:left + w])
