"""LZU detectors on real images: equivalence with the base detector, unzoom geometry, checkpoints, other detectors."""
import copy
import functools
import os.path as osp

import mmdet
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from torch import nn

import lzu_mm.mmdet  # noqa: F401
from lzu_mm.ops import uniform_saliency
from mmdet.registry import DATASETS, MODELS

from .conftest import CONFIG_DIR, bump_saliency, save_pickled_saliency

GRID = (31, 51)
MMDET_CONFIGS = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs')
META = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip', 'flip_direction', 'sid', 'fid',
        'lzu_zoom')


@functools.lru_cache(maxsize=None)
def _model_of(path):
    return Config.fromfile(path).model  # resolving mmdet:: bases takes seconds: once per file


def model_cfg(kind='retinanet', **overrides):
    """The model of our LZU config (RetinaNet) or of mmdet's FCOS / Faster R-CNN configs, 8 classes, no weights.

    ResNet-18 and one head conv instead of four, to keep the tests fast on CPU (the LZU mechanism depends on
    neither).
    """
    if kind == 'retinanet':
        cfg = copy.deepcopy(_model_of(osp.join(CONFIG_DIR, 'retinanet_r50_fpn_lzu-fixed_3e_argoverse-hd-0.5x.py')))
        cfg.test_cfg.update(score_thr=0.0, nms_pre=200, max_per_img=30)
    elif kind == 'fcos':
        cfg = copy.deepcopy(_model_of(osp.join(MMDET_CONFIGS, 'fcos', 'fcos_r50-caffe_fpn_gn-head_1x_coco.py')))
        cfg.bbox_head.num_classes = 8
        cfg.test_cfg.update(score_thr=0.0, nms_pre=200, max_per_img=30)
    else:
        cfg = copy.deepcopy(_model_of(osp.join(MMDET_CONFIGS, 'faster_rcnn', 'faster-rcnn_r50_fpn_1x_coco.py')))
        cfg.roi_head.bbox_head.num_classes = 8
        cfg.test_cfg.rpn.update(nms_pre=200, max_per_img=50)
        cfg.test_cfg.rcnn.update(score_thr=0.0, max_per_img=30)
    cfg.backbone.update(depth=18, init_cfg=None)
    cfg.neck.in_channels = [64, 128, 256, 512]
    if 'bbox_head' in cfg:
        cfg.bbox_head.stacked_convs = 1
    cfg.update(overrides)
    if not cfg.type.startswith('LZU'):
        cfg.pop('lzu', None)
    return cfg


def build(cfg, seed=0):
    torch.manual_seed(seed)
    model = MODELS.build(cfg)
    model.init_weights()
    return model.eval()


def batch(argoverse_hd, resizes, model, training=False, indices=(0, 1)):
    """A padded batch of real Argoverse-HD-format samples, one resize transform per sample."""
    items = []
    for idx, resize in zip(indices, resizes):
        dataset = DATASETS.build(
            dict(type='ArgoverseHDDataset', data_root=argoverse_hd['root'], ann_file=argoverse_hd['val'],
                 data_prefix=dict(img=argoverse_hd['img_prefix']), test_mode=True, serialize_data=False, pipeline=[
                     dict(type='LoadImageFromFile'),
                     dict(type='LoadAnnotations', with_bbox=True), resize,
                     dict(type='PackDetInputs', meta_keys=META)
                 ]))
        items.append(dataset[idx])
    return model.data_preprocessor(pseudo_collate(items), training)


def strip_lzu(samples):
    out = copy.deepcopy(samples)
    for s in out:
        if 'lzu_zoom' in s:
            del s.lzu_zoom
    return out


