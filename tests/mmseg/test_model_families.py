"""Stock MMSegmentation configs made LZU: SegFormer (MiT-B0), UperNet (R50), DeepLabV3+ (R50-D8), OCRNet (HRNet).

For each stock config: the LZU config (model type -> ``LZUEncoderDecoder`` or
``LZUCascadeEncoderDecoder``, ``Resize`` -> ``FixedSaliencyZoom``) builds; with the same random weights and
a uniform saliency the LZU model predicts what ``EncoderDecoder`` predicts on
the same zoomed batch of the real Cityscapes sample (<= 1e-4 in the logits);
with a non-uniform saliency one training iteration (``train_step``) and
inference run on the real image. The geometry of the backbones that are not
plain ResNets (MiT's overlapping patch embeddings, the dilated D8 ResNet
whose last three stages share stride 8) is checked with the position harness
on stand-ins of the real modules' convolutions (kernel, stride, padding read
from the built backbone). Sliding-window inference zooms each window.
"""
import copy

import numpy as np
import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.dataset import pseudo_collate
from mmengine.hub import get_config
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import OptimWrapper
from mmseg.registry import MODELS, TRANSFORMS

import lzu_mm.mmseg  # noqa: F401
from lzu_mm.ops import uniform_saliency
from tests.position_harness import (TOLERANCES, assert_geometry, build_pipeline, conv_geometry, coordinate_samples,
                                    geometry_report, strong_saliency)

STOCK = {
    'segformer': 'mmseg::segformer/segformer_mit-b0_8xb1-160k_cityscapes-1024x1024.py',
    'ocrnet': 'mmseg::ocrnet/ocrnet_hr18s_4xb2-40k_cityscapes-512x1024.py',
    'upernet': 'mmseg::upernet/upernet_r50_4xb2-40k_cityscapes-512x1024.py',
    'deeplabv3plus': 'mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb2-40k_cityscapes-512x1024.py',
}
GRID = (16, 32)
LZU_TYPES = dict(EncoderDecoder='LZUEncoderDecoder', CascadeEncoderDecoder='LZUCascadeEncoderDecoder')
#: the real sample is 256x128; the test resizes / zooms it to 128x64 and trains on 64x128 crops (CPU budget)
SCALE, CROP = (128, 64), (64, 128)


# --- stand-in for the generic converter (issue 10a, tools/misc/lzu_config.py): switch to it at merge -------------
def to_lzu(cfg: Config, saliency: str, grid_shape=GRID) -> Config:
    """LZU config of a stock mmseg segmentor config (TEST-LOCAL STAND-IN for the converter of issue 10a).

    ``EncoderDecoder`` -> ``LZUEncoderDecoder`` (``CascadeEncoderDecoder`` ->
    ``LZUCascadeEncoderDecoder``); every ``Resize`` (test and
    TTA pipelines) -> ``FixedSaliencyZoom`` with the same arguments; in the
    training pipeline the crop is zoomed into its own size right after
    ``RandomCrop`` (only the flip and photometric steps follow it);
    ``'lzu_zoom'`` in ``PackSegInputs.meta_keys``; whole-image inference
    (a pipeline zoom belongs to the whole image).
    """
    cfg = copy.deepcopy(cfg)
    cfg.model.type = LZU_TYPES[cfg.model.type]
    cfg.model.test_cfg = ConfigDict(mode='whole')
    zoom = dict(saliency=saliency, grid_shape=grid_shape, attraction_fwhm=10.)

    def convert(pipeline):
        out = []
        for t in pipeline:
            if isinstance(t, (list, tuple)):  # TestTimeAug alternatives
                out.append(convert(t))
                continue
            t = copy.deepcopy(t)
            if t['type'] == 'TestTimeAug':
                t['transforms'] = convert(t['transforms'])
            elif t['type'] == 'Resize':
                t = dict(t, type='FixedSaliencyZoom', **zoom)
            elif t['type'] == 'PackSegInputs':
                t['meta_keys'] = ('img_path', 'seg_map_path', 'ori_shape', 'img_shape', 'pad_shape', 'scale_factor',
                                  'flip', 'flip_direction', 'reduce_zero_label', 'lzu_zoom')
            out.append(t)
            if t['type'] == 'RandomCrop':
                h, w = t['crop_size']
                out.append(dict(type='FixedSaliencyZoom', scale=(w, h), keep_ratio=False, **zoom))
        return out

    for key in ('train_pipeline', 'test_pipeline', 'tta_pipeline'):
        if cfg.get(key):
            cfg[key] = convert(cfg[key])
    return cfg
