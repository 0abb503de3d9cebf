"""LZUFCOSMono3D / LZUSMOKEMono3D on the real nuScenes sample (CPU, random weights)."""
import copy

import numpy as np
import pytest
import torch

pytest.importorskip('mmdet3d')

from tests.mmdet3d.utils import (LOAD_ANNOTATIONS, LZU_025, TRAIN_KEYS, fcos3d_model_cfg,  # noqa: E402
                                 nuscenes_mono3d_dataset, zoom_cfg)

LOAD = dict(type='LoadImageFromFileMono3D', backend_args=None)
LZU_META_KEYS = ('img_path', 'ori_shape', 'img_shape', 'cam2img', 'pad_shape', 'scale_factor', 'flip',
                 'flip_direction', 'box_mode_3d', 'box_type_3d', 'sample_idx', 'lzu_zoom')
# enough low-score boxes from random weights to compare, few enough to stay fast
DENSE_TEST_CFG = dict(score_thr=0., nms_pre=200, max_per_img=50)


def _build(cfg):
    from mmengine.registry import init_default_scope

    import lzu_mm.mmdet3d  # noqa: F401  (registers the LZU detectors)
    from mmdet3d.registry import MODELS
    init_default_scope('mmdet3d')
    torch.manual_seed(0)
    return MODELS.build(cfg)


def _batch(model, dataset, indices, training=False):
    from mmengine.dataset import pseudo_collate
    return model.data_preprocessor(pseudo_collate([dataset[i] for i in indices]), training)


def _strip_lzu(samples):
    """The same (test) data samples without the LZ record: what a plain detector sees."""
    return [type(s)(metainfo={k: v for k, v in s.metainfo.items() if k != 'lzu_zoom'}) for s in samples]


def _uniform_saliency_file(tmp_path) -> str:
    path = str(tmp_path / 'uniform_27x48.npy')
    np.save(path, np.full((1, 1, 27, 48), 1. / (27 * 48), np.float32))
    return path


@pytest.fixture(scope='module')
def fcos3d_state():
    """One random FCOS3D R50-DCN state dict shared by the model tests."""
    cfg = fcos3d_model_cfg(**DENSE_TEST_CFG)
    cfg.type = 'FCOSMono3D'
    return _build(cfg).state_dict()


def _assert_same_predictions(a, b, atol=1e-4, rtol=0.):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        p, q = x.pred_instances_3d, y.pred_instances_3d
        assert len(p.scores_3d) > 0
        torch.testing.assert_close(p.bboxes_3d.tensor, q.bboxes_3d.tensor, atol=atol, rtol=rtol)
        torch.testing.assert_close(p.scores_3d, q.scores_3d, atol=atol, rtol=rtol)
        assert torch.equal(p.labels_3d, q.labels_3d)
        if 'attr_labels' in p:
            assert torch.equal(p.attr_labels, q.attr_labels)
        if 'bboxes' in x.pred_instances:
            torch.testing.assert_close(x.pred_instances.bboxes, y.pred_instances.bboxes, atol=atol, rtol=rtol)


