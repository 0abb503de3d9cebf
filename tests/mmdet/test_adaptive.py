"""LZUAdaptiveRetinaNet in process: geometry of the per-image warps, the training phases, LKDE, online frames.

Tiny models (ResNet-18, one head convolution, ~200-pixel inputs) on synthetic or coordinate images; the real
images, tools and processes are in test_adaptive_e2e.py.
"""
import copy
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.optim import build_optim_wrapper

from lzu_mm.common.adaptive import AdaptiveSaliencyMixin, _waves, original_to_input
from lzu_mm.ops import bbox_kde_saliency
from mmdet.registry import MODELS, TRANSFORMS
from mmdet.structures.bbox import HorizontalBoxes
from tests.position_harness import (TOLERANCES, coordinate_image, position_errors, unzoomed_levels)

from .conftest import CONFIG_DIR, save_pickled_saliency

CONFIG = 'retinanet_r50_fpn_lzu-adaptive_3e_argoverse-hd-0.5x.py'
SRC = (900, 1600)  # source (original) image (H, W)
SCALE = (192, 120)  # network input (w, h): 192 x 108 for a 1600 x 900 image
META = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip', 'flip_direction', 'sid', 'fid',
        'lzu_zoom', 'homography_matrix')
BOXES = torch.tensor([[100., 120., 420., 380.], [1100., 500., 1300., 880.]])  # source pixels


def _cfg(name=CONFIG):
    return Config.fromfile(osp.join(CONFIG_DIR, name))


def tiny(cfg, **adaptive):
    """The config's model with a ResNet-18, one head conv, no pretrained weights, and ``adaptive`` overrides."""
    m = copy.deepcopy(cfg.model)
    m.backbone.update(depth=18, init_cfg=None)
    m.neck.in_channels = [64, 128, 256, 512]
    m.bbox_head.update(stacked_convs=1, feat_channels=32)
    m.test_cfg.update(score_thr=0.0, max_per_img=10)
    m.adaptive.update(adaptive)
    torch.manual_seed(0)
    model = MODELS.build(m)
    model.init_weights()
    return model


def sample(fid=0, sid=0, flip=None, boxes=BOXES, image=None, scale=SCALE):
    """A packed sample through ResizeWithSource (+ a flip), with GT boxes in source pixels."""
    rng = np.random.default_rng(fid)
    img = rng.integers(0, 256, (*SRC, 3), dtype=np.uint8) if image is None else image
    results = dict(img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2], img_id=100 * sid + fid, sid=sid,
                   fid=fid, img_path=f'seq{sid}_{fid}.jpg', gt_bboxes=HorizontalBoxes(boxes.clone()),
                   gt_bboxes_labels=np.zeros(len(boxes), np.int64), gt_ignore_flags=np.zeros(len(boxes), bool))
    steps = [dict(type='ResizeWithSource', scale=scale, keep_ratio=True)]
    if flip is not None:
        steps.append(dict(type='RandomFlip', prob=1., direction=flip))
    steps.append(dict(type='PackDetInputs', meta_keys=META))
    for step in steps:
        results = TRANSFORMS.build(step)(results)
    return results


def batch(model, samples, training=False):
    return model.data_preprocessor(pseudo_collate(samples), training)


def mirror(boxes, direction, size=SRC):
    out = boxes.clone()
    if direction in ('horizontal', 'diagonal'):
        out[:, [0, 2]] = size[1] - boxes[:, [2, 0]]
    if direction in ('vertical', 'diagonal'):
        out[:, [1, 3]] = size[0] - boxes[:, [3, 1]]
    return out


