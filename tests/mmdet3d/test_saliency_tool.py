"""tools/saliency/box_kde_saliency.py (issue 3) on the nuScenes info file -> a saliency FixedSaliencyZoom3D loads."""
import os.path as osp
import runpy

import numpy as np
import pytest

pytest.importorskip('mmdet3d')

from tests.conftest import REPO_ROOT  # noqa: E402
from tests.mmdet3d.utils import zoom_cfg  # noqa: E402

TOOL = osp.join(REPO_ROOT, 'tools', 'saliency', 'box_kde_saliency.py')


def test_box_kde_saliency_from_nuscenes_info_feeds_the_zoom(nuscenes_root, tmp_path):
    assert osp.isfile(TOOL), f'{TOOL} is missing from the repository'
    out = str(tmp_path / 'kde_27x48.pkl')
    tool = runpy.run_path(TOOL)  # the script's functions, without running it
    tool['main']([osp.join(nuscenes_root, 'nuscenes_infos_mini.pkl'), out, '--grid-shape', '27', '48',
                  '--data-root', nuscenes_root])
    from mmdet3d.registry import TRANSFORMS
    from mmengine.registry import init_default_scope
    import lzu_mm.mmdet3d  # noqa: F401
    init_default_scope('mmdet3d')
    zoom = TRANSFORMS.build(zoom_cfg(out))
    grid = zoom.warp.grid()[0].numpy()
    assert grid.shape == (27, 48, 2)
    # the boxes concentrate around the horizon: the LZ grid is not the identity there
    identity = np.stack(np.meshgrid(np.linspace(-1, 1, 48), np.linspace(-1, 1, 27)), -1)
    assert np.abs(grid - identity).max() > 0.01