# -------------------------------------------------------------------------------------------------------------------


def stock_config(name: str) -> Config:
    """The stock config, small enough for a CPU test: no pretrained weights, 128x64 test scale, 64x128 crops."""
    cfg = get_config(STOCK[name])
    cfg.model.pretrained = None
    if cfg.model.backbone.get('init_cfg'):
        cfg.model.backbone.init_cfg = None
    cfg.model.data_preprocessor.size = CROP
    for t in cfg.train_pipeline:
        if t['type'] == 'RandomResize':
            t['scale'] = SCALE
        if t['type'] == 'RandomCrop':
            t['crop_size'] = CROP
    for t in cfg.test_pipeline:
        if t['type'] == 'Resize':
            t['scale'] = SCALE
    return cfg


def build(model_cfg, state=None):
    torch.manual_seed(0)
    model = revert_sync_batchnorm(MODELS.build(copy.deepcopy(model_cfg)))
    if state is not None:
        model.load_state_dict(state, strict=True)  # the base checkpoint loads strictly
    return model


def saliency_file(tmp_path, saliency, name):
    path = str(tmp_path / name)
    torch.save(saliency, path)
    return path


def run_pipeline(pipeline, sample_paths):
    results = dict(img_path=sample_paths['img'], seg_map_path=sample_paths['seg'], reduce_zero_label=False,
                   seg_fields=[])
    for t in pipeline:
        results = TRANSFORMS.build(t)(results)
    return results


@pytest.mark.parametrize('name', list(STOCK))
def test_stock_config_made_lzu(name, tmp_path, sample_paths):
    cfg = stock_config(name)
    uniform = to_lzu(cfg, saliency_file(tmp_path, uniform_saliency(GRID), 'uniform.pth'))
    base_cfg = dict(copy.deepcopy(cfg.model), test_cfg=ConfigDict(mode='whole'))
    base = build(base_cfg).eval()
    lzu = build(uniform.model, base.state_dict()).eval()

    # the same zoomed batch (uniform saliency): the same logits
    data = pseudo_collate([run_pipeline(uniform.test_pipeline, sample_paths)])
    assert 'lzu_zoom' in data['data_samples'][0]
    with torch.no_grad():
        ref = base.test_step(copy.deepcopy(data))[0].seg_logits.data
        out = lzu.test_step(copy.deepcopy(data))[0].seg_logits.data
    assert ref.shape == (19, 128, 256)  # at the original resolution
    assert (out - ref).abs().max().item() <= 1e-4

    # a non-uniform saliency: one training iteration and inference on the real image
    peaked = to_lzu(cfg, saliency_file(tmp_path, strong_saliency(GRID, centre=(0.5, 0.5)), 'peaked.pth'))
    zoom = [t for t in peaked.train_pipeline if t['type'] == 'FixedSaliencyZoom']
    assert len(zoom) == 1 and zoom[0]['scale'] == CROP[::-1]
    model = build(peaked.model, base.state_dict()).train()
    before = {k: v.clone() for k, v in model.state_dict().items() if v.dtype.is_floating_point}
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    # two random crops of the image: a batch of 2 (UperNet's 1x1 pooling branch normalises over the batch)
    batch = pseudo_collate([run_pipeline(peaked.train_pipeline, sample_paths) for _ in range(2)])
    assert batch['inputs'][0].shape == (3, *CROP)
    losses = model.train_step(batch, optim)
    assert all(torch.isfinite(v).all() for v in losses.values())
    changed = [k for k, v in model.state_dict().items() if k in before and not torch.equal(v, before[k])]
    assert any(k.startswith('backbone.') for k in changed) and any(k.startswith('decode_head.') for k in changed)
    peaked_model = build(peaked.model, base.state_dict()).eval()
    data = pseudo_collate([run_pipeline(peaked.test_pipeline, sample_paths)])
    with torch.no_grad():
        pred = peaked_model.test_step(copy.deepcopy(data))[0]
        batch = peaked_model.data_preprocessor(copy.deepcopy(data), False)
        with peaked_model.lzu_context(batch['inputs'], batch['data_samples']) as zoomed:
            unzoomed = peaked_model.extract_feat(zoomed)[-1]
        naive = base.extract_feat(batch['inputs'])[-1]
    assert pred.seg_logits.shape == (128, 256) and torch.isfinite(pred.seg_logits.data).all()
    assert pred.pred_sem_seg.data.shape == (1, 128, 256)
    # the unzoom is not a no-op: the deepest features differ from those of the zoomed image
    assert (unzoomed - naive).abs().max().item() > 0.05 * naive.abs().max().item()