def assert_same_predictions(a, b, atol=1e-4, ulps=0):
    """Same labels; scores and boxes within ``atol`` plus ``ulps`` float32 ulps of the box coordinate."""
    worst = 0.
    for pa, pb in zip(a, b):
        pa, pb = pa.pred_instances, pb.pred_instances
        assert len(pa) == len(pb) > 0
        torch.testing.assert_close(pa.scores, pb.scores, atol=atol, rtol=0)
        assert torch.equal(pa.labels, pb.labels)
        err = (pa.bboxes - pb.bboxes).abs()
        allowed = atol + ulps * torch.finfo(torch.float32).eps * pb.bboxes.abs()
        assert bool((err <= allowed).all()), f'max box difference {float(err.max())}'
        worst = max(worst, float(err.max()))
    return worst


def predict_both(lzu, plain, data, rescale):
    with torch.no_grad():
        out_lzu = lzu.predict(data['inputs'], copy.deepcopy(data['data_samples']), rescale=rescale)
        out_plain = plain.predict(data['inputs'], strip_lzu(data['data_samples']), rescale=rescale)
    return out_lzu, out_plain


@pytest.fixture(scope='module')
def uniform_file(tmp_path_factory):
    return save_pickled_saliency(uniform_saliency(GRID), tmp_path_factory.mktemp('sal') / 'uniform.pkl')


@pytest.fixture(scope='module')
def bump_file(tmp_path_factory):
    return save_pickled_saliency(bump_saliency(GRID), tmp_path_factory.mktemp('sal') / 'bump.pkl')


def zoom_cfg(path, scale):
    return dict(type='FixedSaliencyZoom', scale=scale, keep_ratio=True, saliency=path, grid_shape=GRID,
                attraction_fwhm=4.)


@pytest.mark.parametrize('kind', ['retinanet', 'fasterrcnn', 'fcos'])
def test_uniform_saliency_equals_base_detector(argoverse_hd, uniform_file, kind):
    """Pipeline-zoomed padded batch: LZU model == base model on the same tensor, boxes in original coordinates."""
    base_type = dict(retinanet='RetinaNet', fasterrcnn='FasterRCNN', fcos='FCOS')[kind]
    lzu = build(model_cfg(kind, type='LZU' + base_type))
    plain = build(model_cfg(kind, type=base_type), seed=1)
    plain.load_state_dict(lzu.state_dict(), strict=True)
    # two sizes -> the smaller image is padded in the batch: img_shape < batch_input_shape
    data = batch(argoverse_hd, [zoom_cfg(uniform_file, (288, 162)), zoom_cfg(uniform_file, (224, 126))], lzu)
    samples = data['data_samples']
    assert samples[1].img_shape[0] < samples[1].batch_input_shape[0]
    assert samples[1].img_shape[1] < samples[1].batch_input_shape[1]
    # the detector's own output frame (the network input, <= 288 px): |delta| <= 1e-4
    assert_same_predictions(*predict_both(lzu, plain, data, rescale=False))
    assert len(lzu._lzu_recorded) == 1  # the recorded warp was used for unzooming
    # original-image coordinates (up to 1600 px, where one float32 ulp is 1.2e-4): 1e-4 plus 2 ulps
    out_lzu, out_plain = predict_both(lzu, plain, data, rescale=True)
    assert_same_predictions(out_lzu, out_plain, ulps=2)
    # boxes are in original-image coordinates (1600 x 900), not in the 288 x 162 input
    assert max(float(p.pred_instances.bboxes[:, 2].max()) for p in out_lzu) > 288