def test_uniform_saliency_equals_plain_fcos3d(nuscenes_root, tmp_path, fcos3d_state):
    """With a uniform saliency, LZU == FCOSMono3D on the same zoomed tensor with the same scaled intrinsics."""
    dataset = nuscenes_mono3d_dataset(
        nuscenes_root, [LOAD, zoom_cfg(_uniform_saliency_file(tmp_path)),
                        dict(type='Pack3DDetInputs', keys=['img'], meta_keys=LZU_META_KEYS)], test_mode=True)
    lzu_cfg = fcos3d_model_cfg(LZU_025, **DENSE_TEST_CFG)
    plain_cfg = copy.deepcopy(lzu_cfg)
    plain_cfg.type = 'FCOSMono3D'
    plain_cfg.pop('lzu')
    lzu, plain = _build(lzu_cfg).eval(), _build(plain_cfg).eval()
    lzu.load_state_dict(fcos3d_state, strict=True)
    plain.load_state_dict(fcos3d_state, strict=True)
    data = _batch(lzu, dataset, [0, 1])
    assert all('lzu_zoom' in s.metainfo for s in data['data_samples'])
    assert data['data_samples'][0].cam2img[0][0] == pytest.approx(1266.417203046554 * 0.25)
    with torch.no_grad():
        # LZU's default predict (rescale=True) decodes the 3D boxes with the resized image's intrinsics, i.e. as
        # FCOSMono3D with rescale=False (FCOSMono3D's own rescale=True back-projects with mismatched intrinsics)
        got = lzu.predict(data['inputs'], copy.deepcopy(data['data_samples']))
        want = plain.predict(data['inputs'], _strip_lzu(data['data_samples']), rescale=False)
    _assert_same_predictions(got, want)


def test_fcos3d_checkpoint_loads_strict(fcos3d_state, official_nuscenes_saliency):
    cfg = fcos3d_model_cfg(LZU_025, **DENSE_TEST_CFG)
    cfg.lzu = dict(saliency=official_nuscenes_saliency, grid_shape=(27, 48), attraction_fwhm=10.)
    model = _build(cfg)
    assert model.load_state_dict(fcos3d_state, strict=True).missing_keys == []
    assert set(model.state_dict()) == set(fcos3d_state)


def test_lzu_fcos3d_trains_with_official_saliency_and_flip(nuscenes_root, official_nuscenes_saliency, fcos3d_state):
    """Real zoomed + flipped samples: finite losses, gradients through the unzoom into the backbone, and the
    flipped samples' cells at their mirrored positions."""
    dataset = nuscenes_mono3d_dataset(nuscenes_root, [
        LOAD, LOAD_ANNOTATIONS, zoom_cfg(official_nuscenes_saliency),
        dict(type='RandomFlip3D', flip_ratio_bev_horizontal=1.0),
        dict(type='Pack3DDetInputs', keys=TRAIN_KEYS, meta_keys=LZU_META_KEYS)])
    model = _build(fcos3d_model_cfg(LZU_025, **DENSE_TEST_CFG))
    model.load_state_dict(fcos3d_state, strict=True)
    model.train()
    data = _batch(model, dataset, [0, 1], training=True)
    losses = model.loss(data['inputs'], data['data_samples'])
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    grad = model.backbone.layer2[0].conv1.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    # the flip's geometry on these real flipped samples: with features that hold their own (zoomed, flipped) pixel
    # positions, every unzoomed cell of P3-P7 reads the exact inverse of the recorded warp at its own position,
    # mirrored (position-encoding harness, frame mode), and would not without the mirroring
    from tests.position_harness import TOLERANCES, position_errors, unzoomed_levels
    cfg = fcos3d_model_cfg(LZU_025, **DENSE_TEST_CFG)
    cfg.update(backbone=dict(type='CoordinateFeatures', frame=True), neck=None)
    cfg.data_preprocessor.update(mean=[0., 0., 0.], std=[1., 1., 1.])
    coords = _build(cfg).eval()
    samples = [dataset[i] for i in (0, 1)]
    assert all(s['data_samples'].flip and s['data_samples'].flip_direction == 'horizontal' for s in samples)
    feats, metas = unzoomed_levels(coords, samples)
    grids = [m['lzu_zoom']['grid'] for m in metas]
    assert max(position_errors(feats, coords.bbox_head.strides, metas, grids)) <= TOLERANCES['frame']
    for sample in samples:  # hide the flip from the model: it does not mirror the grid, and misses
        sample['data_samples'].set_metainfo(dict(flip=False, homography_matrix=None))
    feats, _ = unzoomed_levels(coords, samples)
    # the authors' saliency is almost left-right symmetric: 0.012 cell, still 10x the bound
    assert max(position_errors(feats, coords.bbox_head.strides, metas, grids)) > 10 * TOLERANCES['frame']
    # a flipped sample without flip_direction cannot be unzoomed correctly: clear error
    bad = copy.deepcopy(data['data_samples'])
    for sample in bad:
        del sample.flip_direction
    with pytest.raises(ValueError, match='flip_direction'):
        model.loss(data['inputs'], bad)


