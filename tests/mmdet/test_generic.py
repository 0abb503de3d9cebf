"""Generic LZU detectors made from the STOCK MMDetection configs by the converter (tools/misc/lzu_config.py).

For ATSS, Mask R-CNN, Cascade R-CNN and Deformable DETR: the stock config is
converted (type='LZU', Resize -> FixedSaliencyZoom, meta_keys); the models
are shrunk for the CPU budget (ResNet-18, small images, one DETR layer).

* Uniform saliency: the base and the LZU model, with the same random weights
  (the base's state dict loaded strict), predict the same boxes, scores and
  masks (<= 1e-4) on the same zoomed, padded batch of two images of
  different sizes (DETR: its padding masks and positional encodings).
* Strongly non-uniform saliency, real nuScenes CAM_FRONT image: one training
  iteration (finite losses, weights change) through the converted training
  pipeline, then inference through the converted test pipeline: boxes and
  instance masks come back in original-image pixels.
* Geometry (tests/position_harness.py): every valid cell of every level of
  the generic ATSS and Deformable DETR holds the position its head assumes,
  and DETR's padding masks leave valid exactly cells inside the image.
"""
import copy
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import DefaultScope

import lzu_mm.mmdet  # noqa: F401
from lzu_mm.common import check_lzu_config, factory
from lzu_mm.common.convert import convert_config
from lzu_mm.ops.saliency import save_saliency
from mmdet.registry import MODELS, TRANSFORMS
from tests.conftest import REPO_ROOT, shared_path
from tests.position_harness import (assert_geometry, build_pipeline, cell_positions, coordinate_samples,
                                    geometry_report, strong_saliency)

STOCK = {
    'atss': 'mmdet::atss/atss_r50_fpn_1x_coco.py',
    'mask_rcnn': 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
    'cascade_rcnn': 'mmdet::cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py',
    'deformable_detr': 'mmdet::deformable_detr/deformable-detr_r50_16xb2-50e_coco.py',
}
GRID = (18, 32)
SCALE = (224, 128)  # (w, h) of the test resize / zoom, instead of (1333, 800)
FRONT = ('nuscenes', 'samples', 'CAM_FRONT', 'n015-2018-07-24-11-22-45+0800__CAM_FRONT__1532402927612460.jpg')


@pytest.fixture(scope='module')
def saliencies(tmp_path_factory):
    folder = tmp_path_factory.mktemp('generic')
    strong = str(folder / 'strong.pkl')
    save_saliency(strong_saliency(GRID), strong)  # as tools/saliency/*.py write it
    return dict(uniform='uniform', strong=strong, folder=folder)


def _convert(name, saliencies, which):
    out = str(saliencies['folder'] / f'{name}_{which}.py')
    if not osp.exists(out):
        convert_config(STOCK[name], saliencies[which], GRID, attraction_fwhm=6., out=out)
    cfg = Config.fromfile(out)
    check_lzu_config(cfg)
    assert cfg.model.type == 'LZU'
    return cfg


def _small(model_cfg):
    """The stock model with a ResNet-18 (same out_indices), one DETR layer, no pretrained weights."""
    cfg = copy.deepcopy(model_cfg)
    cfg.backbone.update(depth=18, init_cfg=None, norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False)
    channels = [64 * 2**i for i in cfg.backbone.get('out_indices', (0, 1, 2, 3))]
    cfg.neck.in_channels = channels
    if 'encoder' in cfg:
        cfg.encoder.num_layers = 1
        cfg.decoder.num_layers = 1
        cfg.num_queries = 50
    if 'score_thr' in cfg.get('test_cfg', {}):  # single-stage: every score kept (random weights score ~0.01)
        cfg.test_cfg.update(score_thr=0., max_per_img=20)
    if 'rpn' in cfg.get('test_cfg', {}):  # two-stage: 100 proposals, every RoI score kept (random weights)
        cfg.test_cfg.rpn.update(nms_pre=200, max_per_img=100)
        cfg.test_cfg.rcnn.update(score_thr=0., max_per_img=20)
        cfg.train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=100)
        for stage in cfg.train_cfg.rcnn if isinstance(cfg.train_cfg.rcnn, list) else [cfg.train_cfg.rcnn]:
            stage.sampler.num = 64
    return cfg