def test_model_side_uniform_zoom_equals_base(argoverse_hd):
    """Model-side zoom (lzu=dict(...)) of a uniformly resized, padded batch: identical to RetinaNet."""
    lzu = build(model_cfg(type='LZURetinaNet', lzu=dict(saliency='uniform', grid_shape=GRID)))
    plain = build(model_cfg(type='RetinaNet'), seed=1)
    plain.load_state_dict(lzu.state_dict(), strict=True)
    resize = [dict(type='Resize', scale=(288, 162), keep_ratio=True), dict(type='Resize', scale=(224, 126),
                                                                           keep_ratio=True)]
    data = batch(argoverse_hd, resize, lzu)
    small = data['data_samples'][1]
    assert small.img_shape[0] < small.batch_input_shape[0] and small.img_shape[1] < small.batch_input_shape[1]
    assert_same_predictions(*predict_both(lzu, plain, data, rescale=False))
    out_lzu, out_plain = predict_both(lzu, plain, data, rescale=True)
    assert_same_predictions(out_lzu, out_plain, ulps=2)
    # a non-uniform model-side warp does change the predictions (the comparison above is not vacuous)
    bump = build(model_cfg(type='LZURetinaNet', lzu=dict(saliency=bump_saliency(GRID), grid_shape=GRID)))
    bump.load_state_dict(lzu.state_dict(), strict=True)
    with torch.no_grad():
        out_bump = bump.predict(data['inputs'], copy.deepcopy(data['data_samples']))
    assert not torch.allclose(out_bump[0].pred_instances.scores[:5], out_lzu[0].pred_instances.scores[:5])


class _ImagePyramid(nn.Module):
    """A "neck" that returns the (backbone = identity) image itself at strides 1 and 2."""

    def forward(self, x):
        return (x, nn.functional.avg_pool2d(x, 2))


def _extent(mask):
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=float)


def box_on_black(tmp_path):
    """``tmp_path/box.png``: a white box on a black 800x480 image, and a saliency bump on the box (``bump.pkl``).

    Returns ``(box, saliency_path)``, ``box`` ``x1, y1, x2, y2`` in pixels.
    """
    import mmcv
    h, w = 480, 800
    box = np.array([500., 100., 620., 200.])  # x1, y1, x2, y2 in the original image
    img = np.zeros((h, w, 3), np.uint8)
    img[int(box[1]):int(box[3]), int(box[0]):int(box[2])] = 255
    mmcv.imwrite(img, str(tmp_path / 'box.png'))
    centre = ((box[1] + box[3]) / 2 / (h - 1), (box[0] + box[2]) / 2 / (w - 1))
    return box, save_pickled_saliency(bump_saliency(GRID, centre=centre, sigma=0.05, floor=0.001),
                                      tmp_path / 'bump.pkl')


@pytest.mark.parametrize('flip', [False, True])
def test_non_uniform_warp_round_trip(tmp_path, flip):
    """A white box on black: magnified in the zoomed image, back at box * scale_factor after unzoom."""
    box, path = box_on_black(tmp_path)
    pipeline = Compose([
        dict(type='LoadImageFromFile'),
        zoom_cfg(path, (400, 240)),
        dict(type='RandomFlip', prob=1.0 if flip else 0.0),
        dict(type='PackDetInputs', meta_keys=META)
    ])
    packed = pipeline(dict(img_path=str(tmp_path / 'box.png'), img_id=0))
    sample = packed['data_samples']
    scale = np.array(sample.scale_factor * 2)
    expected = box * scale  # the box in the (un-warped) 400 x 240 frame
    if flip:
        expected = np.array([400 - expected[2], expected[1], 400 - expected[0], expected[3]])
    zoomed = packed['inputs'].float().mean(0).numpy() > 127
    # the zoom magnifies the salient box: what the backbone sees is not a uniform resize
    ze = _extent(zoomed)
    assert ze[2] - ze[0] > 1.3 * (expected[2] - expected[0])
    assert ze[3] - ze[1] > 1.3 * (expected[3] - expected[1])

    model = build(model_cfg(type='LZURetinaNet'))
    model.backbone, model.neck = nn.Identity(), _ImagePyramid()
    data = model.data_preprocessor(pseudo_collate([packed]), False)
    with torch.no_grad(), model.lzu_context(data['inputs'], data['data_samples']) as inputs:
        feats = model.extract_feat(inputs)
    ih, iw = sample.img_shape
    for level, stride in ((0, 1), (1, 2)):
        unzoomed = feats[level][0].mean(0).numpy()[:int(np.ceil(ih / stride)), :int(np.ceil(iw / stride))] > 0
        ue = _extent(unzoomed) * stride
        np.testing.assert_allclose(ue, expected, atol=1.5 * stride)
        # and back in original-image coordinates, as the detector's rescale does
        if not flip:
            np.testing.assert_allclose(ue / scale, box, atol=1.5 * stride / scale[0])