def test_lzu_needs_a_zoom(nuscenes_root, tmp_path):
    """No lzu_zoom record and no model-side warp -> clear error naming the meta_keys."""
    dataset = nuscenes_mono3d_dataset(
        nuscenes_root, [LOAD, dict(type='Resize3D', scale=(400, 225), keep_ratio=True),
                        dict(type='Pack3DDetInputs', keys=['img'])], test_mode=True)
    model = _build(fcos3d_model_cfg(LZU_025, **DENSE_TEST_CFG)).eval()
    data = _batch(model, dataset, [0])
    with pytest.raises(ValueError, match='lzu_zoom'):
        model.predict(data['inputs'], data['data_samples'])


def _smoke_cfg(**lzu):
    from mmengine.hub import get_config
    cfg = get_config('mmdet3d::_base_/models/smoke.py').model
    cfg.backbone.init_cfg = None
    cfg.bbox_head.num_classes = 10  # nuScenes, with the nuScenes class mean sizes of MMDetection3D's PGD config
    pgd = get_config('mmdet3d::pgd/pgd_r101-caffe_fpn_head-gn_16xb2-1x_nus-mono3d.py')
    cfg.bbox_head.bbox_coder.base_dims = pgd.model.bbox_head.bbox_coder.base_dims
    if lzu:
        cfg.type = 'LZUSMOKEMono3D'
        cfg.lzu = lzu
    return cfg


def _smoke_dataset(root, test_mode):
    # SMOKE's own pipeline: AffineResize (img_scale / down_ratio as SMOKE's KITTI config, smaller); no attributes
    keys = [k for k in TRAIN_KEYS if k != 'attr_labels']
    pipeline = [LOAD] + ([] if test_mode else [dict(LOAD_ANNOTATIONS, with_attr_label=False)]) + [
        dict(type='AffineResize', img_scale=(256, 160), down_ratio=4),
        dict(type='Pack3DDetInputs', keys=['img'] if test_mode else keys)]
    return nuscenes_mono3d_dataset(root, pipeline, test_mode=test_mode)


def test_second_detector_smoke(nuscenes_root, official_nuscenes_saliency):
    """SMOKE (another SingleStageMono3DDetector) with the same mixin: uniform == plain, official saliency trains."""
    plain = _build(_smoke_cfg()).eval()
    uniform = _build(_smoke_cfg(saliency='uniform', grid_shape=(27, 48))).eval()
    uniform.load_state_dict(plain.state_dict(), strict=True)
    data = _batch(plain, _smoke_dataset(nuscenes_root, test_mode=True), [0])
    with torch.no_grad():
        want = plain.predict(data['inputs'], copy.deepcopy(data['data_samples']), rescale=False)
        got = uniform.predict(data['inputs'], copy.deepcopy(data['data_samples']), rescale=False)
    # the model-side uniform zoom resamples at float32 positions: depths (~30 m) agree to 1e-5 relative
    _assert_same_predictions(got, want, rtol=1e-4)

    lzu = _build(_smoke_cfg(saliency=official_nuscenes_saliency, grid_shape=(27, 48), attraction_fwhm=10.))
    lzu.load_state_dict(plain.state_dict(), strict=True)
    lzu.train()
    train = _batch(lzu, _smoke_dataset(nuscenes_root, test_mode=False), [0], training=True)
    losses = lzu.loss(train['inputs'], train['data_samples'])
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    assert lzu.backbone.base_layer[0].weight.grad.abs().sum() > 0
