"""LZUEncoderDecoder: equivalence with EncoderDecoder, alignment of unzoomed predictions, other configs, bad input."""
import copy
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config, ConfigDict
from mmengine.model import BaseModule, revert_sync_batchnorm
from mmengine.structures import PixelData
from mmseg.registry import MODELS, TRANSFORMS
from mmseg.structures import SegDataSample

import lzu_mm.mmseg  # noqa: F401
from lzu_mm.ops import uniform_saliency
from tests.mmseg.conftest import config_path

LZU_META_KEYS = ('img_path', 'seg_map_path', 'ori_shape', 'img_shape', 'pad_shape', 'scale_factor', 'flip',
                 'flip_direction', 'reduce_zero_label', 'lzu_zoom')


def _peaked_saliency(h=32, w=32):
    sal = torch.full((1, 1, h, w), 0.05)
    sal[..., h // 2 - 2:h // 2 + 2, :] += 1.
    sal[..., :, w // 4 - 2:w // 4 + 2] += 1.
    return sal


def _saliency_file(tmp_path, saliency, name='sal.pth'):
    path = str(tmp_path / name)
    torch.save(saliency, path)
    return path


def _pspnet_models():
    """The Table 3 PSPNet R50 + FPN as a plain EncoderDecoder and as LZUEncoderDecoder (same weights)."""
    cfg = Config.fromfile(config_path('pspnet_r50-fpn_4xb2-80k_cityscapes-64x64.py'))
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.pretrained = None
    torch.manual_seed(0)
    plain = revert_sync_batchnorm(MODELS.build(model_cfg)).eval()
    model_cfg.type = 'LZUEncoderDecoder'
    lzu = revert_sync_batchnorm(MODELS.build(model_cfg)).eval()
    lzu.load_state_dict(plain.state_dict(), strict=True)  # an EncoderDecoder checkpoint loads strictly
    return plain, lzu


def _zoomed_batch(model, sample_paths, saliency_path):
    """The real sample, centre-cropped (128x128) and zoomed to 64x64 by the pipeline, preprocessed for ``model``."""
    steps = [
        dict(type='LoadImageFromFile'),
        dict(type='CenterSquareCrop'),
        dict(type='FixedSaliencyZoom', scale=(64, 64), keep_ratio=False, saliency=saliency_path,
             grid_shape=(32, 32), attraction_fwhm=10.),
        dict(type='LoadAnnotations'),
        dict(type='CenterSquareCrop', keys=('gt_seg_map', )),
        dict(type='PackSegInputs', meta_keys=LZU_META_KEYS)
    ]
    results = dict(img_path=sample_paths['img'], seg_map_path=sample_paths['seg'], reduce_zero_label=False,
                   seg_fields=[])
    for step in steps:
        results = TRANSFORMS.build(step)(results)
    data = model.data_preprocessor(dict(inputs=[results['inputs']], data_samples=[results['data_samples']]), False)
    return data['inputs'], data['data_samples']


@torch.no_grad()
def test_uniform_saliency_equals_encoder_decoder(sample_paths, tmp_path):
    plain, lzu = _pspnet_models()
    inputs, samples = _zoomed_batch(plain, sample_paths, _saliency_file(tmp_path, uniform_saliency((32, 32))))
    assert inputs.shape == (1, 3, 64, 64) and samples[0].ori_shape == (128, 128)
    ref = plain.predict(inputs, copy.deepcopy(samples))[0].seg_logits.data
    out = lzu.predict(inputs, copy.deepcopy(samples))[0].seg_logits.data
    assert ref.shape == (19, 128, 128)  # at the (cropped) original image resolution
    assert (out - ref).abs().max().item() <= 1e-4
    # the same through _forward (mode='tensor') and with the model-side uniform warp
    assert (lzu._forward(inputs, copy.deepcopy(samples)) - plain._forward(inputs)).abs().max().item() <= 1e-4
    model_side = revert_sync_batchnorm(MODELS.build(dict(copy.deepcopy(plain_cfg()), type='LZUEncoderDecoder',
                                                         lzu=dict(saliency='uniform', grid_shape=(32, 32))))).eval()
    model_side.load_state_dict(plain.state_dict(), strict=True)
    plain_samples = [SegDataSample(metainfo={k: v for k, v in s.metainfo.items() if k != 'lzu_zoom'}) for s in samples]
    out = model_side.predict(inputs, copy.deepcopy(plain_samples))[0].seg_logits.data
    assert (out - ref).abs().max().item() <= 1e-4

    # not vacuous: with a non-uniform saliency the logits differ clearly
    inputs2, samples2 = _zoomed_batch(plain, sample_paths, _saliency_file(tmp_path, _peaked_saliency(), 'p.pth'))
    warped = lzu.predict(inputs2, copy.deepcopy(samples2))[0].seg_logits.data
    naive = plain.predict(inputs2, copy.deepcopy(samples2))[0].seg_logits.data
    assert (warped - naive).abs().max().item() > 1e-2


def plain_cfg():
    cfg = Config.fromfile(config_path('pspnet_r50-fpn_4xb2-80k_cityscapes-64x64.py'))
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.pretrained = None
    return model_cfg


@MODELS.register_module(force=True)
class PositionEchoBackbone(BaseModule):
    """Test backbone: 2x2 and 4x4 average pools of the input (block-centred cells, like patch embeddings)."""

    def forward(self, x):
        return [F.avg_pool2d(x, 2), F.avg_pool2d(x, 4)]


@MODELS.register_module(force=True)
class StridedEchoBackbone(BaseModule):
    """Test backbone: the input subsampled at strides 2 and 4 (cell i on pixel i*s, like strided convolutions)."""

    def forward(self, x):
        return [x[..., ::2, ::2], x[..., ::4, ::4]]


def _position_model(model_type, backbone='PositionEchoBackbone', **kwargs):
    model = MODELS.build(
        dict(
            type=model_type,
            backbone=dict(type=backbone),
            decode_head=dict(type='FCNHead', in_channels=2, channels=2, num_convs=0, concat_input=False,
                             in_index=0, dropout_ratio=0., num_classes=2, norm_cfg=None, align_corners=False),
            auxiliary_head=dict(type='FCNHead', in_channels=2, channels=2, num_convs=0, concat_input=False,
                                in_index=1, dropout_ratio=0., num_classes=2, norm_cfg=None, align_corners=False),
            test_cfg=ConfigDict(mode='whole'), **kwargs))
    with torch.no_grad():  # logits = features: the head's 1x1 classifier is the identity
        for head in (model.decode_head, model.auxiliary_head):
            head.conv_seg.weight.copy_(torch.eye(2)[:, :, None, None])
            head.conv_seg.bias.zero_()
    return model.eval()


def _position_prediction(model, img, meta):
    inputs = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].contiguous()
    return model.predict(inputs, [SegDataSample(metainfo=meta)])[0].seg_logits.data


@pytest.mark.parametrize('flip', [False, True])
@pytest.mark.parametrize('backbone,cell_centre', [('PositionEchoBackbone', 'block'), ('StridedEchoBackbone', 'conv')])
@torch.no_grad()
def test_unzoomed_prediction_aligns_with_input(tmp_path, flip, backbone, cell_centre):
    """Features encode the original pixel position; after zoom (and a horizontal flip of the zoomed image, which
    the model undoes by mirroring the recorded grid and mmseg by flipping the logits back) -> backbone -> unzoom ->
    mmseg post-processing, each pixel of the prediction holds what the same network predicts on the uniformly
    resized image (its own position up to the network's cell alignment): within 0.2 pixel of the target (zoomed)
    scale away from the border, where unzooming with the other cell convention misses by more than 0.3 pixel.
    Within 3 target pixels of a compressed border the half-pixel zoom has no sample nearer to the edge than half a
    zoomed pixel, so unzoom clamps there (measured: up to 1.25 target pixels on the outermost column)."""
    h, w, out = 128, 256, 64
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    coords = np.stack([xs, ys], -1)
    zoom = TRANSFORMS.build(dict(type='FixedSaliencyZoom', scale=(out, out), keep_ratio=False, grid_shape=(32, 32),
                                 saliency=_saliency_file(tmp_path, _peaked_saliency()), attraction_fwhm=10.))
    resize = TRANSFORMS.build(dict(type='Resize', scale=(out, out), keep_ratio=False))
    flip_t = TRANSFORMS.build(dict(type='RandomFlip', prob=1., direction='horizontal'))
    results = zoom(dict(img=coords.copy(), img_shape=(h, w), ori_shape=(h, w)))
    uniform = resize(dict(img=coords.copy(), img_shape=(h, w), ori_shape=(h, w)))
    if flip:
        results, uniform = flip_t(results), flip_t(uniform)
    meta = dict(ori_shape=(h, w), img_shape=(out, out), pad_shape=(out, out), padding_size=[0, 0, 0, 0],
                flip=flip, flip_direction='horizontal' if flip else None)
    reference = _position_prediction(_position_model('EncoderDecoder', backbone), uniform['img'], meta)
    scale = torch.tensor([w / out, h / out])[:, None, None]  # original pixels per target pixel, (x, y)
    band = (slice(None), slice(3 * h // out, -3 * h // out), slice(3 * w // out, -3 * w // out))

    def error(cell):
        model = _position_model('LZUEncoderDecoder', backbone, lzu=dict(cell_centre=cell))
        pred = _position_prediction(model, results['img'], dict(meta, lzu_zoom=results['lzu_zoom']))
        err = (pred - reference).abs() / scale  # (x, y) in target pixels
        return err[band].max().item(), err.max().item()

    inside, everywhere = error(cell_centre)
    assert inside <= 0.2 and everywhere <= 1.5, (inside, everywhere)
    wrong, _ = error('block' if cell_centre == 'conv' else 'conv')
    assert wrong > 0.3, wrong
    if cell_centre == 'block':  # mmseg's upsampling of the logits assumes block-centred cells: exact there
        truth = torch.from_numpy(coords).permute(2, 0, 1)
        assert ((reference - truth).abs() / scale).max().item() <= 1.0

    # the same test fails without unzoom: the plain model's prediction is off by several target pixels
    naive = _position_prediction(_position_model('EncoderDecoder', backbone), results['img'], meta)
    assert ((naive - reference).abs() / scale).max().item() > 3


def _tiny_config(tmp_path, base):
    path = tmp_path / f'tiny_{base}.py'
    path.write_text(f"""
_base_ = 'mmseg::_base_/models/{base}.py'
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=(64, 64)),
    backbone=dict(depth=18, norm_cfg=norm_cfg),
    decode_head=dict(in_channels=512, channels=16, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=256, channels=8, norm_cfg=norm_cfg))
""")
    return Config.fromfile(str(path)).model


def _batch(n=2, size=64, classes=19):
    g = torch.Generator().manual_seed(0)
    inputs = torch.randn(n, 3, size, size, generator=g)
    samples = []
    for _ in range(n):
        s = SegDataSample(metainfo=dict(ori_shape=(size, size), img_shape=(size, size), pad_shape=(size, size),
                                        padding_size=[0, 0, 0, 0]))
        s.gt_sem_seg = PixelData(data=torch.randint(0, classes, (1, size, size), generator=g))
        samples.append(s)
    return inputs, samples


@pytest.mark.parametrize('base', ['deeplabv3_r50-d8', 'fcn_r50-d8'])
def test_other_encoder_decoders(base, tmp_path):
    model_cfg = _tiny_config(tmp_path, base)
    torch.manual_seed(0)
    plain = MODELS.build(copy.deepcopy(model_cfg)).eval()
    uniform = MODELS.build(dict(copy.deepcopy(model_cfg), type='LZUEncoderDecoder',
                                lzu=dict(saliency='uniform', grid_shape=(16, 16)))).eval()
    uniform.load_state_dict(plain.state_dict(), strict=True)
    inputs, samples = _batch()
    with torch.no_grad():
        ref = plain.predict(inputs, copy.deepcopy(samples))
        out = uniform.predict(inputs, copy.deepcopy(samples))
    for r, o in zip(ref, out):
        assert (r.seg_logits.data - o.seg_logits.data).abs().max().item() <= 1e-4

    # a non-uniform model-side warp trains: finite losses (decode + auxiliary) and gradients
    lzu = MODELS.build(dict(copy.deepcopy(model_cfg), type='LZUEncoderDecoder',
                            lzu=dict(saliency=_saliency_file(tmp_path, _peaked_saliency(16, 16)), grid_shape=(16, 16),
                                     attraction_fwhm=6.))).train()
    lzu.load_state_dict(plain.state_dict(), strict=True)
    losses = lzu.loss(inputs, copy.deepcopy(samples))
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(losses)
    total = sum(v for k, v in losses.items() if 'loss' in k)
    total.backward()
    assert torch.isfinite(total)
    grads = [p.grad for p in lzu.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    with torch.no_grad():
        warped = lzu.eval().predict(inputs, copy.deepcopy(samples))
    assert (warped[0].seg_logits.data - ref[0].seg_logits.data).abs().max().item() > 1e-3


def test_model_bad_saliency(tmp_path):
    model_cfg = _tiny_config(tmp_path, 'fcn_r50-d8')
    missing = str(tmp_path / 'nope.pkl')
    # a missing file may still come with a self-contained LZU checkpoint loaded after the build: first use fails
    model = MODELS.build(dict(model_cfg, type='LZUEncoderDecoder', lzu=dict(saliency=missing, grid_shape=(8, 8))))
    with pytest.raises(FileNotFoundError, match='nope.pkl'):
        model.extract_feat(torch.zeros(1, 3, 32, 32))
    path = _saliency_file(tmp_path, uniform_saliency((8, 8)))
    with pytest.raises(ValueError, match=r'sal.pth.*grid shape \(8, 8\).*grid_shape \(16, 16\)'):
        MODELS.build(dict(model_cfg, type='LZUEncoderDecoder', lzu=dict(saliency=path, grid_shape=(16, 16))))
    # no warp anywhere: a clear error, not a silent identity
    model = MODELS.build(dict(model_cfg, type='LZUEncoderDecoder')).eval()
    inputs, samples = _batch(1)
    with pytest.raises(ValueError, match="lzu_zoom"):
        model.predict(inputs, samples)
    assert osp.isfile(path)
