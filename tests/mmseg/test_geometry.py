"""Geometry of LZU PSPNet-FPN with the position-encoding harness (tests/position_harness.py).

Every valid cell of every FPN level (P2-P5, strides 4-32) of the unzoomed
features holds its un-warped position (bounds in
:data:`tests.position_harness.TOLERANCES`), at 64x64 and 256x256, for a
strongly non-uniform warp and the fixed-warp / per-sample paths (a sample
flipped after the zoom next to an unflipped one, horizontally or
vertically).
"""
import copy
import pickle

import pytest
from mmengine.config import Config

from mmseg.registry import MODELS, TRANSFORMS
from tests.mmseg.conftest import config_path
from tests.position_harness import (assert_geometry, build_pipeline, coordinate_samples, geometry_report,
                                    strong_saliency, unzoomed_levels)

STRIDES = (4, 8, 16, 32)


def _builder(cfg):
    def build(frame):
        model_cfg = copy.deepcopy(cfg.model)
        model_cfg.backbone = dict(type='CoordinateFeatures', out_strides=STRIDES, frame=frame)
        model_cfg.neck = None
        model_cfg.pretrained = None
        model_cfg.data_preprocessor.update(mean=[0., 0., 0.], std=[1., 1., 1.])
        return MODELS.build(model_cfg).eval()

    return build


@pytest.mark.parametrize('size', [64, 256])
@pytest.mark.parametrize('flips', [(None, None), ('horizontal', None), (None, 'vertical')])
def test_every_level_holds_its_position(tmp_path, size, flips):
    cfg = Config.fromfile(config_path(f'pspnet_r50-fpn_lzu-fixed_4xb2-80k_cityscapes-{size}x{size}.py'))
    path = tmp_path / 'saliency.pkl'
    with open(path, 'wb') as f:
        pickle.dump(strong_saliency((32, 32)), f)
    run = build_pipeline(TRANSFORMS, cfg.test_pipeline, str(path), dict(type='RandomFlip', prob=1.))
    crop = 4 * size  # the centred square crop is the original image (1024 for 256x256 as in the paper)
    samples = [coordinate_samples(run, (crop, crop), (size, size), [flip])[0] for flip in flips]
    assert_geometry(geometry_report(_builder(cfg), samples, STRIDES))


def test_crop_after_the_zoom_and_flip_without_direction_are_refused(tmp_path):
    """mmseg's usual RandomCrop after the resize must come before the zoom; a flip needs flip_direction."""
    cfg = Config.fromfile(config_path('pspnet_r50-fpn_lzu-fixed_4xb2-80k_cityscapes-64x64.py'))
    path = tmp_path / 'saliency.pkl'
    with open(path, 'wb') as f:
        pickle.dump(strong_saliency((32, 32)), f)
    model = _builder(cfg)(True)

    def forward(steps):
        results = coordinate_samples(lambda r, _: r, (256, 256), (64, 64), [None])[0]
        for step in steps:
            results = TRANSFORMS.build(step)(results)
        return unzoomed_levels(model, [results])

    zoom = dict(type='FixedSaliencyZoom', scale=(64, 64), keep_ratio=False, saliency=str(path), grid_shape=(32, 32))
    pack = dict(type='PackSegInputs', meta_keys=('img_path', 'ori_shape', 'img_shape', 'flip', 'flip_direction',
                                                 'lzu_zoom'))
    forward([zoom, dict(type='RandomFlip', prob=1.), pack])  # fine
    with pytest.raises(ValueError, match='img_shape is now'):
        forward([zoom, dict(type='RandomCrop', crop_size=(48, 48)), pack])
    with pytest.raises(ValueError, match='flip_direction'):
        forward([zoom, dict(type='RandomFlip', prob=1.), dict(pack, meta_keys=('img_shape', 'flip', 'lzu_zoom'))])


def test_model_zooms_the_full_resolution_source(tmp_path):
    """ResizeWithSource + a model-side warp: the segmentor zooms the 256x256 source itself, flips included."""
    cfg = Config.fromfile(config_path('pspnet_r50-fpn_lzu-fixed_4xb2-80k_cityscapes-64x64.py'))
    path = tmp_path / 'saliency.pkl'
    with open(path, 'wb') as f:
        pickle.dump(strong_saliency((32, 32)), f)
    cfg.test_pipeline = [
        t if t['type'] != 'FixedSaliencyZoom' else dict(type='ResizeWithSource', scale=(64, 64), keep_ratio=False)
        for t in cfg.test_pipeline
    ]
    cfg.model.lzu = dict(saliency=str(path), grid_shape=(32, 32), attraction_fwhm=10.)
    run = build_pipeline(TRANSFORMS, cfg.test_pipeline, str(path), dict(type='RandomFlip', prob=1.))
    samples = [coordinate_samples(run, (256, 256), (64, 64), [flip])[0] for flip in ('horizontal', None)]
    assert samples[0]['data_samples'].lzu_zoom['image'].shape == (256, 256, 3)
    assert_geometry(geometry_report(_builder(cfg), samples, STRIDES))
