"""Geometry of LZU FCOS3D with the position-encoding harness (tests/position_harness.py).

Every valid cell of every FPN level (P3-P7) of the unzoomed features holds its
un-warped position (bounds in :data:`tests.position_harness.TOLERANCES`): the
pixel ``(j s, i s)`` of the conv-aligned cell, which FCOS3D's head addresses
as the point ``j s + s // 2`` (a constant offset that the base head learns on
the same cells, so unzoom must keep the cell, not the point). Checked at 0.25x
and 0.5x with a strongly non-uniform warp and with the authors' nuScenes
saliency, padded batches (nuScenes at 0.25x: 225 -> 256 rows), and a sample
flipped by ``RandomFlip3D`` after the zoom next to an unflipped one
(per-sample grids), with and without ``homography_matrix`` in the metainfo.
"""
import copy
import pickle

import numpy as np
import pytest
import torch
from mmengine.config import Config

from mmdet3d.registry import MODELS, TRANSFORMS
from mmdet3d.structures import CameraInstance3DBoxes
from tests.mmdet3d.utils import CONFIG_DIR
from tests.position_harness import (assert_geometry, build_pipeline, cell_positions, coordinate_samples,
                                    geometry_report, strong_saliency)

CAM2IMG = np.array([[1266.4, 0., 816.3], [0., 1266.4, 491.5], [0., 0., 1.]])  # nuScenes CAM_FRONT intrinsics


def _config(scale):
    return Config.fromfile(f'{CONFIG_DIR}/fcos3d_r50-caffe-dcn_fpn_head-gn_lzu-fixed_8xb2-1x_nus-mono3d-{scale}.py')


def _builder(cfg):
    def build(frame):
        model_cfg = copy.deepcopy(cfg.model)
        model_cfg.backbone = dict(type='CoordinateFeatures', out_strides=(8, 16, 32, 64, 128), frame=frame)
        model_cfg.neck = None
        model_cfg.data_preprocessor.update(mean=[0., 0., 0.], std=[1., 1., 1.])
        return MODELS.build(model_cfg).eval()

    return build


def _samples(cfg, saliency, flips, meta_keys_extra=('homography_matrix', )):
    run = build_pipeline(TRANSFORMS, cfg.test_pipeline, saliency,
                         dict(type='RandomFlip3D', flip_ratio_bev_horizontal=1.0), meta_keys_extra)
    shapes = ((900, 1600), (800, 1600))  # two sizes: a padded batch
    extra = dict(cam2img=CAM2IMG, gt_bboxes_3d=CameraInstance3DBoxes(torch.zeros(0, 9), box_dim=9))
    return [coordinate_samples(run, shape, cfg.img_scale, [flip], copy.deepcopy(extra))[0]
            for shape, flip in zip(shapes, flips)]


def _saliency_file(tmp_path, saliency):
    path = tmp_path / 'saliency.pkl'
    with open(path, 'wb') as f:
        pickle.dump(saliency, f)
    return str(path)


@pytest.mark.parametrize('scale', ['0.25x', '0.5x'])
@pytest.mark.parametrize('flips', [(None, None), ('horizontal', None)])
def test_every_level_holds_its_position(tmp_path, scale, flips):
    cfg = _config(scale)
    build = _builder(cfg)
    samples = _samples(cfg, _saliency_file(tmp_path, strong_saliency((27, 48))), flips)
    assert samples[0]['inputs']['img'].shape[-2] != samples[1]['inputs']['img'].shape[-2]  # padded batch
    if flips[0]:
        assert samples[0]['data_samples'].flip and 'homography_matrix' in samples[0]['data_samples']
    strides = build(False).bbox_head.strides
    assert_geometry(geometry_report(build, samples, strides))
    # FCOS3D's points are the conv-aligned cells plus s // 2
    head = build(False).bbox_head
    for s in strides:
        shape = (-(-240 // s), -(-400 // s))
        points = head._get_points_single(shape, s, torch.float64, 'cpu').view(*shape, 2).permute(2, 0, 1)
        assert torch.allclose(points - s // 2 + 0.5, cell_positions(shape, s, (225, 400))[0])


def test_official_saliency_and_flip_flags(official_nuscenes_saliency):
    """The authors' nuScenes warp; the flip decided by the flags alone (no homography_matrix in the metainfo)."""
    cfg = _config('0.25x')
    build = _builder(cfg)
    samples = _samples(cfg, official_nuscenes_saliency, ('horizontal', None), meta_keys_extra=())
    for sample in samples:  # the config packs it (RandomFlip3D records it): drop it, as a config without it would
        if 'homography_matrix' in sample['data_samples']:
            del sample['data_samples'].homography_matrix
    assert 'homography_matrix' not in samples[0]['data_samples']
    assert_geometry(geometry_report(build, samples, build(False).bbox_head.strides))


def test_model_zooms_the_full_resolution_source(tmp_path):
    """ResizeWithSource3D + a model-side warp: the detector zooms the 1600x900 source itself, flips included."""
    cfg = _config('0.25x')
    saliency = _saliency_file(tmp_path, strong_saliency((27, 48)))
    cfg.test_pipeline = [
        t
        if t['type'] != 'FixedSaliencyZoom3D' else dict(type='ResizeWithSource3D', scale=cfg.img_scale, keep_ratio=True)
        for t in cfg.test_pipeline
    ]
    cfg.model.lzu = dict(saliency=saliency, grid_shape=(27, 48), attraction_fwhm=10.)
    build = _builder(cfg)
    samples = _samples(cfg, saliency, ('horizontal', None))
    assert samples[0]['data_samples'].lzu_zoom['image'].shape == (900, 1600, 3)
    assert_geometry(geometry_report(build, samples, build(False).bbox_head.strides))