@pytest.mark.parametrize('flips', [(None, None), ('horizontal', 'vertical')])
def test_per_image_warps_hold_every_anchor_position(flips):
    """Position-encoding harness, per-image adaptive grids of two different box sets on the full-resolution
    coordinate images, flips after the resize: frame mode exact at every cell (< 1e-3 cell), content mode < 0.15."""
    cfg = _cfg()
    strides = (8, 16, 32, 64, 128)
    samples = [sample(image=coordinate_image(SRC, (108, 192)), flip=f, scale=(192, 120)) for f in flips]
    box_sets = [BOXES.double(), torch.tensor([[700., 50., 900., 400.]], dtype=torch.float64)]
    report = {}
    for frame in (False, True):
        model_cfg = copy.deepcopy(cfg.model)
        model_cfg.backbone = dict(type='CoordinateFeatures', out_strides=strides, frame=frame)
        model_cfg.neck = None
        model_cfg.data_preprocessor.update(mean=[0., 0., 0.], std=[1., 1., 1.])
        model = MODELS.build(model_cfg).eval()
        with model.lzu_saliency_boxes(box_sets):
            feats, metas = unzoomed_levels(model, copy.deepcopy(samples))
        grids = [m['lzu_zoom']['grid'] for m in metas] if frame else None
        report['frame' if frame else 'content'] = position_errors(feats, strides, metas, grids, border=0 if frame
                                                                  else 1)
        if frame:  # the two images got different, strongly non-uniform grids
            assert np.abs(grids[0] - grids[1]).max() > 0.05
            assert np.abs(grids[0][0, :, 0] - np.linspace(-1, 1, 51)).max() > 0.05
    assert all(max(v) <= TOLERANCES[k] for k, v in report.items()), report


@pytest.mark.parametrize('flip', [None, 'horizontal'])
def test_training_saliency_is_the_jittered_ground_truth_in_source_pixels(flip):
    """Ground-truth phase: the saliency is FOVEA's KDE of the GT boxes in source pixels (flipped with the image);
    jitter_std=0 reproduces it exactly, jitter moves it."""
    cfg = _cfg()
    model = tiny(cfg, jitter_std=0.)
    data = batch(model, [sample(flip=flip), sample(fid=1, boxes=torch.zeros(0, 4))], training=True)
    losses = model.loss(**data)
    assert all(torch.isfinite(torch.as_tensor([float(sum(v) if isinstance(v, list) else v) for v in losses.values()])))
    gt_source = mirror(BOXES, flip)
    # the GT went through the uniform resize and back: equal to float32 rounding
    expected = bbox_kde_saliency([gt_source, None], SRC, (31, 51), dtype=torch.float64)
    torch.testing.assert_close(model._lzu_last_saliency, expected, rtol=1e-5, atol=0)
    jittered = tiny(cfg, jitter_std=100.)
    jittered.loss(**batch(jittered, [sample(flip=flip)], training=True))
    assert float((jittered._lzu_last_saliency[0] - expected[0]).abs().max()) > 1e-2 * float(expected.max())


def test_jitter_is_unbiased():
    """The centre shift has mean 0 and the configured spread (FOVEA's 2 j (randn - 0.5) has mean -j)."""
    model = tiny(_cfg(), jitter_std=50.)
    torch.manual_seed(1)
    boxes = torch.tensor([[100., 100., 140., 180.]], dtype=torch.float64).repeat(20000, 1)
    shift = model._jitter(boxes) - boxes
    torch.testing.assert_close(shift[:, :2], shift[:, 2:])  # sizes kept
    mean, std = shift[:, :2].mean(0), shift[:, :2].std(0)
    assert float(mean.abs().max()) < 4 * 50 / 20000**0.5  # 1.4 px; FOVEA's bias would be 25 px for j = 25
    assert float((std - 50).abs().max()) < 1.5


def test_cascade_uses_own_detections_without_gradient():
    """Cascade phase: the saliency comes from the model's own detections of the same images (zoomed with the
    fallback, eval mode, no gradient); the batch keeps its source images and the model its training mode."""
    cfg = _cfg()
    model = tiny(cfg, jitter_std=0.)
    model.set_saliency_phase('cascade')
    samples = [sample(), sample(fid=1, flip='horizontal')]
    data = batch(model, samples, training=True)
    own = model._own_detections(data['inputs'], data['data_samples'])
    assert model.training and all('image' in s.lzu_zoom for s in data['data_samples'])
    assert all(len(b) == 10 for b in own) and not any(b.requires_grad for b in own)
    model.loss(**data)
    to_source = [b.double() * b.new_tensor([SRC[1] / 192, SRC[0] / 108] * 2).double() for b in own]
    expected = bbox_kde_saliency(to_source, SRC, (31, 51), dtype=torch.float64)
    torch.testing.assert_close(model._lzu_last_saliency, expected, rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match='saliency phase'):
        model.set_saliency_phase('detections')


