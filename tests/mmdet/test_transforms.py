"""FixedSaliencyZoom / ChainedResize on real images: uniform-scaled annotations, metadata, zoomed pixels, errors."""
import os.path as osp

import mmcv
import numpy as np
import pytest
import torch
from mmengine.config import Config

import lzu_mm.mmdet  # noqa: F401
from lzu_mm.ops import saliency_to_grid, uniform_saliency, zoom
from mmdet.registry import DATASETS, TRANSFORMS
from mmdet.structures.bbox import HorizontalBoxes

from .conftest import CONFIG_DIR, bump_saliency, save_pickled_saliency

GRID = (31, 51)


def _results(img, boxes):
    return dict(img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2],
                gt_bboxes=HorizontalBoxes(torch.tensor(boxes, dtype=torch.float32)),
                gt_bboxes_labels=np.zeros(len(boxes), dtype=np.int64), gt_ignore_flags=np.zeros(len(boxes), bool))


@pytest.fixture(scope='module')
def real_image():
    from tests.conftest import shared_path
    root = shared_path('nuscenes', 'samples', 'CAM_FRONT')
    name = sorted(p for p in __import__('os').listdir(root))[0]
    return mmcv.imread(osp.join(root, name))  # 900 x 1600 BGR uint8


def test_zoom_stands_where_resize_stands(tmp_path, real_image):
    """Same img_shape / scale_factor / boxes as Resize; the image is the LZ zoom; the warp is recorded."""
    path = save_pickled_saliency(bump_saliency(GRID), tmp_path / 'bump.pkl')
    boxes = [[100., 200., 400., 500.], [1200., 300., 1500., 800.]]
    zoomed = TRANSFORMS.build(dict(type='FixedSaliencyZoom', scale=(320, 200), keep_ratio=True, saliency=path,
                                   grid_shape=GRID, attraction_fwhm=4.))(_results(real_image, boxes))
    resized = TRANSFORMS.build(dict(type='Resize', scale=(320, 200), keep_ratio=True))(_results(real_image, boxes))
    assert zoomed['img'].shape == resized['img'].shape == (180, 320, 3)
    assert zoomed['img'].dtype == np.uint8
    assert zoomed['img_shape'] == resized['img_shape'] == (180, 320)
    np.testing.assert_allclose(zoomed['scale_factor'], resized['scale_factor'])
    np.testing.assert_allclose(zoomed['gt_bboxes'].tensor.numpy(), resized['gt_bboxes'].tensor.numpy())
    np.testing.assert_allclose(zoomed['homography_matrix'], resized['homography_matrix'])
    record = zoomed['lzu_zoom']
    assert record['grid'].shape == (*GRID, 2) and record['saliency'] == path and record['separable']
    # the recorded grid is the LZ grid of that saliency and the image is exactly the zoom with it
    grid = saliency_to_grid(bump_saliency(GRID).double(), True, 4., True).float()
    np.testing.assert_allclose(record['grid'], grid[0].numpy(), atol=1e-6)
    expect = zoom(torch.from_numpy(real_image).permute(2, 0, 1)[None].float(), grid, (180, 320))
    expect = expect[0].permute(1, 2, 0).round().clamp(0, 255).numpy().astype(np.uint8)
    assert np.abs(zoomed['img'].astype(int) - expect.astype(int)).max() <= 1
    # a non-uniform warp changes what the backbone sees: far from a uniform resize
    diff = np.abs(zoomed['img'].astype(float) - resized['img'].astype(float)).mean()
    assert diff > 10, diff


def test_uniform_saliency_is_a_resize(tmp_path, real_image):
    """With a uniform saliency the zoom is mmdet's Resize (OpenCV bilinear, half-pixel centres) up to OpenCV's
    11-bit fixed-point rounding: at most 1 grey level, no shift. The landed corner-aligned zoom was off by
    (1 - s) / 2 px (1.25 px at this scale); a 1-px shift of the image fails this test."""
    path = save_pickled_saliency(uniform_saliency(GRID), tmp_path / 'uniform.pkl')
    boxes = [[0., 0., 10., 10.]]
    out = TRANSFORMS.build(dict(type='FixedSaliencyZoom', scale=(320, 200), keep_ratio=True, saliency=path,
                                grid_shape=GRID))(_results(real_image, boxes))['img'].astype(float)
    ref = TRANSFORMS.build(dict(type='Resize', scale=(320, 200), keep_ratio=True))(_results(real_image, boxes))
    ref = ref['img'].astype(float)
    diff = np.abs(out - ref)
    assert diff.max() <= 1 and diff.mean() < 0.25, (diff.max(), diff.mean())
    assert np.abs(out[:, 1:] - ref[:, :-1]).mean() > 2  # one pixel of shift is far outside that
    exact = mmcv.imresize(real_image.astype(np.float32), (320, 180))  # float: OpenCV interpolates exactly
    zoomed = TRANSFORMS.build(dict(type='FixedSaliencyZoom', scale=(320, 200), keep_ratio=True, saliency=path,
                                   grid_shape=GRID))(_results(real_image.astype(np.float32), boxes))['img']
    assert np.abs(zoomed - exact).max() < 1e-2