# ----------------------------------------------------------------------------------------------- geometry
def main_path(backbone):
    """The real backbone's main-path convolutions / poolings in forward order, and the index that ends each output.

    Every ``Conv2d`` / ``MaxPool2d`` except residual shortcuts (``downsample``)
    and MiT's attention (its spatial-reduction convolution acts on keys and
    values, not on the token grid); stride-1 convolutions with
    ``padding = dilation * (kernel // 2)`` (MixFFN, dilated blocks) keep every
    cell where it is, and are kept too.
    """
    named = [(n, m) for n, m in backbone.named_modules()
             if isinstance(m, (torch.nn.Conv2d, torch.nn.MaxPool2d)) and 'downsample' not in n and '.attn.' not in n]
    stages = ([f'{n}.' for n in backbone.res_layers] if hasattr(backbone, 'res_layers') else
              [f'layers.{i}.' for i in range(len(backbone.layers))])
    ends = [max(i for i, (n, _) in enumerate(named) if n.startswith(stages[k])) for k in backbone.out_indices]
    return conv_geometry([m for _, m in named]), ends


@pytest.mark.parametrize('name', ['segformer', 'deeplabv3plus'])
def test_backbone_geometry(name, tmp_path):
    """MiT's overlapping patch embeddings (7x7/4 padding 3, then 3x3/2 padding 1) and the dilated D8 ResNet (strides
    4, 8, 8, 8: three levels of one size) put cell ``i`` of a stride-``s`` level on pixel ``i s``: the default
    ``cell_centre='conv'`` and the inferred strides are right, ``'block'`` is not (position harness, stand-ins with
    the real modules' kernels, strides, paddings and dilations)."""
    cfg = stock_config(name)
    convs, ends = main_path(MODELS.build(cfg.model.backbone))
    strides = [int(np.prod([c[1] for c in convs[:end + 1]])) for end in ends]
    assert strides == ([4, 8, 16, 32] if name == 'segformer' else [4, 8, 8, 8])
    if name == 'segformer':
        assert [c for c in convs if c[1] > 1] == [(7, 4, 3, 1), (3, 2, 1, 1), (3, 2, 1, 1), (3, 2, 1, 1)]
    lzu = to_lzu(cfg, saliency_file(tmp_path, strong_saliency(GRID), 'p.pth'))
    flip = dict(type='RandomFlip', prob=1.)
    run = build_pipeline(TRANSFORMS, lzu.test_pipeline, lzu.test_pipeline[1]['saliency'], flip)
    samples = [coordinate_samples(run, (128, 256), SCALE, [flip])[0] for flip in ('horizontal', None)]

    def builder(cell_centre):
        def build_model(frame):
            model_cfg = copy.deepcopy(lzu.model)
            model_cfg.backbone = dict(type='CoordinateFeatures', convs=convs, out_indices=ends, frame=frame)
            model_cfg.data_preprocessor.update(mean=[0., 0., 0.], std=[1., 1., 1.])
            model_cfg.lzu = dict(cell_centre=cell_centre)
            return MODELS.build(model_cfg).eval()
        return build_model

    assert_geometry(geometry_report(builder('conv'), samples, strides))
    wrong = geometry_report(builder('block'), samples, strides)
    assert max(wrong['frame']) > 10 * TOLERANCES['frame'], wrong


# ----------------------------------------------------------------------------------------- sliding windows
def _tiny_fcn(**kwargs):
    cfg = get_config('mmseg::_base_/models/fcn_r50-d8.py').model
    cfg.pretrained = None
    cfg.backbone.update(depth=18, norm_cfg=dict(type='BN', requires_grad=True))
    cfg.decode_head.update(in_channels=512, channels=16, norm_cfg=dict(type='BN', requires_grad=True))
    cfg.auxiliary_head.update(in_channels=256, channels=8, norm_cfg=dict(type='BN', requires_grad=True))
    cfg.update(kwargs)
    return cfg