def test_lkde_parameters_get_gradients_and_their_own_optimiser_settings():
    """LKDE: FOVEA's form |1 + p| * init + 0.1; one step of the config's optimiser (paramwise custom_keys: lr x 0.005,
    no weight decay) gives finite, non-zero gradients through grid, zoom, inversion and unzoom, and moves them."""
    cfg = _cfg('retinanet_r50_fpn_lzu-adaptive-lkde_3e_argoverse-hd-0.5x.py')
    model = tiny(cfg, jitter_std=0.)
    saliency = model.lzu_saliency
    assert saliency.learned and [float(v) for v in saliency.scales()] == pytest.approx([64.1, 1.1])
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    groups = {id(p): g for g in wrapper.optimizer.param_groups for p in g['params']}
    for p in (saliency.bandwidth, saliency.amplitude):
        assert groups[id(p)]['lr'] == pytest.approx(0.01 * 0.005) and groups[id(p)]['weight_decay'] == 0
    assert groups[id(model.neck.lateral_convs[0].conv.weight)]["lr"] == pytest.approx(0.01)
    before = [p.detach().clone() for p in (saliency.bandwidth, saliency.amplitude)]
    data = batch(model, [sample(), sample(fid=1, flip='horizontal')], training=True)
    loss, _ = model.parse_losses(model(**data, mode='loss'))  # what train_step does, gradients inspected
    wrapper.backward(loss)
    for p in (saliency.bandwidth, saliency.amplitude):
        assert p.grad is not None and torch.isfinite(p.grad).all() and float(p.grad.abs()) > 0
    wrapper.step()
    for p, old in zip((saliency.bandwidth, saliency.amplitude), before):
        assert not torch.equal(p.detach(), old)


def test_composite_and_fixed_fallback(tmp_path):
    """KDE SC: alpha * KDE + (1 - alpha) * fixed; alpha = 0 is the fixed saliency; fallback='fixed' on empty frames."""
    cfg = _cfg('retinanet_r50_fpn_lzu-adaptive-kde-sc_3e_argoverse-hd-0.5x.py')
    fixed = torch.rand(1, 1, 31, 51, dtype=torch.float64) + 0.2
    cfg.model.lzu.saliency = save_pickled_saliency(fixed.float(), tmp_path / 'fixed.pkl')
    boxes = [BOXES.double(), None]
    fixed = fixed.float().double() / fixed.float().double().sum()
    uniform = torch.full((1, 1, 31, 51), 1 / (31 * 51), dtype=torch.float64)
    for alpha, fallback in ((0.5, 'uniform'), (0., 'uniform'), (1., 'fixed')):
        saliency = tiny(cfg, alpha=alpha, fallback=fallback).lzu_saliency(boxes, SRC)
        kde = bbox_kde_saliency(boxes, SRC, (31, 51), fallback=fixed if fallback == 'fixed' else None,
                                dtype=torch.float64)
        torch.testing.assert_close(saliency, alpha * kde + (1 - alpha) * fixed, rtol=1e-6, atol=0)
        if alpha == 0:
            torch.testing.assert_close(saliency, fixed.expand(2, -1, -1, -1), rtol=1e-6, atol=0)
        if alpha == 0.5:  # FOVEA: an empty frame is half uniform, half fixed
            torch.testing.assert_close(saliency[1:], 0.5 * uniform + 0.5 * fixed, rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match='fixed saliency'):
        tiny(_cfg(), alpha=0.5)
    with pytest.raises(ValueError, match='unknown keys'):
        tiny(_cfg(), jitter=5.)