def test_chained_scale_factor_stays_relative_to_original(tmp_path, real_image):
    """Table 2 regime: Resize to 0.25x then zoom/ChainedResize; scale_factor maps back to the original image."""
    path = save_pickled_saliency(bump_saliency(GRID), tmp_path / 'bump.pkl')
    boxes = [[100., 200., 400., 500.]]
    for second in (dict(type='ChainedResize', scale=(640, 400), keep_ratio=True),
                   dict(type='FixedSaliencyZoom', scale=(640, 400), keep_ratio=True, saliency=path, grid_shape=GRID)):
        first = TRANSFORMS.build(dict(type='Resize', scale=(160, 100), keep_ratio=True))
        out = TRANSFORMS.build(second)(first(_results(real_image, boxes)))
        assert out['img_shape'] == (360, 640)
        np.testing.assert_allclose(out['scale_factor'], (640 / 1600, 360 / 900), rtol=1e-6)
        np.testing.assert_allclose(out['gt_bboxes'].tensor.numpy(), np.array(boxes) * 0.4, rtol=1e-5)
    plain = TRANSFORMS.build(dict(type='ChainedResize', scale=(640, 400), keep_ratio=True))(_results(real_image, boxes))
    np.testing.assert_allclose(plain['scale_factor'], (0.4, 0.4))


@pytest.mark.parametrize('case', ['missing', 'shape', 'dtype', 'grid_mismatch'])
def test_bad_saliency_fails_when_built(tmp_path, case):
    """Missing file / wrong shape / integer dtype / other grid shape -> error at build, naming file and shape."""
    if case == 'missing':
        path, err = str(tmp_path / 'nothere.pkl'), FileNotFoundError
    elif case == 'shape':
        path, err = str(tmp_path / 'bad.npy'), ValueError
        np.save(path, np.ones((2, 31, 51), np.float32))
    elif case == 'dtype':
        path, err = str(tmp_path / 'int.npy'), ValueError
        np.save(path, np.ones((1, 1, 31, 51), np.int64))
    else:
        path, err = save_pickled_saliency(uniform_saliency((27, 48)), tmp_path / 'nus.pkl'), ValueError
    with pytest.raises(err) as info:
        TRANSFORMS.build(dict(type='FixedSaliencyZoom', scale=(320, 200), keep_ratio=True, saliency=path,
                              grid_shape=GRID))
    assert path in str(info.value)
    if case in ('shape', 'grid_mismatch'):
        assert '(1, 1, 31, 51)' in str(info.value) or '31, 51' in str(info.value)
    # the same error when the dataset of an LZU config is built (the pipeline is built with the dataset)
    cfg = Config.fromfile(osp.join(CONFIG_DIR, 'retinanet_r50_fpn_lzu-fixed_3e_argoverse-hd-0.5x.py'))
    dataset = cfg.test_dataloader.dataset
    dataset.pipeline[1].saliency = path
    dataset.lazy_init = True
    with pytest.raises(err) as info:
        DATASETS.build(dataset)
    assert path in str(info.value)
    # and for a model-side warp when the model is built -- except a missing file, which a self-contained LZU
    # checkpoint loaded after the build may still bring (lzu_mm.common.checkpoint_warp): its first forward fails
    from mmdet.registry import MODELS
    model_cfg = cfg.model.copy()
    model_cfg.backbone.init_cfg = None
    model_cfg.lzu = dict(saliency=path, grid_shape=GRID)
    if case == 'missing':
        model = MODELS.build(model_cfg)
        with pytest.raises(err) as info:
            model.extract_feat(torch.zeros(1, 3, 64, 64))
    else:
        with pytest.raises(err) as info:
            MODELS.build(model_cfg)
    assert path in str(info.value)


@pytest.mark.parametrize('config', ['retinanet_r50_fpn_3e_argoverse-hd-0.5x_from-0.25x.py',
                                    'retinanet_r50_fpn_lzu-fixed_3e_argoverse-hd-0.5x_from-0.25x.py'])
def test_table2_configs_keep_original_coordinates(argoverse_hd, tmp_path, config):
    """Table 2 configs: input first resized to 0.25x, then to the model's 0.5x; scale_factor w.r.t. the original."""
    cfg = Config.fromfile(osp.join(CONFIG_DIR, config))
    pipeline = cfg.test_dataloader.dataset.pipeline
    if 'lzu' in config:
        pipeline[2].saliency = save_pickled_saliency(bump_saliency(GRID), tmp_path / 'bump.pkl')
    dataset = DATASETS.build(
        dict(type='ArgoverseHDDataset', data_root=argoverse_hd['root'], ann_file=argoverse_hd['val'],
             data_prefix=dict(img=argoverse_hd['img_prefix']), test_mode=True, pipeline=pipeline))
    sample = dataset[1]['data_samples']
    # 1600 x 900 -> 0.25x frame (480 x 300 box: 480 x 270) -> 0.5x frame (960 x 600 box: 960 x 540)
    assert sample.img_shape == (540, 960) and sample.ori_shape == (900, 1600)
    np.testing.assert_allclose(sample.scale_factor, (0.6, 0.6), rtol=1e-6)
    assert ('lzu_zoom' in sample) == ('lzu' in config)
    assert (sample.sid, sample.fid) == (0, 1)
