"""The stock PGD config made LZU (FCOS3D and SMOKE: tests/mmdet3d/test_detectors.py), on the real nuScenes sample.

PGD (``mmdet3d::pgd/pgd_r101-caffe_fpn_head-gn_4xb3-4x_kitti-mono3d.py``) is
an ``FCOSMono3D`` with a ``PGDHead`` on P2-P5 (strides 4-32, depth-guided
geometric refinement that projects boxes with ``cam2img``), so it becomes
LZU as ``LZUFCOSMono3D``. KITTI has no sample here: the dataset part is
adapted to the nuScenes sample (10 classes, the nuScenes class mean sizes and
depths of MMDetection3D's own nuScenes PGD config, no attributes, 200x113
images, boxes without velocity), the head keeps its KITTI 7-dim box code. For CPU the backbone is a
ResNet-50 and the FPN and head are 64 channels wide, with random weights.
"""
import copy

import numpy as np
import pytest
import torch

pytest.importorskip('mmdet3d')

from mmengine.config import ConfigDict  # noqa: E402
from mmengine.hub import get_config  # noqa: E402
from mmengine.optim import OptimWrapper  # noqa: E402

from lzu_mm.common.convert import convert_pipeline  # noqa: E402
from tests.mmdet3d.test_detectors import DENSE_TEST_CFG, _assert_same_predictions, _batch, _build  # noqa: E402
from tests.mmdet3d.utils import nuscenes_mono3d_dataset  # noqa: E402

STOCK_PGD = 'mmdet3d::pgd/pgd_r101-caffe_fpn_head-gn_4xb3-4x_kitti-mono3d.py'
GRID = (27, 48)


def to_lzu(cfg, saliency: str, grid_shape=GRID):
    """LZU config of a stock MMDetection3D mono3d config, with the config converter's pipeline conversion.

    ``model = dict(type='LZU', base='FCOSMono3D', ...)`` (the generic LZU
    model, :mod:`lzu_mm.common.factory`); every pipeline's last resize
    (``mmdet.Resize`` here) -> ``FixedSaliencyZoom3D`` with the same arguments
    (which, unlike ``mmdet.Resize``, also scales ``cam2img``); the LZ record,
    flip state and homography in ``Pack3DDetInputs.meta_keys``
    (:func:`lzu_mm.common.convert.convert_pipeline`, what
    ``tools/misc/lzu_config.py`` writes for a config file).
    """
    cfg = copy.deepcopy(cfg)
    assert cfg.model.type == 'FCOSMono3D', cfg.model.type
    cfg.model = ConfigDict(type='LZU', base=cfg.model.pop('type'), **cfg.model)
    zoom = dict(saliency=saliency, grid_shape=grid_shape, attraction_fwhm=10.)
    for key in ('train_pipeline', 'test_pipeline'):
        cfg[key] = convert_pipeline(cfg[key], 'mmdet3d', zoom, key)
    return cfg


def pgd_on_nuscenes():
    """The stock KITTI PGD config with its dataset part adapted to the nuScenes sample (see the module docstring)."""
    cfg = get_config(STOCK_PGD)
    nus = get_config('mmdet3d::pgd/pgd_r101-caffe_fpn_head-gn_16xb2-1x_nus-mono3d.py').model.bbox_head
    cfg.model.backbone.update(depth=50, init_cfg=None)
    cfg.model.neck.out_channels = 64  # CPU budget: a narrower FPN and head (the stock ones are 256 wide)
    head = cfg.model.bbox_head
    head.update(in_channels=64, feat_channels=64, cls_branch=(64, ), reg_branch=((64, ), ) * 6, dir_branch=(64, ),
                attr_branch=(64, ), depth_branch=(64, ), centerness_branch=(64, ))
    head.num_classes = 10
    head.bbox_coder.base_dims = nus.bbox_coder.base_dims
    head.bbox_coder.base_depths = nus.bbox_coder.base_depths
    cfg.model.test_cfg.update(DENSE_TEST_CFG)
    for t in cfg.train_pipeline:
        if t['type'] == 'mmdet.Resize':
            t['scale'] = (200, 113)  # nuScenes 1600x900 at 0.125x (CPU budget)
    for t in cfg.test_pipeline:
        if t['type'] == 'mmdet.Resize':
            t['scale_factor'] = 0.125
    return cfg


def _uniform_saliency_file(tmp_path) -> str:
    path = str(tmp_path / 'uniform_27x48.npy')
    np.save(path, np.full((1, 1, *GRID), 1. / (GRID[0] * GRID[1]), np.float32))
    return path


def _strip_lzu(samples):
    return [type(s)(metainfo={k: v for k, v in s.metainfo.items() if k != 'lzu_zoom'}) for s in samples]