def _shrink(pipeline):
    """Scales and crop sizes of a pipeline divided by 6 (1333x800 -> 222x133), for CPU speed."""
    out = []
    for t in pipeline:
        if isinstance(t, list):
            out.append(_shrink(t))
            continue
        t = copy.deepcopy(dict(t))
        for key in ('scale', 'crop_size'):
            if isinstance(t.get(key), (list, tuple)):
                t[key] = tuple(max(1, int(v) // 6) for v in t[key])
        if isinstance(t.get('scales'), (list, tuple)):
            t['scales'] = [tuple(max(1, int(v) // 6) for v in s) for s in t['scales']]
        if isinstance(t.get('transforms'), list):
            t['transforms'] = _shrink(t['transforms'])
        out.append(t)
    return out


def _build(cfg):
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(cfg)


def _pair(name, saliencies, which='uniform'):
    """(config, base model, LZU model) with the same random weights."""
    cfg = _convert(name, saliencies, which)
    lzu_cfg = _small(cfg.model)
    base_cfg = copy.deepcopy(lzu_cfg)
    base_cfg.type = base_cfg.pop('base')
    torch.manual_seed(0)
    base = _build(base_cfg)
    base.init_weights()  # the heads' own initialisation (prior-probability biases), random backbone
    lzu = _build(lzu_cfg)
    assert type(lzu) is factory.lzu_model_class(type(base))
    lzu.load_state_dict(base.state_dict(), strict=True)
    return cfg, base, lzu


def _test_samples(cfg, images):
    pipeline = [t for t in cfg.test_dataloader.dataset.pipeline if not str(t['type']).startswith('Load')]
    for t in pipeline:
        if 'saliency' in t:
            t['scale'] = SCALE
    with DefaultScope.overwrite_default_scope('mmdet'):
        run = Compose(pipeline)
        return [run(dict(img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2], img_id=i, img_path=f'{i}.jpg'))
                for i, img in enumerate(images)]


def _assert_same_predictions(a, b):
    for pa, pb in zip(a, b):
        pa, pb = pa.pred_instances, pb.pred_instances
        assert len(pa) == len(pb) > 0
        assert torch.equal(pa.labels, pb.labels)
        assert (pa.scores - pb.scores).abs().max() <= 1e-4
        assert (pa.bboxes - pb.bboxes).abs().max() <= 1e-4
        if 'masks' in pa:
            assert (pa.masks.float() - pb.masks.float()).abs().mean() <= 1e-4


@pytest.mark.parametrize('name', list(STOCK))
def test_uniform_saliency_equals_the_base_model(name, saliencies):
    cfg, base, lzu = _pair(name, saliencies)
    for model in (base, lzu):
        model.test_cfg = copy.deepcopy(model.test_cfg)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (180, 320, 3), dtype=np.uint8), rng.integers(0, 255, (150, 320, 3), dtype=np.uint8)]
    samples = _test_samples(cfg, images)
    assert samples[0]['data_samples'].lzu_zoom['saliency'] == 'uniform'
    with torch.no_grad():
        data = base.data_preprocessor(pseudo_collate(samples), False)
        assert data['inputs'].shape[-2:] != samples[1]['inputs'].shape[-2:]  # the second image is padded
        out_base = base.eval().predict(data['inputs'], copy.deepcopy(data['data_samples']))
        out_lzu = lzu.eval().predict(data['inputs'], data['data_samples'])
    _assert_same_predictions(out_base, out_lzu)


def _real_sample(cfg, train):
    """The nuScenes CAM_FRONT image through the converted (shrunk) training or test pipeline, with two boxes."""
    path = shared_path(*FRONT)
    pipeline = _shrink(cfg.train_dataloader.dataset.pipeline if train else cfg.test_dataloader.dataset.pipeline)
    instances = [dict(bbox=[600., 400., 900., 600.], bbox_label=2, ignore_flag=0,
                      mask=[[600., 400., 900., 400., 900., 600., 600., 600.]]),
                 dict(bbox=[100., 450., 400., 700.], bbox_label=0, ignore_flag=0,
                      mask=[[100., 450., 400., 450., 250., 700.]])]
    with DefaultScope.overwrite_default_scope('mmdet'):
        return Compose(pipeline)(dict(img_path=path, img_id=0, height=900, width=1600, instances=instances))


@pytest.mark.parametrize('name', list(STOCK))
def test_train_and_infer_non_uniform_on_a_real_image(name, saliencies):
    cfg, _, lzu = _pair(name, saliencies, 'strong')
    torch.manual_seed(0)
    sample = _real_sample(cfg, train=True)
    assert sample['data_samples'].lzu_zoom['saliency'] == saliencies['strong']
    lzu.train()
    optim = torch.optim.SGD(lzu.parameters(), lr=1e-3)
    before = lzu.bbox_head.state_dict() if hasattr(lzu, 'bbox_head') else lzu.roi_head.state_dict()
    before = {k: v.clone() for k, v in before.items()}
    data = lzu.data_preprocessor(pseudo_collate([sample]), True)
    loss, log = lzu.parse_losses(lzu.loss(data['inputs'], data['data_samples']))
    assert torch.isfinite(loss) and all(np.isfinite(float(v)) for v in log.values())
    loss.backward()
    torch.nn.utils.clip_grad_norm_(lzu.parameters(), 0.1)  # DETR's stock clip_grad (random weights: large losses)
    optim.step()
    after = lzu.bbox_head.state_dict() if hasattr(lzu, 'bbox_head') else lzu.roi_head.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)

    test = _real_sample(cfg, train=False)
    lzu.eval()
    if name != 'deformable_detr':
        lzu.test_cfg = copy.deepcopy(lzu.test_cfg)
    with torch.no_grad():
        data = lzu.data_preprocessor(pseudo_collate([test]), False)
        pred = lzu.predict(data['inputs'], data['data_samples'])[0]
    assert pred.ori_shape == (900, 1600) and pred.img_shape != (900, 1600)
    boxes = pred.pred_instances.bboxes
    assert len(boxes) > 0
    # original-image pixels: the boxes spread over the 1600x900 frame, not the ~222x125 zoomed one
    assert boxes[:, 0::2].max() > 300 and (boxes[:, 0::2].min() >= -1) and (boxes[:, 0::2].max() <= 1601)
    if 'masks' in pred.pred_instances:
        masks = pred.pred_instances.masks
        assert masks.shape[-2:] == (900, 1600)  # pasted into the original image
        for box, mask in zip(boxes[:20], masks[:20]):  # each mask lies inside its box (original pixels)
            ys, xs = torch.nonzero(mask, as_tuple=True)
            if len(xs):
                assert xs.min() >= box[0] - 2 and xs.max() <= box[2] + 2
                assert ys.min() >= box[1] - 2 and ys.max() <= box[3] + 2


# ------------------------------------------------------------------------------------------------------- geometry
SHAPES = ((900, 1600), (800, 1600))
IMG_SCALE = (480, 270)
META = ('flip', 'flip_direction', 'homography_matrix')


def _coordinate_builder(cfg, strides):
    def build(frame):
        model_cfg = copy.deepcopy(cfg.model)
        model_cfg.backbone = dict(type='CoordinateFeatures', out_strides=strides, frame=frame)
        model_cfg.neck = None
        model_cfg.data_preprocessor.update(mean=[0., 0., 0.], std=[1., 1., 1.])
        with DefaultScope.overwrite_default_scope('mmdet'):
            return MODELS.build(model_cfg).eval()

    return build


def _coordinate_samples(cfg, saliency, flips):
    pipeline = [dict(t, scale=IMG_SCALE) if 'saliency' in t else t for t in cfg.test_dataloader.dataset.pipeline]
    with DefaultScope.overwrite_default_scope('mmdet'):
        run = build_pipeline(TRANSFORMS, pipeline, saliency, dict(type='RandomFlip', prob=1.), META)
        return [coordinate_samples(run, shape, IMG_SCALE, [flip])[0] for shape, flip in zip(SHAPES, flips)]


@pytest.mark.parametrize('flips', [(None, None), ('horizontal', None)])
def test_generic_atss_geometry(saliencies, flips):
    cfg = _convert('atss', saliencies, 'strong')
    build = _coordinate_builder(cfg, (8, 16, 32, 64, 128))
    strides = [s[0] for s in build(False).bbox_head.prior_generator.strides]
    samples = _coordinate_samples(cfg, saliencies['strong'], flips)
    assert samples[0]['inputs'].shape[-2] != samples[1]['inputs'].shape[-2]  # padded batch
    assert_geometry(geometry_report(build, samples, strides))


def test_deformable_detr_geometry_and_padding_masks(saliencies):
    cfg = _convert('deformable_detr', saliencies, 'strong')
    strides = (8, 16, 32, 64)
    build = _coordinate_builder(cfg, strides)
    samples = _coordinate_samples(cfg, saliencies['strong'], ('horizontal', None))
    assert_geometry(geometry_report(build, samples, strides))
    model = build(True)
    with torch.no_grad():
        data = model.data_preprocessor(pseudo_collate(samples), False)
        with model.lzu_context(data['inputs'], data['data_samples']) as inputs:
            feats = model.extract_feat(inputs)
        # the transformer's input width (the harness's levels hold 2 coordinate channels)
        wide = [torch.cat([f, f.new_zeros(f.shape[0], model.embed_dims - f.shape[1], *f.shape[-2:])], 1) for f in feats]
        encoder_inputs, _ = model.pre_transformer(wide, data['data_samples'])
    masks = encoder_inputs['feat_mask'].split([f.shape[-2] * f.shape[-1] for f in feats], dim=1)
    padded = 0
    for feat, mask, stride in zip(feats, masks, strides):
        mask = mask.reshape(len(samples), *feat.shape[-2:])
        for b, sample in enumerate(data['data_samples']):
            _, valid = cell_positions(feat.shape[-2:], stride, sample.img_shape)
            attended = ~mask[b]
            # every cell inside the un-warped image is attended (and holds its position: geometry_report above);
            # DETR's nearest-neighbour mask attends at most one more row / column, as for the base model
            assert torch.equal(attended & valid, valid)
            for dim in (0, 1):
                assert 0 <= int(attended.any(1 - dim).sum() - valid.any(1 - dim).sum()) <= 1
            padded += int(mask[b].sum())
    assert padded > 0  # the second image is padded: the masks are not trivial


# ---------------------------------------------------------------------------------------------------- end to end
def _tool(path):
    import importlib.util
    spec = importlib.util.spec_from_file_location(osp.splitext(osp.basename(path))[0], osp.join(REPO_ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_saliency_tool_converter_train_test(argoverse_hd, tmp_path):
    """tools/saliency/box_kde_saliency.py -> tools/misc/lzu_config.py -> tools/train.py (2 iterations) ->
    tools/test.py (their main(), in this process), on the uniform RetinaNet config of this project and the real
    images (ResNet-18, 192x120): COCO metrics, predictions in original-image pixels carrying their warp."""
    import os
    import pickle
    import re

    from .test_train_test_e2e import SCALE as E2E_SCALE
    from .test_train_test_e2e import cfg_options
    saliency = str(tmp_path / 'kde_31x51.pkl')
    _tool('tools/saliency/box_kde_saliency.py').main([argoverse_hd['train'], saliency, '--grid-shape', '31', '51'])
    base = osp.join(REPO_ROOT, 'configs', 'lzu_retinanet', 'retinanet_r50_fpn_3e_argoverse-hd-0.5x.py')
    cfg = str(tmp_path / 'retinanet_lzu.py')
    _tool('tools/misc/lzu_config.py').main([base, '--saliency', saliency, '--attraction-fwhm', '10', '-o', cfg])
    opts = cfg_options(argoverse_hd) + ['model.backbone.depth=18', 'model.neck.in_channels=[64,128,256,512]']
    work = str(tmp_path / 'work')
    scopes = dict(DefaultScope._instance_dict)
    try:  # in this process (a fresh one costs ~10 s of imports); the Runners' default scopes are dropped after
        _tool('tools/train.py').main([cfg, '--work-dir', work, '--max-iters', '2', '--cfg-options', *opts])
        dumped = open(osp.join(work, osp.basename(cfg))).read()
        assert "type='LZU'" in dumped and "base='RetinaNet'" in dumped and saliency in dumped
        ckpt = next(osp.join(work, f) for f in ('epoch_1.pth', 'iter_2.pth') if osp.isfile(osp.join(work, f)))
        preds = str(tmp_path / 'preds.pkl')
        _tool('tools/test.py').main([cfg, ckpt, '--work-dir', str(tmp_path / 'test'), '--out', preds,
                                     '--cfg-options', *opts])
    finally:
        DefaultScope._instance_dict.clear()
        DefaultScope._instance_dict.update(scopes)
    logs = [osp.join(root, f) for root, _, files in os.walk(tmp_path / 'test') for f in files if f.endswith('.log')]
    assert logs and re.search(r'coco/bbox_mAP: [0-9.-]+', open(logs[0]).read())
    with open(preds, 'rb') as f:
        results = pickle.load(f)
    assert all(r['ori_shape'] == (900, 1600) and r['lzu_zoom']['saliency'] == saliency for r in results)
    boxes = torch.cat([r['pred_instances']['bboxes'] for r in results])
    assert float(boxes[:, 2].max()) > 2 * E2E_SCALE[0]  # original-image pixels, not the 192-wide network input