def test_online_frames_use_the_previous_detections_and_survive_bad_ones():
    """Two sequences, frames out of order within one batch: waves in frame order; frame t is zoomed with the
    saliency of frame t-1's kept detections (mapped into its flipped source pixels); NaN / Inf / empty detections
    never raise mid-sequence nor give a NaN warp."""
    cfg = _cfg()
    model = tiny(cfg, record_saliency=True).eval()
    assert _waves([(0, 1), (1, 0), (0, 0), (1, 1)]) == [[1, 2], [0, 3]]
    with torch.no_grad():
        out = model.predict(**batch(model, [sample(fid=1), sample(sid=1), sample(fid=0)]))
    assert [o.lzu_saliency['source'] for o in out] == ['previous_frame', 'fallback', 'fallback']
    assert out[0].lzu_saliency['prev_img_id'] == 0 and out[0].lzu_saliency['prev_fid'] == 0
    np.testing.assert_array_equal(out[0].lzu_saliency['bboxes'], out[2].pred_instances.bboxes.numpy())
    # frame 2, flipped at test time: the previous (unflipped, original-pixel) boxes are mirrored into its source
    prev = out[0].pred_instances.bboxes.double()
    with torch.no_grad():
        flipped = model.predict(**batch(model, [sample(fid=2, flip='horizontal')]))[0]
    expected = bbox_kde_saliency([mirror(prev, 'horizontal')], SRC, (31, 51), dtype=torch.float64)
    torch.testing.assert_close(torch.from_numpy(flipped.lzu_saliency['saliency']).double(), expected[0, 0],
                               rtol=1e-5, atol=0)
    # remembered in original pixels, unflipped: the flipped prediction (rescaled, still mirrored) mirrored back
    memory = model._lzu_online[0]
    torch.testing.assert_close(memory['bboxes'], mirror(flipped.pred_instances.bboxes.double(), 'horizontal'))
    # bad detections of frame 2: NaN / Inf boxes and scores, outside, zero area -> dropped, clipped; frame 3 runs
    memory['bboxes'] = torch.tensor([[float('nan'), 0, 10, 10], [0, 0, float('inf'), 5], [-50., -20, 300, 200],
                                     [5., 5, 5, 80], [2000., 10, 2100, 50]], dtype=torch.float64)
    memory['scores'] = torch.tensor([0.5, 0.5, 0.5, float('nan'), 0.5])
    memory['bboxes'], memory['scores'] = memory['bboxes'][memory['scores'].isfinite()], memory['scores'][
        memory['scores'].isfinite()]
    with torch.no_grad():
        third = model.predict(**batch(model, [sample(fid=3)]))[0]
    assert third.lzu_saliency['source'] == 'previous_frame' and len(third.lzu_saliency['bboxes']) == 4
    clipped = bbox_kde_saliency([torch.tensor([[0., 0, 300, 200]])], SRC, (31, 51), dtype=torch.float64)
    torch.testing.assert_close(torch.from_numpy(third.lzu_saliency['saliency']).double(), clipped[0, 0], rtol=1e-5,
                               atol=0)
    assert np.isfinite(third.lzu_zoom['grid']).all()
    model._lzu_online[0].update(bboxes=torch.zeros(0, 4, dtype=torch.float64), scores=torch.zeros(0))
    with torch.no_grad():
        fourth = model.predict(**batch(model, [sample(fid=4), sample(fid=9, sid=1)]))
    assert fourth[0].lzu_saliency['reason'] == 'no detections in the previous frame'
    assert fourth[1].lzu_saliency['reason'].startswith('frame gap 9')  # sequence 1 was last seen at frame 0
    model.lzu_online_reset()
    with torch.no_grad():
        again = model.predict(**batch(model, [sample(fid=5)]))[0]
    assert again.lzu_saliency['reason'] == 'first frame of its sequence'


def test_bad_batches_are_refused_at_the_first_frame():
    cfg = _cfg()
    model = tiny(cfg).eval()
    plain = sample()
    del plain['data_samples'].lzu_zoom
    with pytest.raises(ValueError, match='ResizeWithSource'):
        model.predict(**batch(model, [plain]))
    unnamed = sample()
    del unnamed['data_samples'].sid
    with pytest.raises(ValueError, match=r"\['sid'\].*meta_keys"):
        model.predict(**batch(model, [unnamed]))
    sheared = sample()
    sheared['data_samples'].set_metainfo(dict(homography_matrix=np.array([[1., 0.2, 0], [0, 1, 0], [0, 0, 1]])))
    with pytest.raises(ValueError, match='not axis-aligned'):
        original_to_input(sheared['data_samples'].metainfo)
    assert isinstance(model, AdaptiveSaliencyMixin)