def test_slide_inference_zooms_each_window(tmp_path):
    """Sliding windows with a model-side warp: each window is zoomed and unzoomed on its own."""
    inputs = torch.randn(1, 3, 64, 128, generator=torch.Generator().manual_seed(0))
    slide = ConfigDict(mode='slide', crop_size=(64, 64), stride=(64, 64))  # two windows, side by side

    def predict(model, x):
        from mmseg.structures import SegDataSample
        meta = dict(ori_shape=x.shape[-2:], img_shape=x.shape[-2:], pad_shape=x.shape[-2:], padding_size=[0] * 4)
        with torch.no_grad():
            return model.predict(x, [SegDataSample(metainfo=meta)])[0].seg_logits.data

    base = build(_tiny_fcn(type='EncoderDecoder', test_cfg=slide)).eval()
    uniform = build(_tiny_fcn(type='LZUEncoderDecoder', test_cfg=slide, lzu=dict(saliency='uniform', grid_shape=GRID)),
                    base.state_dict()).eval()
    ref = predict(base, inputs)
    assert (predict(uniform, inputs) - ref).abs().max().item() <= 1e-4

    peaked = dict(saliency=saliency_file(tmp_path, strong_saliency(GRID), 'p.pth'), grid_shape=GRID)
    lzu = build(_tiny_fcn(type='LZUEncoderDecoder', test_cfg=slide, lzu=peaked), base.state_dict()).eval()
    whole = build(_tiny_fcn(type='LZUEncoderDecoder', test_cfg=dict(mode='whole'), lzu=peaked),
                  base.state_dict()).eval()
    out = predict(lzu, inputs)
    # each window is what whole-image LZU predicts on that window alone (not the whole image's warp cut up)
    for x0 in (0, 64):
        assert (out[:, :, x0:x0 + 64] - predict(whole, inputs[..., x0:x0 + 64])).abs().max().item() <= 1e-4
    assert (out - predict(whole, inputs)).abs().max().item() > 1e-3
    assert (out - ref).abs().max().item() > 1e-3


def test_slide_inference_needs_the_model_side_warp(tmp_path):
    slide = dict(mode='slide', crop_size=(32, 32), stride=(16, 16))
    with pytest.raises(ValueError, match=r"test_cfg.mode='slide' zooms each window.*model.lzu=.*mode='whole'"):
        MODELS.build(_tiny_fcn(type='LZUEncoderDecoder', test_cfg=slide))
    with pytest.raises(ValueError, match=r"zooms each window .* bilinearly, but the model has lzu.interpolation"):
        MODELS.build(_tiny_fcn(type='LZUEncoderDecoder', test_cfg=slide, lzu=dict(
            saliency='uniform', grid_shape=GRID, interpolation=dict(type='DownsizeNet'))))
    model = build(_tiny_fcn(type='LZUEncoderDecoder', test_cfg=slide,
                            lzu=dict(saliency='uniform', grid_shape=GRID))).eval()
    from mmseg.structures import SegDataSample
    meta = dict(ori_shape=(64, 64), img_shape=(64, 64), pad_shape=(64, 64), padding_size=[0] * 4,
                lzu_zoom=dict(grid=np.zeros((2, 2, 2), np.float32)))
    with pytest.raises(ValueError, match='zoomed by the pipeline'):
        model.predict(torch.zeros(1, 3, 64, 64), [SegDataSample(metainfo=meta)])


def test_patch_backbones_default_to_block_centred_cells():
    """Swin's patch embedding (kernel == stride, no padding: cell i covers pixels 4i ... 4i + 3) makes the LZU model
    unzoom with block-centred cells; MiT (overlapping, conv-centred, test_backbone_geometry) and ResNets keep 'conv';
    an explicit model.lzu.cell_centre wins."""
    swin = dict(type='SwinTransformer', embed_dims=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), window_size=4,
                out_indices=(0, 1, 2, 3))
    head = dict(type='FCNHead', in_channels=128, channels=128, num_convs=0, concat_input=False, num_classes=2,
                in_index=3)
    model = MODELS.build(dict(type='LZUEncoderDecoder', backbone=swin, decode_head=head))
    embed = model.backbone.patch_embed.projection
    assert embed.kernel_size == embed.stride == (4, 4) and embed.padding == (0, 0)
    assert model._lzu_cell_centre == 'block'
    model = MODELS.build(dict(type='LZUEncoderDecoder', backbone=swin, decode_head=head, lzu=dict(cell_centre='conv')))
    assert model._lzu_cell_centre == 'conv'
    for name in ('segformer', 'deeplabv3plus'):
        assert MODELS.build(to_lzu(stock_config(name), 'unused.pth').model)._lzu_cell_centre == 'conv'
