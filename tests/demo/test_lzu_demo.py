"""Acceptance: demo/lzu_demo.py on a real image for the detection, segmentation and 3-D configs (no checkpoint)."""
import json
import os.path as osp

import numpy as np
import pytest

pytest.importorskip('matplotlib', reason='matplotlib is not installed')
pytest.importorskip('mmengine', reason='mmengine is not installed')

from tests.visualization.configs import task_configs, zoom_grid_shape  # noqa: E402
from tests.visualization.utils import (cityscapes_image, load_script, nuscenes_front_image, read_rgb,  # noqa: E402
                                       resampled_official_saliency)


def _image_and_saliency(task, config, official, tmp_path):
    if task == '3d':  # the authors' own saliency for this config
        return nuscenes_front_image(), official
    saliency = resampled_official_saliency(official, zoom_grid_shape(config), str(tmp_path / 'saliency.npy'))
    return (nuscenes_front_image() if task == 'det' else cityscapes_image()), saliency


@pytest.mark.parametrize('task', ['det', 'seg', '3d'])
def test_demo_writes_warp_panels(task, tmp_path, official_nuscenes_saliency):
    _, lzu_config = task_configs(task)
    image_path, saliency = _image_and_saliency(task, lzu_config, official_nuscenes_saliency, tmp_path)
    demo = load_script('demo/lzu_demo.py')
    out = tmp_path / 'out'
    paths = demo.main([image_path, lzu_config, '--out-dir', str(out), '--saliency', saliency])

    for key in ('figure', 'zoomed', 'unzoomed', 'uncovered', 'magnification', 'summary'):
        assert osp.getsize(paths[key]) > 0, key
    figure = read_rgb(paths['figure'])
    assert figure.shape[0] > 500 and figure.shape[1] > 1000 and figure.std() > 20
    with open(paths['summary']) as f:
        summary = json.load(f)
    image = read_rgb(image_path)
    if task == 'seg':  # the config centre-crops before zooming
        side = min(image.shape[:2])
        assert summary['ori_shape'] == [side, side]
        assert summary['zoomed_shape'] == [256, 256]
    elif task == 'det':  # 1600x900 fitted into (480, 300), keep_ratio
        assert summary['ori_shape'] == [900, 1600] and summary['zoomed_shape'] == [270, 480]
    else:  # 0.25x of 1600x900
        assert summary['ori_shape'] == [900, 1600] and summary['zoomed_shape'] == [225, 400]
    # the warped image is not a uniform resize
    assert summary['zoom_vs_uniform_mean_abs_diff'] > 3
    zoomed = read_rgb(paths['zoomed'])
    assert list(zoomed.shape[:2]) == summary['zoomed_shape']
    # anti-crop: the magnification averages to 1 over the original image, and nothing is uncovered
    mag = np.load(paths['magnification'])
    assert abs(mag.mean() - 1) < 0.05
    assert mag.max() > 1.2 and summary['uncovered_fraction'] == 0


def test_demo_uniform_config_shows_identity(tmp_path):
    uniform_config, _ = task_configs('det')
    demo = load_script('demo/lzu_demo.py')
    paths = demo.main([nuscenes_front_image(), uniform_config, '--out-dir', str(tmp_path)])
    mag = np.load(paths['magnification'])
    np.testing.assert_allclose(mag, 1, atol=1e-6)


def test_demo_missing_saliency_is_named(tmp_path):
    _, lzu_config = task_configs('det')
    demo = load_script('demo/lzu_demo.py')
    with pytest.raises(FileNotFoundError, match='nope.pkl'):
        demo.main([nuscenes_front_image(), lzu_config, '--out-dir', str(tmp_path), '--saliency', 'nope.pkl'])


def test_demo_with_checkpoint_draws_predictions(tmp_path, official_nuscenes_saliency):
    """With a checkpoint (random weights: none are available offline) the predictions panel is added."""
    from tests.conftest import REPO_ROOT
    from tests.visualization.configs import SEG_SMALL
    from tests.visualization.test_hook import random_checkpoint

    task_configs('seg')
    config = osp.join(REPO_ROOT, SEG_SMALL[1])
    saliency = resampled_official_saliency(official_nuscenes_saliency, zoom_grid_shape(config),
                                           str(tmp_path / 'saliency.npy'))
    checkpoint = random_checkpoint(config, str(tmp_path / 'random.pth'))
    demo = load_script('demo/lzu_demo.py')
    paths = demo.main([cityscapes_image(), config, checkpoint, '--out-dir', str(tmp_path / 'out'), '--saliency',
                       saliency, '--cfg-options', 'model.pretrained=None'])
    with open(paths['summary']) as f:
        predictions = json.load(f)['predictions']
    side = min(read_rgb(cityscapes_image()).shape[:2])
    assert predictions['sem_seg_shape'] == [side, side]  # at the centre crop's full resolution
    assert all(0 <= c < 19 for c in predictions['classes_present'])
    assert read_rgb(paths['figure']).shape[0] > 500