def test_pgd_made_lzu(nuscenes_root, official_nuscenes_saliency, tmp_path):
    cfg = pgd_on_nuscenes()
    base = _build(cfg.model).eval()
    state = base.state_dict()

    # uniform saliency: the same predictions as FCOSMono3D + PGDHead on the same zoomed batch
    uniform = to_lzu(cfg, _uniform_saliency_file(tmp_path))
    lzu = _build(uniform.model).eval()
    lzu.load_state_dict(state, strict=True)  # a PGD checkpoint loads strictly
    dataset = nuscenes_mono3d_dataset(nuscenes_root, uniform.test_pipeline, test_mode=True)
    data = _batch(lzu, dataset, [0, 1])
    assert data['inputs']['imgs'].shape[-2:] == (128, 224)  # 113x200, padded to 32
    assert data['data_samples'][0].cam2img[0][0] == pytest.approx(1266.417203046554 * 0.125)
    with torch.no_grad():
        got = lzu.predict(data['inputs'], copy.deepcopy(data['data_samples']), rescale=False)
        want = base.predict(data['inputs'], _strip_lzu(data['data_samples']), rescale=False)
        rescaled = lzu.predict(data['inputs'], copy.deepcopy(data['data_samples']))
    _assert_same_predictions(got, want)
    # PGD also predicts 2D boxes: with rescale=True they are in original-image pixels (1600x900), 3D boxes unchanged
    assert len(want[0].pred_instances.bboxes) > 0
    sx, sy = data['data_samples'][0].scale_factor[:2]  # 200 / 1600, 113 / 900
    torch.testing.assert_close(rescaled[0].pred_instances.bboxes,
                               got[0].pred_instances.bboxes / torch.tensor([sx, sy, sx, sy]))
    torch.testing.assert_close(rescaled[0].pred_instances_3d.bboxes_3d.tensor,
                               got[0].pred_instances_3d.bboxes_3d.tensor)

    # the authors' nuScenes saliency: one training iteration (zoom, flip) and inference on the real images
    lzu_cfg = to_lzu(cfg, official_nuscenes_saliency)
    train_pipeline = [dict(t, with_attr_label=False) if t['type'] == 'LoadAnnotations3D' else t
                      for t in lzu_cfg.train_pipeline]
    train_set = nuscenes_mono3d_dataset(nuscenes_root, train_pipeline, with_velocity=False)  # KITTI's 7-dim boxes
    model = _build(lzu_cfg.model).train()
    model.load_state_dict(state, strict=True)
    before = {k: v.clone() for k, v in model.state_dict().items() if v.dtype.is_floating_point}
    from mmengine.dataset import pseudo_collate
    losses = model.train_step(pseudo_collate([train_set[0]]),
                              OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-3)))
    assert {'loss_cls', 'loss_depth'} <= set(losses) and all(torch.isfinite(v) for v in losses.values())
    changed = [k for k, v in model.state_dict().items() if k in before and not torch.equal(v, before[k])]
    assert any(k.startswith('backbone.') for k in changed) and any(k.startswith('bbox_head.') for k in changed)

    model = _build(lzu_cfg.model).eval()
    model.load_state_dict(state, strict=True)
    data = _batch(model, nuscenes_mono3d_dataset(nuscenes_root, lzu_cfg.test_pipeline, test_mode=True), [0])
    with torch.no_grad():
        pred = model.predict(data['inputs'], copy.deepcopy(data['data_samples']))[0].pred_instances_3d
        naive = base.predict(data['inputs'], _strip_lzu(data['data_samples']), rescale=False)[0].pred_instances_3d
    assert len(pred.scores_3d) > 0 and torch.isfinite(pred.bboxes_3d.tensor).all()
    # not the plain detector on the zoomed image
    assert not torch.allclose(pred.scores_3d, naive.scores_3d, atol=1e-3)


def test_pgd_geometry(tmp_path):
    """PGD's levels P2-P5 (strides 4-32) hold their positions after unzoom (position harness), a sample flipped by
    RandomFlip3D after the zoom next to an unflipped one."""
    from mmengine.registry import init_default_scope

    import lzu_mm.mmdet3d  # noqa: F401  (registers the LZU transforms and detectors)
    from mmdet3d.registry import MODELS, TRANSFORMS
    from mmdet3d.structures import CameraInstance3DBoxes
    from tests.mmdet3d.test_geometry import CAM2IMG, _saliency_file
    from tests.position_harness import (assert_geometry, build_pipeline, coordinate_samples, geometry_report,
                                        strong_saliency)
    init_default_scope('mmdet3d')
    cfg = to_lzu(pgd_on_nuscenes(), _saliency_file(tmp_path, strong_saliency(GRID)))
    strides = cfg.model.bbox_head.strides
    assert tuple(strides) == (4, 8, 16, 32)

    def build_model(frame):
        model_cfg = copy.deepcopy(cfg.model)
        model_cfg.backbone = dict(type='CoordinateFeatures', out_strides=strides, frame=frame)
        model_cfg.neck = None
        model_cfg.data_preprocessor.update(mean=[0., 0., 0.], std=[1., 1., 1.])
        return MODELS.build(model_cfg).eval()

    run = build_pipeline(TRANSFORMS, cfg.test_pipeline, cfg.test_pipeline[1]['saliency'],
                         dict(type='RandomFlip3D', flip_ratio_bev_horizontal=1.0), ('homography_matrix', ))
    extra = dict(cam2img=CAM2IMG, gt_bboxes_3d=CameraInstance3DBoxes(torch.zeros(0, 7)))
    samples = [coordinate_samples(run, (900, 1600), (200, 113), [flip], copy.deepcopy(extra))[0]
               for flip in ('horizontal', None)]
    assert samples[0]['data_samples'].flip and samples[0]['inputs']['img'].shape[-2:] == (113, 200)
    assert_geometry(geometry_report(build_model, samples, strides))