def test_base_checkpoint_loads_strict(tmp_path, bump_file):
    """A RetinaNet state_dict loads into LZURetinaNet (pipeline or model-side warp) with strict=True, same keys."""
    plain = build(model_cfg(type='RetinaNet'))
    state = plain.state_dict()
    for lzu in (None, dict(saliency=bump_file, grid_shape=GRID)):
        model = build(model_cfg(type='LZURetinaNet', lzu=lzu), seed=3)
        assert set(model.state_dict()) == set(state)
        model.load_state_dict(state, strict=True)
        for k, v in model.state_dict().items():
            assert torch.equal(v, state[k])


@pytest.mark.parametrize('kind', ['fasterrcnn', 'fcos'])
def test_other_detectors_train_and_predict(argoverse_hd, bump_file, kind):
    """LZUFasterRCNN / LZUFCOS with a non-uniform warp: finite losses, gradients reach the backbone, predictions."""
    model = build(model_cfg(kind, type=dict(fasterrcnn='LZUFasterRCNN', fcos='LZUFCOS')[kind])).train()
    data = batch(argoverse_hd, [zoom_cfg(bump_file, (288, 162)), zoom_cfg(bump_file, (224, 126))], model,
                 training=True, indices=(1, 2))
    losses = model.loss(data['inputs'], data['data_samples'])
    total, _ = model.parse_losses(losses)
    assert torch.isfinite(total) and float(total) > 0
    total.backward()  # through unzoom, back to the backbone run on the zoomed images
    grads = [p.grad for n, p in model.named_parameters() if n.startswith('backbone.layer4') and p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0
    model.eval()
    with torch.no_grad():
        preds = model.predict(data['inputs'], data['data_samples'])
    for p, s in zip(preds, data['data_samples']):
        assert len(p.pred_instances) > 0
        boxes = p.pred_instances.bboxes
        assert float(boxes[:, 2].max()) <= s.ori_shape[1] + 1e-3 and float(boxes[:, 3].max()) <= s.ori_shape[0] + 1e-3


@torch.no_grad()
def test_mixed_precision_unzoom(argoverse_hd, uniform_file, bump_file):
    """Under CPU bf16 autocast (as --amp), a uniform warp still leaves the detector unchanged, and a non-uniform
    warp unzooms bf16 features at the float32 positions (the landed code sampled at bf16 positions: up to 0.19
    cell off, 4.95 on N(0, 1) features even for a uniform warp)."""
    lzu = build(model_cfg('retinanet', type='LZURetinaNet'))
    plain = build(model_cfg('retinanet', type='RetinaNet'), seed=1)
    plain.load_state_dict(lzu.state_dict(), strict=True)
    data = batch(argoverse_hd, [zoom_cfg(uniform_file, (288, 162)), zoom_cfg(uniform_file, (224, 126))], lzu)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        feats = plain.extract_feat(data['inputs'])
        with lzu.lzu_context(data['inputs'], data['data_samples']) as inputs:
            unzoomed = lzu.extract_feat(inputs)
    for f, u in zip(feats, unzoomed):
        assert f.dtype == u.dtype == torch.bfloat16
        assert ((u.float() - f.float()).abs() <= 1e-2 * f.float().abs() + 1e-3).all()
    data = batch(argoverse_hd, [zoom_cfg(bump_file, (288, 162)), zoom_cfg(bump_file, (224, 126))], lzu)
    with lzu.lzu_context(data['inputs'], data['data_samples']) as inputs:
        full = lzu.extract_feat(inputs)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            half = lzu.extract_feat(inputs)
    for f, h in zip(full, half):  # bf16 network noise only: no misplaced rows or columns
        assert (h.float() - f).abs().mean() <= 0.02 * f.abs().mean()
